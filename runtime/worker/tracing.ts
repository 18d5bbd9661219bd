/**
 * Where a worker's instances start traces (PROTOCOL.md, Traces): only sources
 * (no istreams) do, for a sampled share of what they produce: the
 * computation's `hints.traceSample` when it gives one, else the worker's
 * TOPO_TRACE_SAMPLE (default 0: off). Any other computation only passes on
 * the trace of the record it is processing.
 */
import type { NormalizedMetadata } from '../../protocol/index.js';

export { sampleTrace } from '../../protocol/trace.js';

export function sourceTraceSample(metadata: NormalizedMetadata, workerRate = 0): number {
  if (metadata.istreams.length > 0) return 0;
  return metadata.hints?.traceSample ?? workerRate;
}
