#!/usr/bin/env node
/**
 * Writes the topo protocol v1 conformance vectors next to this file:
 * partition.json, batches.json, malformed.json, metadata.json, credit.json, operator.json.
 *
 *   node protocol/vectors/generate.mjs          # (re)write the files
 *   node protocol/vectors/generate.mjs --check  # exit 1 if a committed file differs
 *
 * This script deliberately imports nothing from the SDK and no msgpack library:
 * bytes are assembled from the msgpack specification by the small writer below,
 * and FNV-1a is computed with BigInt arithmetic, so the vectors test the SDK's
 * codec (msgpackr) and hash against an independent reading of the protocol.
 * verify.py decodes the same bytes a third time with Python's `msgpack`.
 * Output is deterministic: no clocks, no randomness.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const utf8 = new TextEncoder();

// ---- msgpack writer, straight from the spec ---------------------------------
// Every function returns a plain array of byte values.

function fail(msg) {
  throw new Error(`generate.mjs: ${msg}`);
}
function uintBE(n, width) {
  let v = BigInt(n);
  if (v < 0n || v >= 1n << BigInt(8 * width)) fail(`${n} does not fit in ${width} unsigned bytes`);
  const out = [];
  for (let i = width - 1; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}
function intBE(n, width) {
  const v = BigInt(n);
  const bits = BigInt(8 * width);
  if (v < -(1n << (bits - 1n)) || v >= 1n << (bits - 1n)) fail(`${n} does not fit in ${width} signed bytes`);
  return uintBE(v < 0n ? (1n << bits) + v : v, width);
}
function floatBytes(x, width) {
  const view = new DataView(new ArrayBuffer(width));
  if (width === 4) view.setFloat32(0, x);
  else view.setFloat64(0, x);
  return [...new Uint8Array(view.buffer)];
}
const bytesOf = (s) => [...utf8.encode(s)];

const mp = {
  nil: () => [0xc0],
  false: () => [0xc2],
  true: () => [0xc3],
  posFixint: (n) => (n >= 0 && n <= 0x7f ? [n] : fail(`posFixint ${n}`)),
  negFixint: (n) => (n >= -32 && n <= -1 ? [0x100 + n] : fail(`negFixint ${n}`)),
  uint8: (n) => [0xcc, ...uintBE(n, 1)],
  uint16: (n) => [0xcd, ...uintBE(n, 2)],
  uint32: (n) => [0xce, ...uintBE(n, 4)],
  uint64: (n) => [0xcf, ...uintBE(n, 8)],
  int8: (n) => [0xd0, ...intBE(n, 1)],
  int16: (n) => [0xd1, ...intBE(n, 2)],
  int32: (n) => [0xd2, ...intBE(n, 4)],
  int64: (n) => [0xd3, ...intBE(n, 8)],
  float32: (x) => [0xca, ...floatBytes(x, 4)],
  float64: (x) => [0xcb, ...floatBytes(x, 8)],
  fixstr: (s) => (bytesOf(s).length < 32 ? [0xa0 | bytesOf(s).length, ...bytesOf(s)] : fail(`fixstr too long`)),
  str8: (s) => [0xd9, ...uintBE(bytesOf(s).length, 1), ...bytesOf(s)],
  str16: (s) => [0xda, ...uintBE(bytesOf(s).length, 2), ...bytesOf(s)],
  str32: (s) => [0xdb, ...uintBE(bytesOf(s).length, 4), ...bytesOf(s)],
  bin8: (b) => [0xc4, ...uintBE(b.length, 1), ...b],
  bin16: (b) => [0xc5, ...uintBE(b.length, 2), ...b],
  bin32: (b) => [0xc6, ...uintBE(b.length, 4), ...b],
  fixarray: (items) => (items.length < 16 ? [0x90 | items.length, ...items.flat()] : fail('fixarray too long')),
  array16: (items) => [0xdc, ...uintBE(items.length, 2), ...items.flat()],
  array32: (items) => [0xdd, ...uintBE(items.length, 4), ...items.flat()],
  /** entries: [encodedKey, encodedValue][] */
  fixmap: (entries) => (entries.length < 16 ? [0x80 | entries.length, ...entries.flat(2)] : fail('fixmap too long')),
  map16: (entries) => [0xde, ...uintBE(entries.length, 2), ...entries.flat(2)],
  map32: (entries) => [0xdf, ...uintBE(entries.length, 4), ...entries.flat(2)],
  fixext1: (type, byte) => [0xd4, ...intBE(type, 1), byte],
};

/**
 * Encodes a JS value the way the TypeScript SDK does (msgpackr with
 * useRecords:false), as PROTOCOL.md describes it: integers in the smallest
 * int format when they fit in 32 bits and float64 otherwise, strings/bin/arrays
 * with the smallest header, and every map (plain object) with a map16 header.
 */
function encodeLikeTs(value) {
  if (value === null) return mp.nil();
  if (value === true) return mp.true();
  if (value === false) return mp.false();
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0 && value <= 0xffffffff) {
      if (value <= 0x7f) return mp.posFixint(value);
      if (value <= 0xff) return mp.uint8(value);
      if (value <= 0xffff) return mp.uint16(value);
      return mp.uint32(value);
    }
    if (Number.isInteger(value) && value < 0 && value >= -0x80000000) {
      if (value >= -32) return mp.negFixint(value);
      if (value >= -0x80) return mp.int8(value);
      if (value >= -0x8000) return mp.int16(value);
      return mp.int32(value);
    }
    return mp.float64(value);
  }
  if (typeof value === 'string') {
    const n = bytesOf(value).length;
    if (n < 32) return mp.fixstr(value);
    if (n < 0x100) return mp.str8(value);
    if (n < 0x10000) return mp.str16(value);
    return mp.str32(value);
  }
  if (value instanceof Uint8Array) {
    const b = [...value];
    if (b.length < 0x100) return mp.bin8(b);
    if (b.length < 0x10000) return mp.bin16(b);
    return mp.bin32(b);
  }
  if (Array.isArray(value)) {
    const items = value.map(encodeLikeTs);
    if (items.length < 16) return mp.fixarray(items);
    if (items.length < 0x10000) return mp.array16(items);
    return mp.array32(items);
  }
  if (typeof value === 'object') {
    return mp.map16(Object.entries(value).map(([k, v]) => [encodeLikeTs(k), encodeLikeTs(v)]));
  }
  return fail(`cannot encode ${typeof value}`);
}

/** JSON form of a decoded value: byte strings become {"$bin": "<base64>"}. */
function toJson(value) {
  if (value instanceof Uint8Array) return { $bin: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  }
  return value;
}

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const bin = (...b) => new Uint8Array(b);
const range = (n, f) => Array.from({ length: n }, (_, i) => f(i));

// ---- partition.json ------------------------------------------------------------

const FNV_OFFSET = 0x811c9dc5n;
const FNV_PRIME = 0x01000193n;
const PARTITIONS = 32;

function fnv1a32(key) {
  let h = FNV_OFFSET;
  for (const b of utf8.encode(key)) h = ((h ^ BigInt(b)) * FNV_PRIME) & 0xffffffffn;
  return Number(h);
}
// Published FNV-1a test values (FNV reference test suite), as a sanity check of this script.
for (const [k, want] of [['', 0x811c9dc5], ['a', 0xe40c292c], ['foobar', 0xbf9cf968]]) {
  if (fnv1a32(k) !== want) fail(`fnv1a32(${JSON.stringify(k)}) != ${want.toString(16)}`);
}

