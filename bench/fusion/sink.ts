/** Sink of the fusion bench: reads what stage 5 (or the loop) emits. Two istreams, so it is never fused. */
import { benchSink } from '../topo/sink.js';
import { FUSION_OUT, FUSION_SINK } from './steps.js';

export default benchSink(FUSION_SINK, FUSION_OUT);
