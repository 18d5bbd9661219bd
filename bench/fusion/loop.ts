/** The hand-written baseline of the fusion bench: one computation calling the five steps in a loop. */
import { defineComputation } from '../../sdk/index.js';
import type { BenchValue } from '../records.js';
import { BENCH_STREAMS } from '../topo/streams.js';
import { FUSION_LOOP, FUSION_OUT, STEPS } from './steps.js';

export default defineComputation({
  name: FUSION_LOOP,
  istreams: [BENCH_STREAMS.first],
  ostreams: [FUSION_OUT],
  processRecord(ctx, record) {
    let v = record.value as BenchValue;
    for (const step of STEPS) v = step(v);
    ctx.produceRecord(FUSION_OUT, record.key, v);
  },
});