const partitionKeys = [
  // ASCII
  '', 'a', 'b', 'c', 'A', 'Z', 'z', '0', '1', '9', '42', 'foobar', 'user-1', 'user-2', 'user-42',
  'user:1001', 'order/2024/06/01', 'key with spaces', ' ', '\t', '\n', '~', '\u007f', '*', '>',
  'topo.data.events.7', 'hello, world', 'The quick brown fox jumps over the lazy dog', '\u0000', 'a\u0000b',
  // non-ASCII (first byte >= 0x80; also the SDK's non-ASCII code path)
  '\u0080', '\u00e9', 'e\u0301', '\u00df', '\u00ff', '\u03a9mega', '\u041f\u0440\u0438\u0432\u0435\u0442',
  '\u65e5\u672c\u8a9e', '\ud55c\uad6d\uc5b4', '\u05e2\u05d1\u05e8\u05d9\u05ea', '\u0645\u0631\u062d\u0628\u0627',
  '\u0800', '\uffff', 'abc\u00e9', '\u00e9abc',
  // emoji and other non-BMP code points (4 UTF-8 bytes, surrogate pairs in UTF-16)
  '\u{1f600}', '\u{1f44d}\u{1f3fd}', '\u{1f468}\u200d\u{1f469}\u200d\u{1f467}', '\u{1f1f3}\u{1f1f1}',
  'abc\u{1f600}', '\u{1f600}abc', '\u{1d11e}', '\u{10ffff}',
  // long keys
  'x'.repeat(1000), 'k'.repeat(4096), '\u65e5\u672c'.repeat(200), '\u{1f600}'.repeat(100),
  range(64, (i) => `segment-${i}`).join('/'),
];

const ownershipCases = [
  [0, 1], [0, 2], [1, 2], [0, 3], [1, 3], [2, 3], [3, 5], [5, 8], [0, 32], [31, 32], [7, 40], [33, 40],
];

const partitionJson = {
  description:
    'Key -> partition, protocol v1: FNV-1a 32-bit over the UTF-8 bytes of the key, then modulo `partitions`. ' +
    'Instance `index` of `count` owns partitions p with p % count == index (key grouping).',
  partitions: PARTITIONS,
  offsetBasis: '0x811c9dc5',
  prime: '0x01000193',
  keys: partitionKeys.map((key) => {
    const h = fnv1a32(key);
    return { key, utf8: hex(utf8.encode(key)), fnv1a32: h, fnv1a32Hex: h.toString(16).padStart(8, '0'), partition: h % PARTITIONS };
  }),
  ownership: ownershipCases.map(([index, count]) => ({
    index,
    count,
    partitions: range(PARTITIONS, (p) => p).filter((p) => p % count === index),
  })),
};

// ---- batches.json --------------------------------------------------------------

const TS = 1700000000000; // 2023-11-14T22:13:20Z, above 2^32 as every real timestamp is
const batch = (recs, over = {}) => ({ v: 1, src: 'p1', stream: 'events', bseq: 1, recs, ...over });
const rec = (key, value, i, trace) => (trace === undefined ? [key, value, TS + i, i + 1] : [key, value, TS + i, i + 1, trace]);
const recsOf = (values) => values.map((v, i) => rec(`k${i}`, v, i));

/** Canonical vectors: the TS encoder must produce exactly these bytes from `decoded`. */
const canonical = [
  ['empty-recs', 'A batch with no records (allowed, e.g. a flush after a drain).', batch([])],
  ['one-record-no-trace', 'Record of 4 items: trace absent. ts (> 2^32) is float64.', batch([rec('k', 'hello', 0)])],
  ['trace-string', 'Record of 5 items with a trace id.', batch([rec('k', 1, 0, 'trace-4bf92f3577b34da6')])],
  ['trace-nil', 'Record of 5 items, trace nil.', batch([rec('k', 1, 0, null)])],
  ['nil-and-bool', 'nil, true, false values.', batch(recsOf([null, true, false]))],
  ['uint-each-width', 'Unsigned ints at the edges of positive fixint, uint8, uint16, uint32.',
    batch(recsOf([0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295]))],
  ['negative-int-each-width', 'Negative ints at the edges of negative fixint, int8, int16, int32.',
    batch(recsOf([-1, -32, -33, -128, -129, -32768, -32769, -2147483648]))],
  ['ints-beyond-32-bits', 'The TS SDK writes integers outside [-2^31, 2^32) as float64.',
    batch(recsOf([4294967296, -2147483649, 9007199254740991, -9007199254740991, TS]))],
  ['floats', 'float64 values.', batch(recsOf([1.5, -0.25, 3.141592653589793, 1e300, 5e-324, -1.7976931348623157e308]))],
  ['strings', 'fixstr (0, 5, 31 bytes), str8 (32, 255 bytes), str16 (256 bytes), multi-byte UTF-8.',
    batch(recsOf(['', 'hello', 's'.repeat(31), 's'.repeat(32), 's'.repeat(255), 's'.repeat(256),
      'h\u00e9llo w\u00f6rld \u65e5\u672c \u{1f600}']))],
  ['bin', 'bin8 (0 and 5 bytes) and bin16 (256 bytes); JSON shows them as {"$bin": base64}.',
    batch(recsOf([bin(), bin(0, 1, 2, 254, 255), new Uint8Array(range(256, (i) => i))]))],
  ['arrays', 'fixarray (0, 3, 15 items) and array16 (16 items).',
    batch(recsOf([[], [1, 'a', null], range(15, (i) => i), range(16, (i) => i)]))],
  ['maps', 'Plain objects: the TS SDK always writes map16, even for small maps.',
    batch(recsOf([{}, { a: 1, b: 'x' }, Object.fromEntries(range(16, (i) => [`f${i}`, i]))]))],
  ['nested', 'Nested maps and arrays.', batch([rec('user-7', {
    user: { id: 7, name: 'Ada', tags: ['admin', 'ops'], meta: { active: true, score: 0.5, parent: null } },
    events: [{ type: 'click', at: TS }, { type: 'view', path: ['a', 'b'], raw: bin(1, 2, 3) }],
  }, 0)])],
  ['unicode-keys', 'Empty, multi-byte and emoji record keys.',
    batch([rec('', 1, 0), rec('\u65e5\u672c\u8a9e', 2, 1), rec('\u{1f600}', 3, 2, null)])],
  ['large-bseq-and-names', 'bseq at 2^32 - 1 (uint32) and 2^32 (float64); names with "-" and "_".',
    batch([rec('k', 'x', 0)], { src: 'orders-v2-0-1a2b', stream: 'page_views', bseq: 4294967295 }),
  ],
  ['bseq-float64', 'bseq above 2^32 is float64 from the TS SDK.', batch([rec('k', 'x', 0)], { bseq: 4294967296 })],
  ['mixed-batch', 'A realistic batch: several keys, mixed values, some traced.', batch([
    rec('sensor-1', { temp: 21.5, unit: 'C' }, 0, 'tr-1'),
    rec('sensor-2', { temp: -3, unit: 'C' }, 1),
    rec('sensor-1', { temp: 22, unit: 'C' }, 2, null),
    rec('sensor-3', [1, 2, 3], 3),
    rec('sensor-2', 'offline', 4, 'tr-2'),
  ], { src: 'thermo-0', stream: 'readings', bseq: 17 })],
];

