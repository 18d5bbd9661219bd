/** The throughput bench's source (bench/topo/source.ts) with its output stream declared at-least-once. */
import { defineComputation } from '../../sdk/index.js';
import source from '../topo/source.js';
import { BENCH_STREAMS } from '../topo/streams.js';

export default defineComputation({
  ...source,
  processRecord: source.processRecord!,
  name: 'bdur-source',
  delivery: { [BENCH_STREAMS.first]: 'at-least-once' },
});
