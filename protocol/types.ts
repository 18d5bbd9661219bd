/**
 * Typed streams (PROTOCOL.md, "Typed streams"): a stream may declare a
 * protobuf message type. The declaration travels in the metadata as a
 * self-contained FileDescriptorSet (base64) plus the message's full name and
 * a fingerprint (sha256 hex of the descriptor bytes), so the controller,
 * workers and other languages get the type without the .proto file.
 *
 * On the wire a typed record's value is the message's protobuf encoding as
 * msgpack bin. Producers encode at produceRecord (a value that does not fit
 * is an error there, naming the stream, the type and the field); consumers
 * decode before processRecord (a record that does not decode is dead-lettered
 * with reason "type mismatch"). Untyped streams are not touched.
 *
 * Field names are the .proto's own (no camelCase), as in every other
 * language; decoded messages are plain objects with proto3 defaults filled
 * in, 64-bit integers as numbers, enums as their names, bytes as Buffers.
 */
import { createHash } from 'node:crypto';
import protobuf from 'protobufjs';
import * as descriptorNs from 'protobufjs/ext/descriptor.js';
import { InvalidMetadataError } from './errors.js';
import type { TypeDecl } from './typeLimits.js';

export type { TypeDecl } from './typeLimits.js';
export { TYPE_MISMATCH, MAX_DESCRIPTOR_CHARS, MAX_TYPED_STREAMS, MAX_TYPES_CHARS } from './typeLimits.js';

// A CommonJS module: its exports are the default export when imported from ESM (dist/), the namespace under vitest.
const descriptorExt = ((descriptorNs as unknown as { default?: typeof descriptorNs }).default ?? descriptorNs) as typeof descriptorNs;

const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** The declaration of `message` from a FileDescriptorSet (bytes, e.g. `protoc --descriptor_set_out --include_imports`). */
export function describeDescriptorSet(bytes: Uint8Array, message: string): TypeDecl {
  const decl: TypeDecl = { message: message.replace(/^\./, ''), descriptor: b64(bytes), fingerprint: sha256Hex(bytes) };
  lookup(decl); // throws when the message is not in it
  return decl;
}

/**
 * The declaration of `message` from the text of a .proto file (one
 * self-contained file; google/protobuf well-known types may be imported).
 */
export function describeProto(source: string, message: string): TypeDecl {
  let root: protobuf.Root;
  try {
    root = protobuf.parse(source, new protobuf.Root(), { keepCase: true }).root;
    root.resolveAll();
  } catch (err) {
    throw new TypeError(`cannot parse the .proto of ${message}: ${(err as Error).message}`, { cause: err });
  }
  try {
    root.lookupType(message);
  } catch {
    throw new TypeError(`the .proto defines no message ${message} (messages: ${messagesOf(root).join(', ') || 'none'})`);
  }
  const set = (root as unknown as { toDescriptor(syntax: string): unknown }).toDescriptor('proto3');
  const bytes = descriptorExt.FileDescriptorSet.encode(set as protobuf.Message).finish();
  return describeDescriptorSet(bytes, message);
}

function messagesOf(ns: protobuf.NamespaceBase): string[] {
  const out: string[] = [];
  for (const o of ns.nestedArray) {
    if (o instanceof protobuf.Type) out.push(o.fullName.slice(1));
    if (o instanceof protobuf.Namespace || o instanceof protobuf.Type) out.push(...messagesOf(o));
  }
  return out;
}

/** Built types by `${fingerprint} ${message}`: a descriptor is parsed once per process. */
const built = new Map<string, protobuf.Type>();

function lookup(decl: TypeDecl): protobuf.Type {
  const k = `${decl.fingerprint} ${decl.message}`;
  const hit = built.get(k);
  if (hit) return hit;
  let root: protobuf.Root;
  try {
    const set = descriptorExt.FileDescriptorSet.decode(Buffer.from(decl.descriptor, 'base64'));
    root = (protobuf.Root as unknown as { fromDescriptor(s: unknown): protobuf.Root }).fromDescriptor(set);
    root.resolveAll();
  } catch (err) {
    throw new TypeError(`the descriptor of ${decl.message} is not a valid FileDescriptorSet: ${(err as Error).message}`, { cause: err });
  }
  let t: protobuf.Type;
  try {
    t = root.lookupType(decl.message);
  } catch {
    throw new TypeError(`the descriptor defines no message ${decl.message} (messages: ${messagesOf(root).join(', ') || 'none'})`);
  }
  built.set(k, t);
  return t;
}

