/** The heavy bench's computation: ~50 µs of busy loop per record, then the record passes on. */
import { defineComputation } from '../../sdk/index.js';
import { BENCH_STREAMS } from '../topo/streams.js';

export const HEAVY = 'bheavy';
export const HEAVY_OUT = 'bheavy-out';
export const HEAVY_SINK = 'bheavy-sink';
export const BUSY_MS = 0.05;

export default defineComputation({
  name: HEAVY,
  istreams: [BENCH_STREAMS.first], // shuffle: the instances share the source's records
  ostreams: [HEAVY_OUT],
  processRecord(ctx, record) {
    const until = performance.now() + BUSY_MS;
    while (performance.now() < until) {
      // busy: stands for ~50 µs of parsing or scoring per record
    }
    ctx.produceRecord(HEAVY_OUT, record.key, record.value);
  },
});