// Envelope builders for hand-assembled (decode-only) vectors.
const s = (k) => mp.fixstr(k);
function envelope(fields, header = mp.fixmap) {
  return header(fields.map(([k, v]) => [s(k), v]));
}
const stdFields = (recsBytes, over = {}) => {
  const f = { v: mp.posFixint(1), src: s('p1'), stream: s('events'), bseq: mp.posFixint(1), recs: recsBytes, ...over };
  return Object.entries(f);
};
const recordBytes = (items, header = mp.fixarray) => header(items);

/** Decode-only vectors: valid batches written differently than the TS SDK would (e.g. by another language). */
const decodeOnly = [
  {
    name: 'fixmap-envelope-uint64-ts',
    note: 'Envelope as most msgpack libraries write it: fixmap header, ts as uint64, seq as uint8.',
    bytes: envelope(stdFields(mp.fixarray([recordBytes([s('k'), s('v'), mp.uint64(TS), mp.uint8(1)])]))),
    decoded: batch([['k', 'v', TS, 1]]),
  },
  {
    name: 'non-minimal-int-widths',
    note: 'Small values in wide formats must decode to the same numbers (any msgpack int width is valid).',
    bytes: envelope(stdFields(mp.fixarray([
      recordBytes([s('a'), mp.uint8(5), mp.int64(TS), mp.uint16(1)]),
      recordBytes([s('b'), mp.uint16(5), mp.uint32(TS / 1000), mp.uint32(2)]),
      recordBytes([s('c'), mp.uint32(5), mp.uint64(TS), mp.uint64(3)]),
      recordBytes([s('d'), mp.uint64(5), mp.uint64(TS), mp.int8(4)]),
      recordBytes([s('e'), mp.int8(-5), mp.uint64(TS), mp.int16(5)]),
      recordBytes([s('f'), mp.int16(-5), mp.uint64(TS), mp.int32(6)]),
      recordBytes([s('g'), mp.int32(-5), mp.uint64(TS), mp.int64(7)]),
      recordBytes([s('h'), mp.int64(-5), mp.uint64(TS), mp.posFixint(8)]),
      recordBytes([s('i'), mp.int8(5), mp.uint64(TS), mp.posFixint(9)]),
    ]), { bseq: mp.uint64(1) })),
    decoded: batch([
      ['a', 5, TS, 1], ['b', 5, TS / 1000, 2], ['c', 5, TS, 3], ['d', 5, TS, 4], ['e', -5, TS, 5],
      ['f', -5, TS, 6], ['g', -5, TS, 7], ['h', -5, TS, 8], ['i', 5, TS, 9],
    ]),
  },
  {
    name: 'int64-extremes-within-2^53',
    note: 'uint64/int64 values up to 2^53 - 1 in magnitude decode exactly.',
    bytes: envelope(stdFields(mp.fixarray([
      recordBytes([s('max'), mp.uint64(9007199254740991), mp.uint64(TS), mp.posFixint(1)]),
      recordBytes([s('min'), mp.int64(-9007199254740991), mp.uint64(TS), mp.posFixint(2)]),
      recordBytes([s('big'), mp.int64(-1099511627776), mp.uint64(TS), mp.posFixint(3)]),
    ]))),
    decoded: batch([['max', 9007199254740991, TS, 1], ['min', -9007199254740991, TS, 2], ['big', -1099511627776, TS, 3]]),
  },
  {
    name: 'float-encoded-integers',
    note: 'ts, seq and bseq written as float64 holding whole numbers (the TS SDK does this above 2^32).',
    bytes: envelope(stdFields(mp.fixarray([recordBytes([s('k'), mp.nil(), mp.float64(TS), mp.float64(1)])]),
      { bseq: mp.float64(2) })),
    decoded: batch([['k', null, TS, 1]], { bseq: 2 }),
  },
  {
    name: 'float32',
    note: 'float32 values decode to the exact double value of the float32 (no decimal rounding).',
    bytes: envelope(stdFields(mp.fixarray([
      recordBytes([s('a'), mp.float32(1.5), mp.uint64(TS), mp.posFixint(1)]),
      recordBytes([s('b'), mp.float32(0.1), mp.uint64(TS), mp.posFixint(2)]),
      recordBytes([s('c'), mp.float32(-2.5), mp.uint64(TS), mp.posFixint(3)]),
    ]))),
    decoded: batch([['a', 1.5, TS, 1], ['b', Math.fround(0.1), TS, 2], ['c', -2.5, TS, 3]]),
  },
  {
    name: 'wide-string-headers',
    note: 'Short strings in str8, str16 and str32 headers, including the key, src and stream.',
    bytes: envelope([
      ['v', mp.posFixint(1)], ['src', mp.str16('p1')], ['stream', mp.str32('events')], ['bseq', mp.posFixint(1)],
      ['recs', mp.fixarray([recordBytes([mp.str8('k'), mp.str8('abc'), mp.uint64(TS), mp.posFixint(1)]),
        recordBytes([mp.str32('k'), mp.str16('\u00e9t\u00e9'), mp.uint64(TS), mp.posFixint(2), mp.str8('t')])])],
    ]),
    decoded: batch([['k', 'abc', TS, 1], ['k', '\u00e9t\u00e9', TS, 2, 't']]),
  },
  {
    name: 'wide-bin-headers',
    note: 'Short byte strings in bin16 and bin32 headers.',
    bytes: envelope(stdFields(mp.fixarray([
      recordBytes([s('a'), mp.bin16([1, 2, 3]), mp.uint64(TS), mp.posFixint(1)]),
      recordBytes([s('b'), mp.bin32([255]), mp.uint64(TS), mp.posFixint(2)]),
    ]))),
    decoded: batch([['a', bin(1, 2, 3), TS, 1], ['b', bin(255), TS, 2]]),
  },
  {
    name: 'wide-array-and-map-headers',
    note: 'recs as array32, a record as array16, values in array32 / map32 / fixmap.',
    bytes: envelope(stdFields(mp.array32([
      recordBytes([s('a'), mp.array32([mp.posFixint(1), mp.posFixint(2)]), mp.uint64(TS), mp.posFixint(1)], mp.array16),
      recordBytes([s('b'), mp.map32([[s('x'), mp.posFixint(1)]]), mp.uint64(TS), mp.posFixint(2)]),
      recordBytes([s('c'), mp.fixmap([[s('y'), mp.fixmap([[s('z'), mp.true()]])]]), mp.uint64(TS), mp.posFixint(3)], mp.array32),
    ])), mp.map32),
    decoded: batch([['a', [1, 2], TS, 1], ['b', { x: 1 }, TS, 2], ['c', { y: { z: true } }, TS, 3]]),
  },
  {
    name: 'field-order-and-unknown-field',
    note: 'Envelope fields in another order plus an unknown field "x-note", which consumers must ignore.',
    bytes: envelope([
      ['recs', mp.fixarray([recordBytes([s('k'), mp.posFixint(7), mp.uint64(TS), mp.posFixint(1)])])],
      ['x-note', s('ignored')], ['bseq', mp.posFixint(9)], ['stream', s('events')], ['src', s('py-0')], ['v', mp.posFixint(1)],
    ]),
    decoded: batch([['k', 7, TS, 1]], { src: 'py-0', bseq: 9 }),
  },
];

