/** First stage of the live fuse/split bench's chain: passes every source record on (shuffle). */
import { defineComputation } from '../../sdk/index.js';
import { SWAP_BENCH } from '../swap/streams.js';
import { LIVE } from './streams.js';

export default defineComputation({
  name: LIVE.relay,
  istreams: [SWAP_BENCH.input],
  ostreams: [LIVE.mid],
  processRecord(ctx, record) {
    ctx.produceRecord(LIVE.mid, record.key, record.value);
  },
});
