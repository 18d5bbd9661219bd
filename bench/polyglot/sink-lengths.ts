/** Sink of the Go case: counts what word-lengths (the operator or its nats.go baseline) emits. */
import { benchSink } from '../topo/sink.js';

export default benchSink('bpoly-sink', 'word-lengths');