const batchesJson = {
  description:
    'Valid protocol v1 batches. `hex` is the msgpack bytes; `decoded` is the batch (protocol fields only) in JSON form, ' +
    'byte strings as {"$bin": "<base64>"}. When `canonical` is true the TypeScript SDK encoder produces exactly `hex` ' +
    'from `decoded`; every conforming decoder must turn `hex` into `decoded`.',
  vectors: [
    ...canonical.map(([name, note, value]) => ({ name, note, canonical: true, hex: hex(encodeLikeTs(value)), decoded: toJson(value) })),
    ...decodeOnly.map(({ name, note, bytes, decoded }) => ({ name, note, canonical: false, hex: hex(bytes), decoded: toJson(decoded) })),
  ],
};

// ---- malformed.json ------------------------------------------------------------

const goodRecord = () => recordBytes([s('k'), s('v'), mp.uint64(TS), mp.posFixint(1)]);
const goodBatch = () => envelope(stdFields(mp.fixarray([goodRecord()])));
const withField = (over) => envelope(stdFields(mp.fixarray([goodRecord()]), over));
const withoutField = (name) => envelope(stdFields(mp.fixarray([goodRecord()])).filter(([k]) => k !== name));
const withRecord = (...items) => envelope(stdFields(mp.fixarray([recordBytes(items)])));
const ts = () => mp.uint64(TS);
const one = () => mp.posFixint(1);

const MSGPACK = 'not msgpack';
const MAP = 'batch must be a msgpack map';
const VERSION = 'unsupported protocol version';
const SRC = 'batch.src must be a non-empty string';
const SRC_ID = 'batch.src must be a subject-safe id';
const STREAM = 'batch.stream must be a string';
const BSEQ = 'batch.bseq must be an unsigned integer';
const RECS = 'batch.recs must be an array';
const SHAPE0 = 'recs[0] must be an array of 4 or 5 items';

const malformed = [
  ['empty', 'Zero bytes.', [], MSGPACK],
  ['truncated-header', 'The first 10 bytes of a valid batch.', goodBatch().slice(0, 10), MSGPACK],
  ['truncated-last-byte', 'A valid batch without its last byte.', goodBatch().slice(0, -1), MSGPACK],
  ['trailing-bytes', 'A valid batch followed by one more msgpack value (nil).', [...goodBatch(), 0xc0], MSGPACK],
  ['json-text', 'The JSON text {"v":1} sent instead of msgpack.', [...utf8.encode('{"v":1}')], MSGPACK],
  ['extension-type-in-value', 'A record value of application extension type 5 (fixext1); extension types are not part of the protocol.',
    withRecord(s('k'), mp.fixext1(5, 0), ts(), one()), MSGPACK],
  ['timestamp32-extension-in-value', 'A record value of the msgpack timestamp extension (type -1, timestamp 32, fixext4): no extension type is part of the protocol, this one included.',
    withRecord(s('k'), [0xd6, 0xff, ...uintBE(TS / 1000, 4)], ts(), one()), MSGPACK],
  ['timestamp64-extension-in-value', 'A record value of the timestamp extension in its 64-bit form (fixext8, type -1).',
    withRecord(s('k'), [0xd7, 0xff, ...uintBE(0, 4), ...uintBE(TS / 1000, 4)], ts(), one()), MSGPACK],
  ['timestamp96-extension-in-value', 'A record value of the timestamp extension in its 96-bit form (ext8, 12 bytes, type -1).',
    withRecord(s('k'), [0xc7, 12, 0xff, ...uintBE(0, 4), ...uintBE(TS / 1000, 8)], ts(), one()), MSGPACK],
  ['timestamp-extension-as-ts', 'The record ts written as a timestamp extension instead of a number.',
    withRecord(s('k'), s('v'), [0xd6, 0xff, ...uintBE(TS / 1000, 4)], one()), MSGPACK],
  ['extension-type-0-in-value', 'A record value of extension type 0 (fixext1), which some JS codecs use for undefined.',
    withRecord(s('k'), mp.fixext1(0, 0), ts(), one()), MSGPACK],
  ['extension-type-0x74-in-value', 'A record value of extension type 0x74 (fixext1), which msgpackr uses for typed arrays.',
    withRecord(s('k'), mp.fixext1(0x74, 0), ts(), one()), MSGPACK],
  ['array-instead-of-map', 'Top level is an array.', mp.fixarray([one(), mp.posFixint(2)]), MAP],
  ['nil-instead-of-map', 'Top level is nil.', mp.nil(), MAP],
  ['string-instead-of-map', 'Top level is a string.', s('batch'), MAP],
  ['int-instead-of-map', 'Top level is an int.', one(), MAP],
  ['v-2', 'Protocol version 2.', withField({ v: mp.posFixint(2) }), VERSION],
  ['v-missing', 'No v field.', withoutField('v'), VERSION],
  ['v-string', 'v is the string "1".', withField({ v: s('1') }), VERSION],
  ['v-true', 'v is true (a trap for languages where true == 1).', withField({ v: mp.true() }), VERSION],
  ['src-missing', 'No src field.', withoutField('src'), SRC],
  ['src-empty', 'src is the empty string.', withField({ src: s('') }), SRC],
  ['src-int', 'src is an int.', withField({ src: mp.posFixint(7) }), SRC],
  ['src-space', 'src contains a space (credits go to topo.fc.<src>: not one subject token).', withField({ src: mp.str8('p 1') }), SRC_ID],
  ['src-tab', 'src contains a tab.', withField({ src: mp.str8('p\t1') }), SRC_ID],
  ['src-cr', 'src contains a carriage return.', withField({ src: mp.str8('p\r1') }), SRC_ID],
  ['src-dot', 'src contains a dot (two subject tokens).', withField({ src: mp.str8('p.1') }), SRC_ID],
  ['src-wildcard', 'src is the wildcard ">".', withField({ src: mp.str8('>') }), SRC_ID],
  ['src-129-chars', 'src is 129 characters (at most 128).', withField({ src: mp.str8('p'.repeat(129)) }), SRC_ID],
  ['src-5000-chars', 'src is 5000 characters.', withField({ src: mp.str16('p'.repeat(5000)) }), SRC_ID],
  ['stream-missing', 'No stream field.', withoutField('stream'), STREAM],
  ['stream-nil', 'stream is nil.', withField({ stream: mp.nil() }), STREAM],
  ['bseq-missing', 'No bseq field.', withoutField('bseq'), BSEQ],
  ['bseq-negative', 'bseq is -1.', withField({ bseq: mp.negFixint(-1) }), BSEQ],
  ['bseq-fraction', 'bseq is 1.5.', withField({ bseq: mp.float64(1.5) }), BSEQ],
  ['bseq-nan', 'bseq is NaN.', withField({ bseq: mp.float64(NaN) }), BSEQ],
  ['bseq-string', 'bseq is the string "1".', withField({ bseq: s('1') }), BSEQ],
  ['bseq-true', 'bseq is true.', withField({ bseq: mp.true() }), BSEQ],
  ['recs-missing', 'No recs field.', withoutField('recs'), RECS],
  ['recs-nil', 'recs is nil.', withField({ recs: mp.nil() }), RECS],
  ['recs-map', 'recs is a map.', withField({ recs: mp.fixmap([]) }), RECS],
  ['record-too-short', 'A record of 3 items.', withRecord(s('k'), s('v'), ts()), SHAPE0],
  ['record-empty', 'A record of 0 items.', withRecord(), SHAPE0],
  ['record-too-long', 'A record of 6 items.', withRecord(s('k'), s('v'), ts(), one(), mp.nil(), mp.nil()), SHAPE0],
  ['record-is-map', 'A record that is a map.', withField({ recs: mp.fixarray([mp.fixmap([[s('key'), s('k')]])]) }), SHAPE0],
  ['record-is-string', 'A record that is a string.', withField({ recs: mp.fixarray([s('k')]) }), SHAPE0],
  ['second-record-bad', 'recs[0] is fine, recs[1] has 2 items.',
    withField({ recs: mp.fixarray([goodRecord(), mp.fixarray([s('k'), s('v')])]) }), 'recs[1] must be an array of 4 or 5 items'],
  ['key-int', 'Record key is an int.', withRecord(mp.posFixint(1), s('v'), ts(), one()), 'recs[0].key must be a string'],
  ['key-nil', 'Record key is nil.', withRecord(mp.nil(), s('v'), ts(), one()), 'recs[0].key must be a string'],
  ['key-bin', 'Record key is a byte string, not a string.', withRecord(mp.bin8([0x6b]), s('v'), ts(), one()), 'recs[0].key must be a string'],
  ['ts-string', 'Record ts is a string.', withRecord(s('k'), s('v'), s('1700000000000'), one()), 'recs[0].ts must be a number'],
  ['ts-nil', 'Record ts is nil.', withRecord(s('k'), s('v'), mp.nil(), one()), 'recs[0].ts must be a number'],
  ['ts-true', 'Record ts is true.', withRecord(s('k'), s('v'), mp.true(), one()), 'recs[0].ts must be a number'],
  ['ts-nan', 'Record ts is NaN.', withRecord(s('k'), s('v'), mp.float64(NaN), one()), 'recs[0].ts must be a number'],
  ['seq-infinity', 'Record seq is +Infinity.', withRecord(s('k'), s('v'), ts(), mp.float64(Infinity)), 'recs[0].seq must be a number'],
  ['seq-string', 'Record seq is a string.', withRecord(s('k'), s('v'), ts(), s('1')), 'recs[0].seq must be a number'],
  ['seq-nil', 'Record seq is nil.', withRecord(s('k'), s('v'), ts(), mp.nil()), 'recs[0].seq must be a number'],
  ['trace-int', 'Record trace is an int.', withRecord(s('k'), s('v'), ts(), one(), mp.posFixint(5)), 'recs[0].trace must be a string or nil'],
  ['trace-bin', 'Record trace is a byte string.', withRecord(s('k'), s('v'), ts(), one(), mp.bin8([0x74])), 'recs[0].trace must be a string or nil'],
];

