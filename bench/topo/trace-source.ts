/**
 * Bench source of the trace part (bench/pairs.ts tracePart): the bench
 * source's records and chunks, from a source with no istreams, so the
 * worker's TOPO_TRACE_SAMPLE decides which records start a trace. It cannot
 * read the start record (a source reads nothing): it emits
 * TOPO_BENCH_TRACE_COUNT records from START_DELAY_MS after init; the sink
 * times them from the first to the last as in the one-hop case.
 */
import { defineComputation } from '../../sdk/index.js';
import { benchKey, benchValue } from '../records.js';
import { BENCH_STREAMS } from './streams.js';

const CHUNK = 10_000;
/** Lets the sink's worker see the topology and the harness subscribe to the report before the first record. */
const START_DELAY_MS = 1_500;

export default defineComputation({
  name: 'bench-trace-source',
  istreams: [],
  ostreams: [BENCH_STREAMS.first],
  init(ctx) {
    ctx.state.set('total', Number(process.env.TOPO_BENCH_TRACE_COUNT ?? 0));
    ctx.state.set('next', 0);
    ctx.setTimer('emit', Date.now() + START_DELAY_MS);
  },
  processTimer(ctx) {
    const total = ctx.state.get<number>('total') ?? 0;
    let next = ctx.state.get<number>('next') ?? 0;
    const end = Math.min(total, next + CHUNK);
    for (; next < end; next++) ctx.produceRecord(BENCH_STREAMS.first, benchKey(next), benchValue(next));
    ctx.state.set('next', next);
    if (next < total) ctx.setTimer('emit', Date.now());
  },
});