/** "demo.Tweet (fingerprint 1a2b3c4d5e6f)", or "untyped (msgpack)". */
export function typeLabel(decl: Pick<TypeDecl, 'message' | 'fingerprint'> | undefined): string {
  return decl ? `${decl.message} (fingerprint ${decl.fingerprint.slice(0, 12)})` : 'untyped (msgpack)';
}

export function sameType(a: TypeDecl | undefined, b: TypeDecl | undefined): boolean {
  if (!a || !b) return a === b;
  return a.message === b.message && a.fingerprint === b.fingerprint;
}

/**
 * Checks what zod cannot: each descriptor decodes, defines its message and
 * has the fingerprint it claims. Throws InvalidMetadataError naming the field.
 */
export function checkTypeDecls(m: { name: string; types?: Record<string, TypeDecl> }): void {
  for (const [stream, decl] of Object.entries(m.types ?? {})) {
    const path = `types.${stream}`;
    const bad = (message: string): never => {
      throw new InvalidMetadataError(`invalid computation metadata of "${m.name}": ${path}: ${message}`, { detail: [{ path, message }] });
    };
    const bytes = Buffer.from(decl.descriptor, 'base64');
    if (sha256Hex(bytes) !== decl.fingerprint) bad(`fingerprint ${decl.fingerprint.slice(0, 12)}… is not the sha256 of the descriptor`);
    try {
      lookup(decl);
    } catch (err) {
      bad((err as Error).message);
    }
  }
}

// ---- values -----------------------------------------------------------------------

const INT32 = new Set(['int32', 'sint32', 'sfixed32']);
const UINT32 = new Set(['uint32', 'fixed32']);
const INT64 = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);

function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

const at = (path: string, k: string | number): string => (typeof k === 'number' ? `${path}[${k}]` : path ? `${path}.${k}` : k);

/** Set by the checks when the value needs fromObject before encoding (an enum by name, bytes or a 64-bit integer as a string). */
let needsConversion = false;

/** Why `v` does not fit scalar or enum type `type` (undefined when it fits). */
function checkScalar(type: string, resolved: protobuf.ReflectionObject | null, v: unknown, path: string): string | undefined {
  if (resolved instanceof protobuf.Enum) {
    if (typeof v === 'number' ? Object.values(resolved.values).includes(v) : typeof v === 'string' && Object.hasOwn(resolved.values, v) && (needsConversion = true)) return undefined;
    return `${path}: expected a ${resolved.fullName.slice(1)} value (${Object.keys(resolved.values).join(', ')}), got ${show(v)}`;
  }
  switch (type) {
    case 'double': case 'float':
      return typeof v === 'number' ? undefined : `${path}: expected a number, got ${show(v)}`;
    case 'bool':
      return typeof v === 'boolean' ? undefined : `${path}: expected a boolean, got ${show(v)}`;
    case 'string':
      return typeof v === 'string' ? undefined : `${path}: expected a string, got ${show(v)}`;
    case 'bytes':
      return v instanceof Uint8Array || (typeof v === 'string' && (needsConversion = true)) ? undefined : `${path}: expected bytes (a Uint8Array or base64 string), got ${show(v)}`;
  }
  if (INT32.has(type)) return Number.isInteger(v) && (v as number) >= -0x80000000 && (v as number) <= 0x7fffffff ? undefined : `${path}: expected a 32-bit integer, got ${show(v)}`;
  if (UINT32.has(type)) return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff ? undefined : `${path}: expected an unsigned 32-bit integer, got ${show(v)}`;
  if (INT64.has(type)) {
    if (Number.isSafeInteger(v) || (typeof v === 'string' && /^-?[0-9]+$/.test(v) && (needsConversion = true))) {
      if (type.startsWith('u') || type === 'fixed64') if (typeof v === 'number' ? v < 0 : (v as string).startsWith('-')) return `${path}: expected an unsigned integer, got ${show(v)}`;
      return undefined;
    }
    return `${path}: expected a 64-bit integer (a safe integer or a string of digits), got ${show(v)}`;
  }
  return undefined;
}

/** Why `v` does not fit message type `t` (undefined when it fits). Unknown fields are errors: they would be dropped silently. */
function checkMessage(t: protobuf.Type, v: unknown, path: string): string | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) {
    return `${path || '(value)'}: expected an object (message ${t.fullName.slice(1)}), got ${show(v)}`;
  }
  for (const k of Object.keys(v)) {
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined || x === null) continue;
    const f = t.fields[k];
    if (!f) return `${at(path, k)}: no such field in ${t.fullName.slice(1)} (fields: ${Object.keys(t.fields).join(', ')})`;
    f.resolve();
    const err = checkField(f, x, at(path, k));
    if (err) return err;
  }
  return undefined;
}

