/**
 * Bench sink, shared by the one-hop and three-stage variants: counts records
 * and times the first and the expected-count-th with performance.now(). It
 * learns the expected count from the same start record the source gets, and
 * reports progress every PROGRESS_MS so the harness can tell a stall (loss)
 * from a slow run.
 */
import { defineComputation, type Computation, type Context } from '../../sdk/index.js';
import { BENCH_STREAMS, type BenchReport, type BenchStart } from './streams.js';

const PROGRESS_MS = 250;

type Out = typeof BENCH_STREAMS.report;

export function benchSink<const I extends string>(name: string, input: I): Computation<I | typeof BENCH_STREAMS.start, Out> {
  const report = (ctx: Context<Out>, done: boolean): void => {
    const value: BenchReport = {
      count: ctx.state.get<number>('count') ?? 0,
      done,
      firstMs: ctx.state.get<number>('firstMs') ?? 0,
      lastMs: ctx.state.get<number>('lastMs') ?? 0,
    };
    ctx.produceRecord(BENCH_STREAMS.report, name, value);
  };
  return defineComputation({
    name,
    istreams: [input, BENCH_STREAMS.start],
    ostreams: [BENCH_STREAMS.report],
    init(ctx) {
      ctx.state.set('count', 0);
      ctx.state.set('reported', 0);
      ctx.state.set('expected', Number.POSITIVE_INFINITY);
      ctx.setTimer('progress', Date.now() + PROGRESS_MS);
    },
    processRecord(ctx, record) {
      if (record.stream === BENCH_STREAMS.start) {
        const expected = (record.value as BenchStart).count;
        ctx.state.set('expected', expected);
        if ((ctx.state.get<number>('count') ?? 0) >= expected) {
          // Everything arrived before the start record did (only possible for tiny counts).
          ctx.state.set('lastMs', performance.now());
          report(ctx, true);
        }
        return;
      }
      const count = (ctx.state.get<number>('count') ?? 0) + 1;
      ctx.state.set('count', count);
      if (count === 1) ctx.state.set('firstMs', performance.now());
      if (count === ctx.state.get<number>('expected')) {
        ctx.state.set('lastMs', performance.now());
        report(ctx, true);
      }
    },
    processTimer(ctx, _key, atMs) {
      const count = ctx.state.get<number>('count') ?? 0;
      if (count !== ctx.state.get<number>('reported')) {
        ctx.state.set('reported', count);
        report(ctx, false);
      }
      ctx.setTimer('progress', atMs + PROGRESS_MS);
    },
  });
}
