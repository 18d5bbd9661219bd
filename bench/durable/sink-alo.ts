/** The one-hop sink (bench/topo/sink.ts) reading the source's stream at-least-once. */
import { defineComputation } from '../../sdk/index.js';
import { benchSink } from '../topo/sink.js';
import { BENCH_STREAMS } from '../topo/streams.js';

const sink = benchSink('bdur-sink', BENCH_STREAMS.first);
export default defineComputation({
  ...sink,
  processRecord: sink.processRecord!,
  delivery: { [BENCH_STREAMS.first]: 'at-least-once' },
});