function checkOne(f: protobuf.Field, x: unknown, path: string): string | undefined {
  return f.resolvedType instanceof protobuf.Type ? checkMessage(f.resolvedType, x, path) : checkScalar(f.type, f.resolvedType, x, path);
}

function checkField(f: protobuf.Field, x: unknown, path: string): string | undefined {
  if (f.map) {
    if (typeof x !== 'object' || Array.isArray(x) || x instanceof Uint8Array) return `${path}: expected an object (map<${(f as unknown as protobuf.MapField).keyType}, ${f.type}>), got ${show(x)}`;
    for (const [k, e] of Object.entries(x as Record<string, unknown>)) {
      const err = checkOne(f, e, `${path}[${JSON.stringify(k)}]`);
      if (err) return err;
    }
    return undefined;
  }
  if (f.repeated) {
    if (!Array.isArray(x)) return `${path}: expected an array (repeated ${f.type}), got ${show(x)}`;
    for (let i = 0; i < x.length; i++) {
      const err = checkOne(f, x[i], at(path, i));
      if (err) return err;
    }
    return undefined;
  }
  return checkOne(f, x, path);
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, arrays: true, objects: true };

/** One stream's type: encode what a computation produces, decode what it receives. */
export class StreamType {
  readonly message: string;
  readonly fingerprint: string;
  private readonly t: protobuf.Type;

  constructor(readonly stream: string, readonly decl: TypeDecl) {
    this.message = decl.message;
    this.fingerprint = decl.fingerprint;
    this.t = lookup(decl);
  }

  /**
   * The protobuf encoding of `value` (an object with the message's fields, or
   * bytes already holding its encoding). Throws a TypeError naming the
   * stream, the type and the field that does not fit.
   */
  encode(value: unknown, what = `produceRecord("${this.stream}")`): Uint8Array {
    if (value instanceof Uint8Array) {
      try {
        this.t.decode(value);
      } catch (err) {
        throw new TypeError(`${what}: bytes given are not a valid ${this.message}: ${(err as Error).message}`);
      }
      return value;
    }
    needsConversion = false;
    const err = checkMessage(this.t, value, '');
    if (err) throw new TypeError(`${what}: value does not fit ${this.message}: ${err}`);
    // A checked plain value encodes as it is; fromObject only when something must be converted first.
    const v = needsConversion ? this.t.fromObject(value as Record<string, unknown>) : (value as protobuf.Message);
    return this.t.encode(v).finish();
  }

  /** The message a record's value holds, as a plain object; throws an error saying what failed. */
  decode(value: unknown): Record<string, unknown> {
    if (!(value instanceof Uint8Array)) {
      throw new TypeError(`stream "${this.stream}" is typed ${typeLabel(this.decl)}: expected its protobuf encoding (msgpack bin), got ${show(value)}`);
    }
    try {
      return this.t.toObject(this.t.decode(value), TO_OBJECT);
    } catch (err) {
      throw new TypeError(`stream "${this.stream}" is typed ${typeLabel(this.decl)}: the record does not decode as ${this.message}: ${(err as Error).message}`);
    }
  }
}

/** The typed streams of one computation; `of` returns undefined when it declares none (the untyped path stays as it was). */
export class StreamTypes {
  private readonly byStream = new Map<string, StreamType>();

  private constructor(types: Record<string, TypeDecl>) {
    for (const [stream, decl] of Object.entries(types)) this.byStream.set(stream, new StreamType(stream, decl));
  }

  static of(m: { types?: Record<string, TypeDecl> | undefined }): StreamTypes | undefined {
    return m.types && Object.keys(m.types).length ? new StreamTypes(m.types) : undefined;
  }

  get(stream: string): StreamType | undefined {
    return this.byStream.get(stream);
  }

  /** `value` encoded when `stream` is typed, else unchanged. */
  encode(stream: string, value: unknown): unknown {
    const t = this.byStream.get(stream);
    return t ? t.encode(value) : value;
  }

  /** `value` decoded when `stream` is typed, else unchanged (throws as StreamType.decode). */
  decode(stream: string, value: unknown): unknown {
    const t = this.byStream.get(stream);
    return t ? t.decode(value) : value;
  }
}
