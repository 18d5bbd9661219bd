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