const malformedJson = {
  description:
    'Bytes a consumer must reject as a malformed batch (dead-letter the raw bytes, count it, keep running). ' +
    '`reason` is a substring of the TypeScript SDK error message (MalformedBatchError); other implementations ' +
    'only need to reject, and are encouraged to use the same wording.',
  vectors: malformed.map(([name, note, bytes, reason]) => ({ name, note, hex: hex(bytes), reason })),
};

// ---- metadata.json -------------------------------------------------------------

const metadataJson = {
  description:
    'Computation metadata validation. `valid[].normalized` is what validation returns (istreams always objects, ' +
    'grouping defaulted to "shuffle", fields other than name/istreams/ostreams dropped). `invalid[].paths` lists ' +
    'field paths the error must name ("istreams[1]" style, "(root)" for the whole value); a reported path may be ' +
    'more precise (e.g. "istreams[1].grouping" satisfies "istreams[1]").',
  valid: [
    ['bare-istream', { name: 'counter', istreams: ['events'], ostreams: ['counts'] },
      { name: 'counter', istreams: [{ stream: 'events', grouping: 'shuffle' }], ostreams: ['counts'] }],
    ['every-grouping', {
      name: 'joiner', istreams: [{ stream: 'a', grouping: 'shuffle' }, { stream: 'b', grouping: 'key' }, { stream: 'c', grouping: 'broadcast' }],
      ostreams: ['out'],
    }, {
      name: 'joiner', istreams: [{ stream: 'a', grouping: 'shuffle' }, { stream: 'b', grouping: 'key' }, { stream: 'c', grouping: 'broadcast' }],
      ostreams: ['out'],
    }],
    ['object-without-grouping', { name: 'x', istreams: [{ stream: 's' }], ostreams: [] },
      { name: 'x', istreams: [{ stream: 's', grouping: 'shuffle' }], ostreams: [] }],
    ['source', { name: 'ticker', istreams: [], ostreams: ['ticks'] }, { name: 'ticker', istreams: [], ostreams: ['ticks'] }],
    ['sink', { name: 'printer', istreams: ['ticks'], ostreams: [] },
      { name: 'printer', istreams: [{ stream: 'ticks', grouping: 'shuffle' }], ostreams: [] }],
    ['names-with-dash-underscore-digits', { name: 'word_count-v2', istreams: ['raw-lines_1'], ostreams: ['Words2'] },
      { name: 'word_count-v2', istreams: [{ stream: 'raw-lines_1', grouping: 'shuffle' }], ostreams: ['Words2'] }],
    ['name-64-chars', { name: 'n'.repeat(64), istreams: [], ostreams: [] }, { name: 'n'.repeat(64), istreams: [], ostreams: [] }],
    ['same-stream-in-and-out', { name: 'loop', istreams: ['s'], ostreams: ['s'] },
      { name: 'loop', istreams: [{ stream: 's', grouping: 'shuffle' }], ostreams: ['s'] }],
    ['extra-fields-ignored', { name: 'x', istreams: ['a'], ostreams: ['b'], version: 3, description: 'anything' },
      { name: 'x', istreams: [{ stream: 'a', grouping: 'shuffle' }], ostreams: ['b'] }],
  ].map(([name, input, normalized]) => ({ name, input, normalized })),
  invalid: [
    ['null', null, ['(root)']],
    ['string', 'counter', ['(root)']],
    ['empty-object', {}, ['name', 'istreams', 'ostreams']],
    ['name-starts-with-digit', { name: '1counter', istreams: [], ostreams: [] }, ['name']],
    ['name-with-dot', { name: 'a.b', istreams: [], ostreams: [] }, ['name']],
    ['name-with-space', { name: 'a b', istreams: [], ostreams: [] }, ['name']],
    ['name-wildcard', { name: 'a*', istreams: [], ostreams: [] }, ['name']],
    ['name-empty', { name: '', istreams: [], ostreams: [] }, ['name']],
    ['name-65-chars', { name: 'n'.repeat(65), istreams: [], ostreams: [] }, ['name']],
    ['name-not-string', { name: 7, istreams: [], ostreams: [] }, ['name']],
    ['istreams-not-array', { name: 'x', istreams: 'events', ostreams: [] }, ['istreams']],
    ['ostreams-missing', { name: 'x', istreams: [] }, ['ostreams']],
    ['bad-grouping', { name: 'x', istreams: ['a', { stream: 'b', grouping: 'fanout' }], ostreams: [] }, ['istreams[1]']],
    ['bad-istream-name', { name: 'x', istreams: [{ stream: 'a.b' }], ostreams: [] }, ['istreams[0]']],
    ['bare-istream-bad-name', { name: 'x', istreams: ['ok', 'not ok'], ostreams: [] }, ['istreams[1]']],
    ['istream-unknown-field', { name: 'x', istreams: [{ stream: 'a', partitions: 4 }], ostreams: [] }, ['istreams[0]']],
    ['istream-missing-stream', { name: 'x', istreams: [{ grouping: 'key' }], ostreams: [] }, ['istreams[0]']],
    ['istream-number', { name: 'x', istreams: [5], ostreams: [] }, ['istreams[0]']],
    ['duplicate-istream', { name: 'x', istreams: ['a', { stream: 'a', grouping: 'key' }], ostreams: [] }, ['istreams[1]']],
    ['duplicate-ostream', { name: 'x', istreams: [], ostreams: ['o', 'p', 'o'] }, ['ostreams[2]']],
    ['ostream-not-string', { name: 'x', istreams: [], ostreams: ['o', 3] }, ['ostreams[1]']],
    ['several-errors', { name: 'bad name', istreams: ['a', 'a'], ostreams: ['x.y'] }, ['name', 'istreams[1]', 'ostreams[0]']],
  ].map(([name, input, paths]) => ({ name, input, paths })),
};

