/** Sink of the heavy bench: reads what the busy computation emits. */
import { benchSink } from '../topo/sink.js';
import { HEAVY_OUT, HEAVY_SINK } from './busy.js';

export default benchSink(HEAVY_SINK, HEAVY_OUT);
