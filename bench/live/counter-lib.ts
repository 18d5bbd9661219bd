/**
 * Second stage of the live fuse/split bench's chain: a key-grouped counter,
 * output as the swap bench's counter. Two versions (counter.ts, counter-b.ts)
 * differ only in their code tag, for the hot swaps measured as the baseline.
 */
import { defineComputation } from '../../sdk/index.js';
import { SWAP_BENCH, type CountedValue, type TickValue } from '../swap/streams.js';
import { LIVE } from './streams.js';

export function liveCounter(code: string) {
  return defineComputation({
    name: LIVE.counter,
    istreams: [{ stream: LIVE.mid, grouping: 'key' }],
    ostreams: [SWAP_BENCH.output],
    processRecord(ctx, record) {
      const count = (ctx.state.get<number>(record.key) ?? 0) + 1;
      ctx.state.set(record.key, count);
      const v = record.value as TickValue;
      const out: CountedValue = { seq: v.seq, t: v.t, count, code };
      ctx.produceRecord(SWAP_BENCH.output, record.key, out);
    },
  });
}
