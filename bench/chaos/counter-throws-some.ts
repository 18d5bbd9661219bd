// A keyed counter (same name and streams as test/fixtures/swap-e2e-lib.ts) that throws on about 1% of records
// (chosen by key and seq, so it is deterministic): a broken version that may pass a short probation.
import { defineComputation } from '../../sdk/index.js';
import { COUNTER, SWAP_IN, SWAP_OUT, type CounterValue, type SourceValue } from '../../test/fixtures/swap-e2e-lib.js';

const hash = (s: string): number => {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return h >>> 0;
};

export default defineComputation({
  name: COUNTER,
  istreams: [{ stream: SWAP_IN, grouping: 'key' }],
  ostreams: [SWAP_OUT],
  processRecord(ctx, record) {
    const seq = (record.value as SourceValue).seq;
    if ((hash(record.key) + seq * 7) % 100 === 0) throw new Error(`counter throws-some cannot count ${record.key} seq ${seq}`);
    const count = (ctx.state.get<number>(record.key) ?? 0) + 1;
    ctx.state.set(record.key, count);
    const value: CounterValue = { seq, count, code: 'throws-some' };
    ctx.produceRecord(SWAP_OUT, record.key, value);
  },
});