// ---- credit.json ---------------------------------------------------------------

const credit = (g, n) => ({ g, n });
const creditJson = {
  description:
    'Flow-control credits, msgpack map {g: consumer group id, n: records processed}, published on topo.fc.<producerId>. ' +
    'Canonical vectors are byte-exact TS SDK output; the others are how other msgpack libraries may write the same value. ' +
    '`groups` shows the consumer group id an instance credits as. `invalid` are credits a producer must ignore ' +
    '(n must be a positive safe integer, g a computation name or <computation>#<index>); NaN would turn flow control off, ' +
    'a negative n would stall the producer.',
  window: 65536,
  vectors: [
    ...[credit('counter', 1), credit('counter', 256), credit('audit#0', 8192), credit('audit#12', 70000), credit('big-group', 4294967295)]
      .map((c) => ({ name: `${c.g}-${c.n}`, canonical: true, hex: hex(encodeLikeTs(c)), decoded: c })),
    { name: 'fixmap-uint16', canonical: false, hex: hex(mp.fixmap([[s('g'), s('counter')], [s('n'), mp.uint16(256)]])), decoded: credit('counter', 256) },
    { name: 'fixmap-reversed-uint64', canonical: false, hex: hex(mp.fixmap([[s('n'), mp.uint64(3)], [s('g'), mp.str8('w#1')]])), decoded: credit('w#1', 3) },
  ],
  invalid: [
    ['n-nan', 'n is NaN.', mp.float64(NaN)],
    ['n-negative', 'n is -1e9.', mp.float64(-1e9)],
    ['n-minus-one', 'n is -1.', mp.negFixint(-1)],
    ['n-zero', 'n is 0 (what an empty batch is owed: ignored, harmless).', mp.posFixint(0)],
    ['n-fraction', 'n is 1.5.', mp.float64(1.5)],
    ['n-infinity', 'n is +Infinity.', mp.float64(Infinity)],
    ['n-2^53', 'n is 2^53, beyond the safe integers.', mp.float64(2 ** 53)],
    ['n-string', 'n is the string "5".', s('5')],
    ['n-missing', 'No n field.', undefined],
  ].map(([name, note, n]) => ({ name, note, hex: hex(mp.fixmap([[s('g'), s('counter')], ...(n ? [[s('n'), n]] : [])])) }))
    .concat([
      ['g-space', 'g contains a space.', mp.str8('a b')],
      ['g-missing', 'No g field.', undefined],
      ['g-bad-index', 'g is "counter#x".', mp.str8('counter#x')],
    ].map(([name, note, g]) => ({ name, note, hex: hex(mp.fixmap([...(g ? [[s('g'), g]] : []), [s('n'), mp.posFixint(1)]])) }))),
  groups: [
    { computation: 'counter', grouping: 'shuffle', index: 0, count: 3, group: 'counter' },
    { computation: 'counter', grouping: 'shuffle', index: 2, count: 3, group: 'counter' },
    { computation: 'sessions', grouping: 'key', index: 1, count: 4, group: 'sessions' },
    { computation: 'audit', grouping: 'broadcast', index: 0, count: 2, group: 'audit#0' },
    { computation: 'audit', grouping: 'broadcast', index: 1, count: 2, group: 'audit#1' },
  ],
};

// ---- operator.json ---------------------------------------------------------------
// Frames of the hosted-operator protocol (PROTOCOL.md "Hosted operators"): a 4-byte
// big-endian length N (1 <= N <= 256 MiB), then exactly one msgpack map with `op`.

const MAX_FRAME = 256 * 1024 * 1024;
const frame = (bytes) => [...uintBE(bytes.length, 4), ...bytes];

/**
 * Encodes a JS value as most msgpack libraries outside JS do (Go, Python):
 * every header minimal (fixmap for small maps), every integer in its smallest
 * int format up to 64 bits (so a timestamp is a uint64), other numbers float64.
 */
function encodeCompact(value) {
  if (typeof value === 'number' && Number.isSafeInteger(value)) {
    if (value >= 0) {
      if (value <= 0x7f) return mp.posFixint(value);
      if (value <= 0xff) return mp.uint8(value);
      if (value <= 0xffff) return mp.uint16(value);
      if (value <= 0xffffffff) return mp.uint32(value);
      return mp.uint64(value);
    }
    if (value >= -32) return mp.negFixint(value);
    if (value >= -0x80) return mp.int8(value);
    if (value >= -0x8000) return mp.int16(value);
    if (value >= -0x80000000) return mp.int32(value);
    return mp.int64(value);
  }
  if (Array.isArray(value)) {
    const items = value.map(encodeCompact);
    return items.length < 16 ? mp.fixarray(items) : items.length < 0x10000 ? mp.array16(items) : mp.array32(items);
  }
  if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    const entries = Object.entries(value).map(([k, v]) => [encodeCompact(k), encodeCompact(v)]);
    return entries.length < 16 ? mp.fixmap(entries) : mp.map16(entries);
  }
  return encodeLikeTs(value); // nil, bool, float, str, bin: the same in both styles
}

const canonicalBytes = (name) => {
  const found = canonical.find(([n]) => n === name);
  return found ? new Uint8Array(encodeLikeTs(found[2])) : fail(`no canonical batch ${name}`);
};
const malformedBytes = (name) => {
  const found = malformed.find(([n]) => n === name);
  return found ? new Uint8Array(found[2]) : fail(`no malformed vector ${name}`);
};

