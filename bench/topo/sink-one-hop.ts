/** Sink of the one-hop bench: reads what bench-source emits. */
import { benchSink } from './sink.js';
import { BENCH_STREAMS } from './streams.js';

export default benchSink('bench-sink', BENCH_STREAMS.first);
