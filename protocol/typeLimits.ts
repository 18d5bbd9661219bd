/**
 * What metadata validation needs to know about typed streams, without
 * protobufjs (protocol/types.ts has the codec): the declaration's shape and
 * its bounds. Bounds keep a ComputationRecord (metadata, twice during a
 * canary, and a history entry) well under NATS max_payload.
 */

/** A stream's declared type, as it sits in normalized metadata (`types[stream]`). */
export interface TypeDecl {
  /** The message's full name, e.g. `demo.Tweet` (no leading dot). */
  message: string;
  /** A FileDescriptorSet holding the message's file and everything it imports, protobuf-encoded, base64. */
  descriptor: string;
  /** sha256 hex of the descriptor bytes: two declarations are the same type when message and fingerprint match. */
  fingerprint: string;
}

export const MESSAGE_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
export const MAX_MESSAGE_NAME = 256;
export const MAX_DESCRIPTOR_CHARS = 64 * 1024;
export const MAX_TYPED_STREAMS = 32;
export const MAX_TYPES_CHARS = 192 * 1024;
/** The dead-letter reason of a record that does not decode as its stream's type. */
export const TYPE_MISMATCH = 'type mismatch';