const OP_TS = TS + 60000; // a timer a minute after TS
const instance = { index: 1, count: 2, id: 'word-lengths-1-a1b2c3' };
const initState = [
  ['a', 3], ['foobar', 1], ['user-42', { total: 7, last: 'kiwi' }], ['\u65e5\u672c\u8a9e', [1, 2, 3]], ['', null],
];
const initTimers = [['a', OP_TS], ['user-42', OP_TS + 500]];
const snapshotPartitions = [partitionOfKey('a'), partitionOfKey('user-42')];
function partitionOfKey(key) {
  return fnv1a32(key) % PARTITIONS;
}
const inPartitions = ([key]) => snapshotPartitions.includes(partitionOfKey(key));

const completion = (id, over = {}) => ({
  op: 'completion', id, outputs: [], records: 0, batches: [], failures: [], nextTimerAt: null, stateKeys: 0, timers: 0, busyMs: 0, ...over,
});
const W2O = 'worker->operator';
const O2W = 'operator->worker';

/** [name, note, direction, value, style]: style 'ts' (map16, as the TS worker writes) or 'compact' (fixmap, uint64). */
const operatorFrames = [
  ['hello-bare-istream', 'The first frame an operator writes, unsolicited (no id). An istream as a bare str means shuffle.', O2W, {
    op: 'hello', protocol: 1, metadata: { name: 'word-lengths', istreams: ['words'], ostreams: ['word-lengths'] }, sdk: 'topo-go-example 0.1.0',
  }, 'compact'],
  ['hello-object-istreams', 'istreams as {stream, grouping} objects; no sdk field (it is optional).', O2W, {
    op: 'hello', protocol: 1,
    metadata: { name: 'joiner', istreams: [{ stream: 'words', grouping: 'key' }, { stream: 'control', grouping: 'broadcast' }, { stream: 'extra', grouping: 'shuffle' }], ostreams: ['joined', 'audit'] },
  }, 'ts'],
  ['hello-source', 'A source: no istreams.', O2W, {
    op: 'hello', protocol: 1, metadata: { name: 'ticker', istreams: [], ostreams: ['ticks'] }, sdk: 'topo-python 0.1.0',
  }, 'compact'],
  ['init-empty', 'A fresh instance: empty state and timers, run init.', W2O, {
    op: 'init', id: 1, instance: { index: 0, count: 1, id: 'word-lengths-0-d4e5f6' }, state: [], timers: [], runInit: true,
  }, 'ts'],
  ['init-with-state-and-timers', 'A swap\'s snapshot (any msgpack values, empty and non-ASCII keys), two timers (ms since epoch, float64 from TS), runInit false (a move).', W2O, {
    op: 'init', id: 1, instance, state: initState, timers: initTimers, runInit: false,
  }, 'ts'],
  ['init-with-state-run-init', 'State from a swap of a new version: runInit true.', W2O, {
    op: 'init', id: 1, instance, state: initState.slice(0, 2), timers: [], runInit: true,
  }, 'ts'],
  ['activate-timers-only', 'No batches, fire due timers: both timers of init-with-state-and-timers are due at now.', W2O, {
    op: 'activate', id: 2, now: OP_TS + 500, timers: true, batches: [],
  }, 'ts'],
  ['activate-two-batches', 'Two batch envelopes as they arrived on the wire (batches.json one-record-no-trace and mixed-batch), each with the istream it arrived on.', W2O, {
    op: 'activate', id: 3, now: TS + 10, timers: false,
    batches: [{ stream: 'events', data: canonicalBytes('one-record-no-trace') }, { stream: 'readings', data: canonicalBytes('mixed-batch') }],
  }, 'ts'],
  ['activate-undecodable-batch', 'The second batch is malformed.json v-2 (unsupported protocol version): the operator reports nil for it and a decode failure, and processes the first.', W2O, {
    op: 'activate', id: 4, now: TS + 20, timers: false,
    batches: [{ stream: 'events', data: canonicalBytes('trace-string') }, { stream: 'events', data: malformedBytes('v-2') }],
  }, 'ts'],
  ['activate-stop-on-failure', 'On probation: stop at the first callback that throws and reply with stopped: true.', W2O, {
    op: 'activate', id: 5, now: TS + 30, timers: true, batches: [{ stream: 'events', data: canonicalBytes('unicode-keys') }], stopOnFailure: true,
  }, 'ts'],
  ['snapshot-all', 'Snapshot request without partitions: everything.', W2O, { op: 'snapshot', id: 6 }, 'ts'],
  ['snapshot-partitions', `Snapshot request for partitions ${snapshotPartitions.join(' and ')} (those of keys "a" and "user-42").`, W2O, {
    op: 'snapshot', id: 7, partitions: snapshotPartitions,
  }, 'ts'],
  ['snapshot-reply-all', 'Reply to snapshot-all after init-with-state-and-timers.', O2W, {
    op: 'snapshot', id: 6, state: initState, timers: initTimers,
  }, 'compact'],
  ['snapshot-reply-partitions', 'Reply to snapshot-partitions after init-with-state-and-timers: only keys whose partitionOf is listed.', O2W, {
    op: 'snapshot', id: 7, state: initState.filter(inPartitions), timers: initTimers.filter(inPartitions),
  }, 'compact'],
  ['snapshot-reply-empty', 'Reply of an operator without state.', O2W, { op: 'snapshot', id: 2, state: [], timers: [] }, 'ts'],
  ['destroy', 'Call destroy, reply, exit 0.', W2O, { op: 'destroy', id: 8 }, 'ts'],
  ['completion-empty', 'Reply to init-empty: nothing produced, no timer (nextTimerAt nil).', O2W, completion(1), 'compact'],
  ['completion-init-with-outputs', 'An init that produced a record and set a timer; nextTimerAt is a number.', O2W, completion(1, {
    outputs: [['word-lengths', 'boot', { word: 'boot', length: 4, total: 1 }]], nextTimerAt: OP_TS, stateKeys: 1, timers: 1, busyMs: 0.125,
  }), 'compact'],
  ['completion-outputs', 'Reply to activate-two-batches: outputs in call order, one [src, records] per batch, logs with and without fields.', O2W, completion(3, {
    outputs: [
      ['word-lengths', 'k', { word: 'hello', length: 5, total: 1 }],
      ['word-lengths', 'sensor-2', { word: 'offline', length: 7, total: 1 }],
    ],
    records: 6, batches: [['p1', 1], ['thermo-0', 5]], nextTimerAt: OP_TS, stateKeys: 3, timers: 1, busyMs: 1.5,
    logs: [['info', 'processed a batch', { records: 6, stream: 'readings' }], ['debug', 'no fields'], ['warn', 'non-string value skipped', { key: 'sensor-1' }]],
  }), 'compact'],
  ['completion-undecodable-batch', 'Reply to activate-undecodable-batch: nil for the batch that did not decode, a decode failure locating it.', O2W, completion(4, {
    records: 1, batches: [['p1', 1], null],
    failures: [{ where: 'decode', error: 'unsupported protocol version 2 (expected 1)', batch: 1 }], stateKeys: 1,
  }), 'ts'],
  ['completion-process-record-failure', 'processRecord threw on the third record of the first batch; the others were processed.', O2W, completion(3, {
    records: 6, batches: [['p1', 1], ['thermo-0', 5]],
    failures: [{ where: 'processRecord', error: 'TypeError: value.toUpperCase is not a function', batch: 1, index: 1 }], stateKeys: 2, busyMs: 0.75,
  }), 'compact'],
  ['completion-process-timer-failure', 'processTimer threw for the timer of key "a"; the timer of "user-42" fired fine.', O2W, completion(2, {
    failures: [{ where: 'processTimer', error: 'boom', timer: 'a' }], stateKeys: 5, timers: 0,
  }), 'compact'],
  ['completion-init-failure', 'init threw: the worker fails the deploy or swap (INIT_FAILED).', O2W, completion(1, {
    failures: [{ where: 'init', error: 'config file missing' }],
  }), 'compact'],
  ['completion-destroy-failure', 'Reply to destroy: destroy threw (logged; the operator still exits 0).', O2W, completion(8, {
    failures: [{ where: 'destroy', error: 'flush failed' }], stateKeys: 5,
  }), 'compact'],
  ['completion-stopped', 'Reply to activate-stop-on-failure: stopped at the first failure (record 1 of batch 0), stopped: true.', O2W, completion(5, {
    outputs: [['word-lengths', '', { bytes: bin(0, 255), note: null }]], records: 2, batches: [['p1', 2]],
    failures: [{ where: 'processRecord', error: 'bad value', batch: 0, index: 1 }], stateKeys: 1, busyMs: 0.5, stopped: true,
  }), 'compact'],
  ['error-reply', 'A request the operator cannot handle at all: the worker treats it as a crash.', O2W, {
    op: 'error', id: 6, error: 'state of key "x" cannot be encoded: unsupported type func()',
  }, 'compact'],
];

