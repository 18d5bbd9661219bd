/** Protocol v1 types and codecs, shared by the SDK and the runtime. */
export { PROTOCOL_VERSION, PARTITIONS, NAME_PATTERN, subjects, buckets, kvKeys, jsStreams, atLeastOnceNames } from './subjects.js';
export { fnv1a32, partitionOf, partitionsOwnedBy } from './hash.js';
export { packr, encodeBatch, decodeBatch } from './envelope.js';
export type { Batch, WireRecord } from './envelope.js';
export { GROUPINGS, hintsSchema, metadataSchema, validateMetadata } from './metadata.js';
export type { Grouping, Hints, NormalizedMetadata } from './metadata.js';
export {
  TopoError, InvalidMetadataError, MalformedBatchError, ModuleLoadError, InitFailedError, NotFoundError,
  ConflictError, NoWorkersError, TimeoutError, BadRequestError, SwapRolledBackError, ERROR_CODES, toWireError, fromWireError,
} from './errors.js';
export type { WireError } from './errors.js';
export {
  schemas, CONTROL_OPS, ID_PATTERN, MAX_ID_LENGTH, MAX_INSTANCES, MAX_ERROR_LENGTH, GROUP_PATTERN, SHA256_PATTERN, isId, truncateError,
  checkMessage, checkComputationEntry, checkInstanceUserEntry, parseRequest, describeIssues, jsonSchemas,
} from './schemas.js';
export type { ParseResult } from './schemas.js';
export type * from './control.js';
export { CHECKPOINT_REVISIONS, CHECKPOINT_VERSION, checkpointChunkSchema, checkpointMetaSchema, checkpointKeys } from './checkpoint.js';
export type { CheckpointChunk, CheckpointMeta } from './checkpoint.js';
export { DELIVERIES } from './metadata.js';
export type { Delivery } from './metadata.js';
