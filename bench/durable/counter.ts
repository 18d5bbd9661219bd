/**
 * Key-grouped counter of the checkpoint bench: counts every record of the
 * source under its key (1,024 keys, so every checkpoint has changed state in
 * all 32 partitions) and, like bench/topo/sink.ts, times its first and its
 * count-th record and reports on `bench-report`. Its totals live under their
 * own keys of the same keyed state.
 */
import { defineComputation, type Context } from '../../sdk/index.js';
import { BENCH_STREAMS, type BenchReport, type BenchStart } from '../topo/streams.js';

const PROGRESS_MS = 250;
type Out = typeof BENCH_STREAMS.report;

const report = (ctx: Context<Out>, done: boolean): void => {
  const value: BenchReport = {
    count: ctx.state.get<number>('#count') ?? 0,
    done,
    firstMs: ctx.state.get<number>('#firstMs') ?? 0,
    lastMs: ctx.state.get<number>('#lastMs') ?? 0,
  };
  ctx.produceRecord(BENCH_STREAMS.report, 'bdur-counter', value);
};

export default defineComputation({
  name: 'bdur-counter',
  istreams: [{ stream: BENCH_STREAMS.first, grouping: 'key' }, BENCH_STREAMS.start],
  ostreams: [BENCH_STREAMS.report],
  init(ctx) {
    ctx.state.set('#count', 0);
    ctx.state.set('#reported', 0);
    ctx.state.set('#expected', Number.POSITIVE_INFINITY);
    ctx.setTimer('progress', Date.now() + PROGRESS_MS);
  },
  processRecord(ctx, record) {
    if (record.stream === BENCH_STREAMS.start) {
      const expected = (record.value as BenchStart).count;
      ctx.state.set('#expected', expected);
      if ((ctx.state.get<number>('#count') ?? 0) >= expected) {
        ctx.state.set('#lastMs', performance.now());
        report(ctx, true);
      }
      return;
    }
    ctx.state.set(record.key, (ctx.state.get<number>(record.key) ?? 0) + 1);
    const count = (ctx.state.get<number>('#count') ?? 0) + 1;
    ctx.state.set('#count', count);
    if (count === 1) ctx.state.set('#firstMs', performance.now());
    if (count === ctx.state.get<number>('#expected')) {
      ctx.state.set('#lastMs', performance.now());
      report(ctx, true);
    }
  },
  processTimer(ctx, _key, atMs) {
    const count = ctx.state.get<number>('#count') ?? 0;
    if (count !== ctx.state.get<number>('#reported')) {
      ctx.state.set('#reported', count);
      report(ctx, false);
    }
    ctx.setTimer('progress', atMs + PROGRESS_MS);
  },
});
