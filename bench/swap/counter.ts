/**
 * The swapped computation of the swap bench: a key-grouped counter whose
 * state (a count per key) is handed from version to version. The two files
 * counter-a.ts and counter-b.ts differ only in the code tag they emit, so the
 * bench can alternate them.
 */
import { defineComputation } from '../../sdk/index.js';
import { SWAP_BENCH, type CountedValue, type TickValue } from './streams.js';

/** `name` and `input` default to the swap bench's; the live bench's chain reuses it as its second stage. */
export function benchCounter(code: string, name: string = SWAP_BENCH.counter, input: string = SWAP_BENCH.input) {
  return defineComputation({
    name,
    istreams: [{ stream: input, grouping: 'key' }],
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