const frameOf = (fields) => frame(mp.fixmap(fields));
const OP = (op) => [s('op'), s(op)];
const ID = (n) => [s('id'), mp.posFixint(n)];
const operatorInvalid = [
  ['length-zero', 'A length prefix of 0 (N must be at least 1).', [0, 0, 0, 0], 'frame length'],
  ['length-over-256-mib', 'A length prefix of 256 MiB + 1, followed by nothing: refuse before reading the body.', uintBE(MAX_FRAME + 1, 4), 'frame length'],
  ['length-larger-than-bytes', 'The prefix says 32 bytes but the stream ends after the 10-byte map (end-of-file mid-frame).',
    [...uintBE(32, 4), ...mp.fixmap([OP('destroy'), ID(8)])], 'truncated'],
  ['prefix-truncated', 'The stream ends after 2 bytes of the length prefix.', [0, 0], 'truncated'],
  ['map-truncated', 'The prefix covers the bytes, but the map inside declares 2 entries and holds 1.',
    frame([0x82, ...OP('destroy')]), 'not msgpack'],
  ['json-text', 'A JSON object instead of msgpack.', frame([...utf8.encode('{"op":"destroy","id":8}')]), 'not msgpack'],
  ['not-a-map-array', 'The frame holds an array.', frame(mp.fixarray([s('destroy'), mp.posFixint(8)])), 'not a map'],
  ['not-a-map-str', 'The frame holds a str.', frame(s('destroy')), 'not a map'],
  ['not-a-map-nil', 'The frame holds nil.', frame(mp.nil()), 'not a map'],
  ['op-missing', 'A map without op.', frameOf([ID(8)]), 'op'],
  ['op-int', 'op is an int.', frameOf([[s('op'), mp.posFixint(1)], ID(8)]), 'op'],
  ['op-nil', 'op is nil.', frameOf([[s('op'), mp.nil()], ID(8)]), 'op'],
  ['op-bin', 'op is a bin holding "destroy", not a str.', frameOf([[s('op'), mp.bin8(bytesOf('destroy'))], ID(8)]), 'op'],
  ['extension-type', 'A value of application extension type 5 (fixext1).', frameOf([OP('completion'), ID(1), [s('busyMs'), mp.fixext1(5, 0)]]), 'not msgpack'],
  ['timestamp-extension', 'A value of the msgpack timestamp extension (type -1, timestamp 32): extensions are not part of the protocol, this one included.',
    frameOf([OP('activate'), ID(2), [s('now'), [0xd6, 0xff, ...uintBE(TS / 1000, 4)]], [s('timers'), mp.true()], [s('batches'), mp.fixarray([])]]), 'not msgpack'],
  ['trailing-bytes-in-frame', 'The prefix covers a complete map plus one more byte (nil): a frame is exactly one msgpack value.',
    frame([...mp.fixmap([OP('destroy'), ID(8)]), 0xc0]), 'not msgpack'],
  ['two-values-in-frame', 'The prefix covers two complete maps.',
    frame([...mp.fixmap([OP('destroy'), ID(8)]), ...mp.fixmap([OP('destroy'), ID(9)])]), 'not msgpack'],
];

const operatorJson = {
  description:
    'Frames of the hosted-operator protocol v1 (PROTOCOL.md "Hosted operators"). `hex` is the frame as it travels on the pipe: ' +
    'the 4-byte big-endian length N, then N bytes holding exactly one msgpack map; `decoded` is that map in JSON form ' +
    '(bin as {"$bin": "<base64>"}). `direction` says who writes it; `style` "ts" is written as the TS worker writes msgpack ' +
    '(map16, integers above 2^32 as float64), "compact" as most other libraries do (fixmap, uint64); both MUST be accepted. ' +
    '`activate` batches carry batch envelopes from batches.json (and one from malformed.json) byte for byte. ' +
    'A request and the reply vectors to it share an id. ' +
    '`invalid` are byte streams a reader MUST refuse (a protocol error: the worker kills the operator, an operator exits); ' +
    '`reason` is a category, not a required message.',
  maxFrame: MAX_FRAME,
  vectors: operatorFrames.map(([name, note, direction, value, style]) => {
    const body = style === 'ts' ? encodeLikeTs(value) : encodeCompact(value);
    return { name, note, op: value.op, direction, style, hex: hex(frame(body)), decoded: toJson(value) };
  }),
  invalid: operatorInvalid.map(([name, note, bytes, reason]) => ({ name, note, hex: hex(bytes), reason })),
};

// ---- write / check ---------------------------------------------------------------

/** JSON with arrays of scalars kept on one line, so long lists stay readable. */
function stringify(value, indent = '') {
  const inner = indent + '  ';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    if (value.every((v) => v === null || typeof v !== 'object')) return `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
    return `[\n${value.map((v) => inner + stringify(v, inner)).join(',\n')}\n${indent}]`;
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    if (entries.length === 0) return '{}';
    return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${stringify(v, inner)}`).join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value);
}

const files = {
  'partition.json': partitionJson,
  'batches.json': batchesJson,
  'malformed.json': malformedJson,
  'metadata.json': metadataJson,
  'credit.json': creditJson,
  'operator.json': operatorJson,
};

const check = process.argv.includes('--check');
let stale = 0;
for (const [file, content] of Object.entries(files)) {
  const text = stringify(content) + '\n';
  const path = join(here, file);
  if (check) {
    let current = '';
    try {
      current = readFileSync(path, 'utf8');
    } catch {
      // missing counts as stale
    }
    if (current !== text) {
      stale++;
      console.error(`${file} differs from what generate.mjs produces; run: node protocol/vectors/generate.mjs`);
    }
  } else {
    writeFileSync(path, text);
    console.log(`wrote ${file}`);
  }
}
if (stale) process.exit(1);
