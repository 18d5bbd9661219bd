/** Sink of the three-stage bench: reads what bench-pass emits. */
import { benchSink } from './sink.js';
import { BENCH_STREAMS } from './streams.js';

export default benchSink('bench-sink3', BENCH_STREAMS.second);
