/**
 * Bench source of the Go case: bench/topo/source.ts with str values (the
 * record's text) on `words`, the stream the Go word-lengths operator reads.
 */
import { defineComputation } from '../../sdk/index.js';
import { benchKey, benchValue } from '../records.js';
import { BENCH_STREAMS, type BenchStart } from '../topo/streams.js';

const CHUNK = 10_000;

export default defineComputation({
  name: 'bpoly-words',
  istreams: [BENCH_STREAMS.start],
  ostreams: ['words'],
  processRecord(ctx, record) {
    ctx.state.set('total', (record.value as BenchStart).count);
    ctx.state.set('next', 0);
    ctx.setTimer('emit', Date.now());
  },
  processTimer(ctx) {
    const total = ctx.state.get<number>('total') ?? 0;
    let next = ctx.state.get<number>('next') ?? 0;
    const end = Math.min(total, next + CHUNK);
    for (; next < end; next++) ctx.produceRecord('words', benchKey(next), benchValue(next).text);
    ctx.state.set('next', next);
    if (next < total) ctx.setTimer('emit', Date.now());
  },
});
