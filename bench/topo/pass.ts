/** Bench pass-through: the middle stage of the three-stage pipeline. */
import { defineComputation } from '../../sdk/index.js';
import { BENCH_STREAMS } from './streams.js';

export default defineComputation({
  name: 'bench-pass',
  istreams: [BENCH_STREAMS.first],
  ostreams: [BENCH_STREAMS.second],
  processRecord(ctx, record) {
    ctx.produceRecord(BENCH_STREAMS.second, record.key, record.value);
  },
});
