/**
 * The msgpack batch envelope, protocol v1.
 *
 *   Batch  = map { v: 1, src: id (^[A-Za-z0-9_-]{1,128}$), stream: str, bseq: uint, recs: [Record...] }
 *   Record = array [ key: str, value: any, ts: finite number (ms since epoch), seq: finite number, trace?: str|nil ]
 *
 * `seq` is the producer sequence: it starts at 1 per (producer, stream) and grows
 * by one per record, so a consumer can detect gaps and duplicates.
 */
import { addExtension, Packr } from 'msgpackr';
import { PROTOCOL_VERSION } from './subjects.js';
import { MalformedBatchError } from './errors.js';
import { MAX_ID_LENGTH, isId } from './schemas.js';

/**
 * Plain msgpack only: no msgpackr record extension and `undefined` as nil (not
 * msgpackr's fixext 0), so every language can read it.
 */
export const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number', encodeUndefinedAsNil: true } as ConstructorParameters<typeof Packr>[0]);

/**
 * No extension types, in either direction (PROTOCOL.md, msgpack rules).
 * Writing: a `Date` becomes its ms-since-epoch number (an extension without a
 * `type` writes what `write` returns as plain msgpack) instead of the
 * timestamp extension (−1). Reading: msgpackr's built-in extensions (the
 * timestamp −1, 0 for undefined, its BigInt, typed array, Set, Error, RegExp
 * and reference extensions) are refused like any unknown type, so a batch
 * holding one is malformed. msgpackr keeps extensions per process, not per
 * Packr (and files the timestamp under its byte, 0xff); topo writes and reads
 * only plain msgpack, so that is what we want.
 */
addExtension({ Class: Date, write: (date: Date) => date.getTime() } as unknown as Parameters<typeof addExtension>[0]);
for (const type of [0xff, 0, 0x42, 0x62, 0x65, 0x69, 0x70, 0x73, 0x74, 0x78]) {
  addExtension({
    type,
    unpack: () => {
      throw new Error(`extension type ${type === 0xff ? -1 : type} is not part of the protocol (plain msgpack only)`);
    },
  } as unknown as Parameters<typeof addExtension>[0]);
}

export type WireRecord = [key: string, value: unknown, ts: number, seq: number, trace?: string | null];

export interface Batch {
  v: number;
  /** Producer instance id (subject-safe token). */
  src: string;
  stream: string;
  /** Batch sequence per (producer, stream), from 1. */
  bseq: number;
  recs: WireRecord[];
}

export function encodeBatch(batch: Batch): Uint8Array {
  return packr.pack(batch);
}

/**
 * Decodes and checks a batch; throws MalformedBatchError naming what is wrong.
 * It accepts exactly what `schemas.batch` accepts (test/schemas.test.ts runs
 * the vectors through both), checked by hand because this is the hot path.
 */
export function decodeBatch(bytes: Uint8Array): Batch {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (err) {
    throw new MalformedBatchError(`not msgpack: ${(err as Error).message}`, { cause: err });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new MalformedBatchError('batch must be a msgpack map');
  }
  const b = raw as Record<string, unknown>;
  if (b.v !== PROTOCOL_VERSION) throw new MalformedBatchError(`unsupported protocol version ${JSON.stringify(b.v)} (expected ${PROTOCOL_VERSION})`);
  if (typeof b.src !== 'string' || b.src.length === 0) throw new MalformedBatchError('batch.src must be a non-empty string');
  // Credits go to topo.fc.<src>: a src that is not one subject token would poison credit sending.
  if (!isId(b.src)) throw new MalformedBatchError(badSrc(b.src));
  if (typeof b.stream !== 'string') throw new MalformedBatchError('batch.stream must be a string');
  if (typeof b.bseq !== 'number' || !Number.isInteger(b.bseq) || b.bseq < 0) throw new MalformedBatchError('batch.bseq must be an unsigned integer');
  if (!Array.isArray(b.recs)) throw new MalformedBatchError('batch.recs must be an array');
  const recs = b.recs as unknown[];
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i];
    if (!Array.isArray(r) || r.length < 4 || r.length > 5) throw new MalformedBatchError(`recs[${i}] must be an array of 4 or 5 items`);
    if (typeof r[0] !== 'string') throw new MalformedBatchError(`recs[${i}].key must be a string`);
    if (typeof r[2] !== 'number' || !Number.isFinite(r[2])) throw new MalformedBatchError(`recs[${i}].ts must be a number`);
    if (typeof r[3] !== 'number' || !Number.isFinite(r[3])) throw new MalformedBatchError(`recs[${i}].seq must be a number`);
    if (r.length === 5 && r[4] !== null && r[4] !== undefined && typeof r[4] !== 'string') throw new MalformedBatchError(`recs[${i}].trace must be a string or nil`);
  }
  return b as unknown as Batch;
}

function badSrc(src: string): string {
  const shown = src.length > 40 ? `${JSON.stringify(src.slice(0, 40))}… (${src.length} characters)` : JSON.stringify(src);
  return `batch.src must be a subject-safe id (1-${MAX_ID_LENGTH} letters, digits, "_" or "-"), got ${shown}`;
}
