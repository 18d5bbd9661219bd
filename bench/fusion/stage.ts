/** Stage i (1..5) of the fused chain: applies STEPS[i-1] and passes the record on. */
import { defineComputation } from '../../sdk/index.js';
import type { BenchValue } from '../records.js';
import { BENCH_STREAMS } from '../topo/streams.js';
import { STEPS, stageName, stageOut } from './steps.js';

export function benchStage(i: number) {
  const step = STEPS[i - 1]!;
  const out = stageOut(i);
  return defineComputation({
    name: stageName(i),
    istreams: [i === 1 ? BENCH_STREAMS.first : stageOut(i - 1)],
    ostreams: [out],
    processRecord(ctx, record) {
      ctx.produceRecord(out, record.key, step(record.value as BenchValue));
    },
  });
}
