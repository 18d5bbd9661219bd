/**
 * The topo SDK: everything a computation author imports. Nothing else in this
 * package is meant to be deep-imported.
 */
export { defineComputation, isComputation } from './computation.js';
export type { Computation, ComputationSpec, Context, InputRecord, IStream, KeyedState, NatsPublisher } from './computation.js';
export type { Grouping } from '../protocol/metadata.js';
export type { TypeDecl } from '../protocol/typeLimits.js';
export { validateMetadata } from '../protocol/metadata.js';
export { TopoError, InvalidMetadataError } from '../protocol/errors.js';
