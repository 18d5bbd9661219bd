/**
 * Checks the TypeScript protocol implementation against the committed
 * conformance vectors (protocol/vectors), which are generated without the
 * SDK or msgpackr, and checks that PROTOCOL.md names every error code and
 * subject.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  buckets, decodeBatch, encodeBatch, ERROR_CODES, fnv1a32, InvalidMetadataError, jsStreams, MalformedBatchError, NAME_PATTERN,
  packr, PARTITIONS, partitionOf, partitionsOwnedBy, PROTOCOL_VERSION, subjects, validateMetadata, type Batch,
} from '../protocol/index.js';
import { DEFAULT_WINDOW } from '../runtime/worker/producer.js';
import { groupIdOf } from '../runtime/worker/topology.js';

const vectorsDir = new URL('../protocol/vectors/', import.meta.url);
function loadVectors<T>(file: string): T {
  return JSON.parse(readFileSync(new URL(file, vectorsDir), 'utf8')) as T;
}
const protocolDoc = readFileSync(new URL('../PROTOCOL.md', import.meta.url), 'utf8');

interface PartitionVectors {
  partitions: number;
  offsetBasis: string;
  prime: string;
  keys: { key: string; utf8: string; fnv1a32: number; fnv1a32Hex: string; partition: number }[];
  ownership: { index: number; count: number; partitions: number[] }[];
}
interface ValueVector {
  name: string;
  canonical: boolean;
  hex: string;
  decoded: unknown;
}
interface MalformedVector {
  name: string;
  hex: string;
  reason: string;
}
interface MetadataVectors {
  valid: { name: string; input: unknown; normalized: unknown }[];
  invalid: { name: string; input: unknown; paths: string[] }[];
}
interface CreditVectors {
  window: number;
  vectors: ValueVector[];
  groups: { computation: string; grouping: string; index: number; count: number; group: string }[];
}

const partition = loadVectors<PartitionVectors>('partition.json');
const batches = loadVectors<{ vectors: ValueVector[] }>('batches.json').vectors;
const malformed = loadVectors<{ vectors: MalformedVector[] }>('malformed.json').vectors;
const metadata = loadVectors<MetadataVectors>('metadata.json');
const credit = loadVectors<CreditVectors>('credit.json');

const fromHex = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

/** Decoded value -> the vectors' JSON form (byte strings as {"$bin": base64}, plain objects and arrays). */
function toJsonForm(value: unknown): unknown {
  if (value instanceof Uint8Array) return { $bin: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(toJsonForm);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonForm(v)]));
  }
  return value;
}
/** The vectors' JSON form -> a JS value to encode. */
function fromJsonForm(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromJsonForm);
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    if (entries.length === 1 && entries[0]![0] === '$bin') return new Uint8Array(Buffer.from(entries[0]![1] as string, 'base64'));
    return Object.fromEntries(entries.map(([k, v]) => [k, fromJsonForm(v)]));
  }
  return value;
}
const protocolFields = (b: Batch) => ({ v: b.v, src: b.src, stream: b.stream, bseq: b.bseq, recs: b.recs });

