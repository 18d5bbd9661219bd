/**
 * Bench source: on a start record {count}, emits `count` records as fast as
 * the runtime takes them. Each timer call emits one chunk and re-arms the
 * timer at "now", so the runtime's flow control can hold the source between
 * chunks.
 */
import { defineComputation } from '../../sdk/index.js';
import { benchKey, benchValue } from '../records.js';
import { BENCH_STREAMS, type BenchStart } from './streams.js';

const CHUNK = 10_000;

export default defineComputation({
  name: 'bench-source',
  istreams: [BENCH_STREAMS.start],
  ostreams: [BENCH_STREAMS.first],
  processRecord(ctx, record) {
    const { count } = record.value as BenchStart;
    ctx.state.set('total', count);
    ctx.state.set('next', 0);
    ctx.setTimer('emit', Date.now());
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
