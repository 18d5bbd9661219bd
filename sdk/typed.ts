/**
 * Typed streams for computation authors: declare a protobuf message type on a
 * stream in the spec's `types`, from the text of a .proto file:
 *
 *   import tweetProto from './tweet.proto';          // `topo deploy` bundles .proto files as text
 *   import { protoType } from 'topo-runtime/typed';  // inside this repo: '../../sdk/typed.js'
 *   defineComputation({ ..., types: { tweets: protoType(tweetProto, 'demo.Tweet') } });
 *
 * or from a FileDescriptorSet (`protoc --descriptor_set_out=x.binpb --include_imports`)
 * with descriptorType. What a computation produces on a typed stream is
 * encoded with protobuf at produceRecord (a value that does not fit throws
 * there, naming the stream, the type and the field); what it reads is
 * decoded before processRecord (a record that does not decode is
 * dead-lettered with reason "type mismatch"). Kept apart from sdk/index.ts
 * so that only computations that use types bundle protobufjs.
 */
import { readFileSync } from 'node:fs';
import { describeDescriptorSet, describeProto, type TypeDecl } from '../protocol/types.js';

export type { TypeDecl } from '../protocol/types.js';
export { StreamType, StreamTypes, typeLabel } from '../protocol/types.js';

/**
 * The declaration of `message` from a .proto: its text, or (when the string
 * ends in ".proto" and names an existing file) a path read now. A path only
 * works where the file is (tests, scripts): a deployed artifact does not
 * carry it, so computations import the .proto (bundled as text) instead.
 */
export function protoType(proto: string, message: string): TypeDecl {
  let source = proto;
  if (/\.proto$/.test(proto.trim()) && !proto.includes('\n')) {
    try {
      source = readFileSync(proto.trim(), 'utf8');
    } catch (err) {
      throw new TypeError(`protoType: cannot read ${proto}: ${(err as Error).message}`, { cause: err });
    }
  }
  return describeProto(source, message);
}

/** The declaration of `message` from FileDescriptorSet bytes (e.g. read from a `protoc --descriptor_set_out` file). */
export function descriptorType(descriptorSet: Uint8Array, message: string): TypeDecl {
  return describeDescriptorSet(descriptorSet, message);
}