describe('conformance vectors', () => {
  it('are what generate.mjs produces (deterministic and committed)', () => {
    const script = fileURLToPath(new URL('generate.mjs', vectorsDir));
    expect(() => execFileSync(process.execPath, [script, '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  it('cover the cases PROTOCOL.md promises', () => {
    const keys = partition.keys.map((k) => k.key);
    expect(keys.length).toBeGreaterThanOrEqual(40);
    expect(keys).toContain('');
    expect(keys.some((k) => /\p{Extended_Pictographic}/u.test(k))).toBe(true);
    expect(keys.some((k) => k.length >= 1000)).toBe(true);
    expect(batches.some((b) => b.canonical)).toBe(true);
    expect(batches.some((b) => !b.canonical)).toBe(true);
    expect(malformed.length).toBeGreaterThanOrEqual(20);
    expect(metadata.valid.length).toBeGreaterThan(0);
    expect(metadata.invalid.length).toBeGreaterThan(0);
  });
});

describe('partitioning (partition.json)', () => {
  it('uses the same constants', () => {
    expect(partition.partitions).toBe(PARTITIONS);
    expect(Number(partition.offsetBasis)).toBe(0x811c9dc5);
    expect(Number(partition.prime)).toBe(0x01000193);
  });

  it.each(partition.keys.map((v) => [JSON.stringify(v.key).slice(0, 40), v] as const))('key %s', (_label, v) => {
    expect(Buffer.from(v.key, 'utf8').toString('hex')).toBe(v.utf8);
    expect(fnv1a32(v.key)).toBe(v.fnv1a32);
    expect(fnv1a32(v.key).toString(16).padStart(8, '0')).toBe(v.fnv1a32Hex);
    expect(partitionOf(v.key)).toBe(v.partition);
  });

  it.each(partition.ownership.map((o) => [`${o.index}/${o.count}`, o] as const))('instance %s owns its partitions', (_label, o) => {
    expect(partitionsOwnedBy(o.index, o.count)).toEqual(o.partitions);
  });
});

describe('batch envelope (batches.json)', () => {
  it.each(batches.map((v) => [v.name, v] as const))('decodes %s', (_name, v) => {
    const batch = decodeBatch(fromHex(v.hex));
    expect(toJsonForm(protocolFields(batch))).toStrictEqual(v.decoded);
  });

  it.each(batches.filter((v) => v.canonical).map((v) => [v.name, v] as const))('encodes %s byte for byte', (_name, v) => {
    expect(toHex(encodeBatch(fromJsonForm(v.decoded) as Batch))).toBe(v.hex);
  });

  it('round-trips every vector through the TS codec', () => {
    for (const v of batches) {
      const batch = decodeBatch(fromHex(v.hex));
      expect(toJsonForm(protocolFields(decodeBatch(encodeBatch(batch))))).toStrictEqual(v.decoded);
    }
  });
});

describe('malformed batches (malformed.json)', () => {
  it.each(malformed.map((v) => [v.name, v] as const))('rejects %s', (_name, v) => {
    let error: unknown;
    try {
      decodeBatch(fromHex(v.hex));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(MalformedBatchError);
    expect((error as MalformedBatchError).code).toBe('MALFORMED_BATCH');
    expect((error as Error).message).toContain(v.reason);
  });
});

describe('metadata (metadata.json)', () => {
  it.each(metadata.valid.map((v) => [v.name, v] as const))('accepts %s', (_name, v) => {
    expect(validateMetadata(v.input)).toStrictEqual(v.normalized);
  });

  it.each(metadata.invalid.map((v) => [v.name, v] as const))('rejects %s naming the field', (_name, v) => {
    let error: unknown;
    try {
      validateMetadata(v.input);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InvalidMetadataError);
    const reported = ((error as InvalidMetadataError).detail as { path: string }[]).map((i) => i.path);
    for (const want of v.paths) {
      // A more precise path satisfies the vector: "istreams[1].grouping" names "istreams[1]".
      const named = reported.some((p) => p === want || p.startsWith(`${want}.`) || p.startsWith(`${want}[`));
      expect(named, `expected a path at ${want}, got ${reported.join(', ')}`).toBe(true);
      expect((error as Error).message).toContain(`${want}`);
    }
  });
});

describe('credits (credit.json)', () => {
  it.each(credit.vectors.map((v) => [v.name, v] as const))('decodes %s', (_name, v) => {
    expect(packr.unpack(fromHex(v.hex))).toStrictEqual(v.decoded);
  });

  it.each(credit.vectors.filter((v) => v.canonical).map((v) => [v.name, v] as const))('encodes %s byte for byte', (_name, v) => {
    expect(toHex(packr.pack(v.decoded))).toBe(v.hex);
  });

  it('gives the group ids the worker credits as', () => {
    for (const g of credit.groups) expect(groupIdOf(g.computation, g.grouping, g.index)).toBe(g.group);
  });

  it('uses the window of the worker and of PROTOCOL.md', () => {
    expect(DEFAULT_WINDOW).toBe(credit.window);
    expect(protocolDoc).toContain(`WINDOW = ${credit.window}`);
  });
});

describe('operator frames (operator.json)', () => {
  const operator = loadVectors<{ maxFrame: number; vectors: (ValueVector & { op: string; direction: string })[]; invalid: { name: string; hex: string }[] }>('operator.json');
  it.each(operator.vectors.map((v) => [v.name, v] as const))('decodes %s: a 4-byte big-endian length, then one map', (_name, v) => {
    const bytes = fromHex(v.hex);
    const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0);
    expect(n).toBe(bytes.length - 4);
    const body = packr.unpack(bytes.subarray(4)) as { op: string };
    expect(toJsonForm(body)).toEqual(v.decoded);
    expect(body.op).toBe(v.op);
  });
  it('activate frames carry batch envelopes byte for byte', () => {
    const two = operator.vectors.find((v) => v.name === 'activate-two-batches')!;
    const body = packr.unpack(fromHex(two.hex).subarray(4)) as { batches: { stream: string; data: Uint8Array }[] };
    expect(body.batches.map((b) => toHex(b.data))).toEqual(['one-record-no-trace', 'mixed-batch'].map((n) => batches.find((b) => b.name === n)!.hex));
    expect(body.batches.map((b) => decodeBatch(b.data).stream)).toEqual(body.batches.map((b) => b.stream));
  });
  it('lists the invalid frames PROTOCOL.md promises', () => {
    expect(operator.maxFrame).toBe(256 * 1024 * 1024);
    expect(operator.invalid.map((v) => v.name)).toEqual(expect.arrayContaining([
      'length-zero', 'length-larger-than-bytes', 'not-a-map-array', 'op-missing', 'op-int', 'extension-type', 'timestamp-extension', 'trailing-bytes-in-frame',
    ]));
  });
});

describe('no extension types (msgpack rules)', () => {
  const at = 1700000000123;
  it('writes a Date as its ms-since-epoch number, as plain msgpack', () => {
    const bytes = encodeBatch({ v: 1, src: 'p1', stream: 'events', bseq: 1, recs: [['k', { at: new Date(at), list: [new Date(0)] }, at, 1]] });
    // float64 1700000000123 and fixint 0: no fixext (0xd4-0xd8) or ext (0xc7-0xc9) header with type -1 (0xff).
    expect(toHex(bytes)).toContain(`a26174cb${Buffer.from(new Float64Array([at]).buffer).reverse().toString('hex')}`);
    expect(toHex(bytes)).not.toMatch(/d6ff|d7ff|c70cff/);
    expect(decodeBatch(bytes).recs[0]![1]).toEqual({ at, list: [0] });
    expect(packr.unpack(packr.pack(new Date(at)))).toBe(at);
  });

  it.each([
    ['timestamp 32', 'd6ff65536f80'], ['timestamp 64', 'd7ff0000000065536f80'], ['timestamp 96', 'c70cff000000000000000065536f80'],
    ['type 0 (undefined in some codecs)', 'd40000'], ['type 0x42 (BigInt in msgpackr)', 'd44200'], ['type 0x74 (typed array in msgpackr)', 'd47400'],
    ['type 0x73 (Set in msgpackr)', 'd47300c0'], ['type 5', 'd40500'],
  ])('refuses an extension value: %s', (_name, value) => {
    // A batch with one record whose value is the extension.
    const bytes = fromHex(`85a17601a3737263a27031a673747265616da66576656e7473a46273657101a4726563739194a16b${value}cf0000018bcfe5680001`);
    expect(() => decodeBatch(bytes)).toThrow(MalformedBatchError);
    expect(() => decodeBatch(bytes)).toThrow(/not msgpack/);
  });

  it('malformed.json covers the timestamp extension', () => {
    expect(malformed.map((v) => v.name)).toEqual(expect.arrayContaining(['extension-type-in-value', 'timestamp32-extension-in-value', 'timestamp-extension-as-ts']));
  });
});

describe('PROTOCOL.md', () => {
  it('lists exactly the error codes of ERROR_CODES in its error table', () => {
    const section = protocolDoc.split(/^## /m).find((s) => s.startsWith('Error codes'));
    expect(section, 'an "## Error codes" section').toBeDefined();
    const documented = [...section!.matchAll(/^\|\s*`([A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
    expect([...documented].sort()).toEqual([...ERROR_CODES].sort());
  });

  it('names every subject builder and the subject it builds', () => {
    for (const [builder, value] of Object.entries(subjects)) {
      expect(protocolDoc, `subjects.${builder}`).toContain(`\`subjects.${builder}\``);
      let pattern: string;
      if (typeof value === 'string') {
        pattern = value;
      } else {
        // Call the builder with "<param>" placeholders: data(stream, partition) -> topo.data.<stream>.<partition>.
        const params = /^\(?([^)=]*)\)?\s*=>/.exec(value.toString())?.[1]?.split(',').map((p) => p.trim()).filter(Boolean) ?? [];
        expect(params.length, `parameters of subjects.${builder}`).toBe(value.length);
        pattern = (value as (...a: string[]) => string)(...params.map((p) => `<${p}>`));
      }
      expect(protocolDoc, `subject of subjects.${builder}`).toContain(`\`${pattern}\``);
    }
  });

  it('names every bucket, JetStream stream and constant', () => {
    for (const name of [...Object.values(buckets), ...Object.values(jsStreams)]) expect(protocolDoc).toContain(`\`${name}\``);
    expect(protocolDoc).toContain(`PARTITIONS = ${PARTITIONS}`);
    expect(protocolDoc).toContain(`\`${NAME_PATTERN.source}\``);
    expect(protocolDoc).toContain(`v: ${PROTOCOL_VERSION}`);
  });
});
