/**
 * The zod schemas of protocol/schemas.ts: bounds, the agreement of the
 * hand-rolled decodeBatch with schemas.batch (on every conformance vector and
 * on hostile src values), error messages that name the field, and the
 * committed JSON Schema files (protocol/schemas/*.json) matching them.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CONTROL_OPS, MAX_ERROR_LENGTH, MAX_ID_LENGTH, checkComputationEntry, checkMessage, decodeBatch, encodeBatch, jsonSchemas, packr,
  parseRequest, schemas, truncateError, type Heartbeat, type WorkerControl,
} from '../protocol/index.js';
import { newInstanceId } from '../runtime/controller/placement.js';
import { newSwapId } from '../runtime/controller/swapRunner.js';
import { groupIdOf } from '../runtime/worker/topology.js';

const vectorsDir = new URL('../protocol/vectors/', import.meta.url);
const load = <T>(file: string): T => JSON.parse(readFileSync(new URL(file, vectorsDir), 'utf8')) as T;
const fromHex = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));
const batches = load<{ vectors: { name: string; hex: string }[] }>('batches.json').vectors;
const malformed = load<{ vectors: { name: string; hex: string; reason: string }[] }>('malformed.json').vectors;
const creditJson = load<{ vectors: { name: string; hex: string }[]; invalid: { name: string; hex: string }[] }>('credit.json');
const credits = creditJson.vectors;

/** What schemas.batch says about the bytes (undefined when they are not even msgpack). */
function schemaAccepts(bytes: Uint8Array): boolean {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch {
    return false;
  }
  return schemas.batch.safeParse(raw).success;
}
function decodeAccepts(bytes: Uint8Array): boolean {
  try {
    decodeBatch(bytes);
    return true;
  } catch {
    return false;
  }
}

const SHA = 'a'.repeat(64);
const META = { name: 'counter', istreams: [{ stream: 'in', grouping: 'key' as const }], ostreams: ['out'] };
const ASSIGNMENT = { instanceId: 'counter-0-abc123', computation: 'counter', version: 1, sha: SHA, lang: 'ts', index: 0, count: 1, metadata: META };
const PROBATION = { records: 20, ms: 500, callbackTimeoutMs: 2000 };
const report = (over: object = {}) => ({
  instanceId: 'counter-0-abc123', computation: 'counter', version: 1, index: 0, count: 1, state: 'running',
  metrics: { recordsIn: 1, recordsOut: 1, errors: 0, deadLetters: 0, malformed: 0 }, ...over,
});
const heartbeat = (over: object = {}): Heartbeat => ({ workerId: 'w-1', host: 'h', pid: 1, lang: 'ts', at: 1, instances: [report()], ...over }) as Heartbeat;

describe('decodeBatch agrees with schemas.batch', () => {
  it.each(batches.map((v) => [v.name, v] as const))('both accept valid vector %s', (_n, v) => {
    expect(decodeAccepts(fromHex(v.hex))).toBe(true);
    expect(schemaAccepts(fromHex(v.hex))).toBe(true);
  });
  it.each(malformed.map((v) => [v.name, v] as const))('both reject malformed vector %s', (_n, v) => {
    expect(decodeAccepts(fromHex(v.hex))).toBe(false);
    expect(schemaAccepts(fromHex(v.hex))).toBe(false);
  });
  const srcs: [string, boolean][] = [
    ['p1', true], ['counter-0-abc123', true], ['a'.repeat(MAX_ID_LENGTH), true], ['A_b-9', true],
    ['p 1', false], ['p\t1', false], ['p\r1', false], ['p\n1', false], ['p.1', false], ['*', false], ['>', false], ['é', false],
    ['a'.repeat(MAX_ID_LENGTH + 1), false], ['p'.repeat(5_000), false], ['', false],
  ];
  it.each(srcs)('src %j: accepted = %s by both', (src, ok) => {
    const bytes = encodeBatch({ v: 1, src, stream: 's', bseq: 1, recs: [['k', 1, 1, 1]] });
    expect(decodeAccepts(bytes)).toBe(ok);
    expect(schemaAccepts(bytes)).toBe(ok);
  });
  it.each([[NaN], [Infinity], [-Infinity]])('ts %s is rejected by both', (ts) => {
    const bytes = encodeBatch({ v: 1, src: 'p', stream: 's', bseq: 1, recs: [['k', 1, ts, 1]] });
    expect(decodeAccepts(bytes)).toBe(false);
    expect(schemaAccepts(bytes)).toBe(false);
  });
  it('names the bad src briefly, even when it is 5000 characters', () => {
    expect(() => decodeBatch(encodeBatch({ v: 1, src: 'p'.repeat(5_000), stream: 's', bseq: 1, recs: [] }))).toThrow(/batch\.src must be a subject-safe id.*\(5000 characters\)/);
  });
});

describe('ids', () => {
  it('real instance, swap, worker and group ids pass', () => {
    const name = 'n'.repeat(64);
    for (const id of [newInstanceId('counter', 0), newInstanceId(name, 63), newSwapId(name, 123456), 'w-1', 'w-12']) {
      expect(checkMessage(schemas.controlOps.commit, { op: 'commit', swapId: id }, 'commit').ok, id).toBe(true);
      expect(id.length).toBeLessThanOrEqual(MAX_ID_LENGTH);
    }
    for (const g of [groupIdOf('counter', 'key', 0), groupIdOf(name, 'broadcast', 63)]) {
      expect(schemas.credit.safeParse({ g, n: 1 }).success, g).toBe(true);
    }
  });
});

describe('credit', () => {
  it.each(credits.map((v) => [v.name, v] as const))('accepts vector %s', (_n, v) => {
    expect(schemas.credit.safeParse(packr.unpack(fromHex(v.hex))).success).toBe(true);
  });
  it.each(creditJson.invalid.map((v) => [v.name, v] as const))('rejects invalid vector %s', (_n, v) => {
    expect(schemas.credit.safeParse(packr.unpack(fromHex(v.hex))).success).toBe(false);
  });
  it.each([[NaN], [-1e9], [-1], [0], [1.5], [Infinity], [2 ** 53], ['5'], [null]])('rejects n = %s', (n) => {
    expect(schemas.credit.safeParse({ g: 'counter', n }).success).toBe(false);
  });
  it('rejects a group that is not a computation name or name#index', () => {
    for (const g of ['', 'a b', 'counter#', 'counter#x', '9lives']) expect(schemas.credit.safeParse({ g, n: 1 }).success, g).toBe(false);
  });
});

// A user JWT and seed as the controller mints them (shapes only: nothing here signs in).
const NATS_JWT = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVQUJDIiwibmF0cyI6eyJ0eXBlIjoidXNlciJ9fQ.c2lnbmF0dXJl';
const USER_SEED = 'SU' + 'A'.repeat(56);

describe('worker control', () => {
  const valid: Record<WorkerControl['op'], object> = {
    assign: { op: 'assign', assignment: ASSIGNMENT },
    unassign: { op: 'unassign', instanceId: 'x' },
    pause: { op: 'pause', instanceId: 'x', swapId: 's', streams: ['out'], leaseMs: 5000 },
    resume: { op: 'resume', instanceId: 'x' },
    drain: { op: 'drain', instanceId: 'x', timeoutMs: 100 },
    preload: { op: 'preload', sha: SHA, metadata: META },
    release: { op: 'release', instanceId: 'x', swapId: 's', export: 'memory', budgetMs: 30000, leaseMs: 3500, upstreams: [{ workerId: 'w-1', instanceId: 'y', streams: ['in'] }] },
    adopt: { op: 'adopt', swapId: 's', assignment: ASSIGNMENT, from: [{ workerId: 'w-1', instanceId: 'x' }], filterByPartition: false, probation: PROBATION },
    renew: { op: 'renew', swapId: 's', leaseMs: 3500 },
    health: { op: 'health', instanceId: 'x', timeoutMs: 5000 },
    commit: { op: 'commit', swapId: 's' },
    abort: { op: 'abort', swapId: 's', reason: 'health failed' },
    replay: { op: 'replay', swapId: 's', handback: 's/handback/x', from: [{ workerId: 'w-1', instanceId: 'x' }] },
    stop: { op: 'stop' },
  };
  it('has a schema for every op, and accepts a valid example of each (unknown fields kept)', () => {
    expect([...CONTROL_OPS].sort()).toEqual(Object.keys(valid).sort());
    for (const [op, body] of Object.entries(valid)) {
      const r = checkMessage(schemas.workerControl, { ...body, future: 1 }, 'worker control');
      expect(r.ok, `${op}: ${r.ok ? '' : r.message}`).toBe(true);
      if (r.ok) expect((r.value as Record<string, unknown>).future).toBe(1);
    }
    // With an instance's own NATS user (a JWT and its nkey seed).
    const credential = { jwt: NATS_JWT, seed: USER_SEED };
    expect(checkMessage(schemas.workerControl, { ...valid.assign, credential }, 'c').ok).toBe(true);
    expect(checkMessage(schemas.workerControl, { ...valid.preload, instances: [{ instanceId: 'x', credential }] }, 'c').ok).toBe(true);
    // pause/resume without swapId stay valid (the swap lease's own pauses name it; others may not).
    expect(checkMessage(schemas.workerControl, { op: 'pause', instanceId: 'x' }, 'c').ok).toBe(true);
  });
  it.each([
    [{ op: 'abort' }, 'swapId'],
    [{ op: 'abort', reason: 'x' }, 'swapId'],
    [{ op: 'abort', swapId: '', reason: 'x' }, 'swapId'],
    [{ op: 'commit' }, 'swapId'],
    [{ op: 'commit', swapId: 'a b' }, 'swapId'],
    [{ op: 'release', instanceId: 'x', export: 'memory' }, 'swapId'],
    [{ op: 'adopt', assignment: ASSIGNMENT, from: [], filterByPartition: false, probation: PROBATION, swapId: 's' }, 'from'],
    [{ op: 'renew', swapId: 's' }, 'leaseMs'],
    [{ op: 'pause', instanceId: 'x', leaseMs: -5 }, 'leaseMs'],
    [{ op: 'assign', assignment: { ...ASSIGNMENT, instanceId: 'x'.repeat(200) } }, 'assignment.instanceId'],
    [{ op: 'assign', assignment: { ...ASSIGNMENT, metadata: { ...META, istreams: ['in'] } } }, 'assignment.metadata.istreams[0]'],
    [{ op: 'assign', assignment: ASSIGNMENT, credential: { jwt: NATS_JWT, seed: 'SA' + USER_SEED.slice(2) } }, 'credential.seed'],
    [{ op: 'assign', assignment: ASSIGNMENT, credential: { jwt: 'not a jwt', seed: USER_SEED } }, 'credential.jwt'],
    [{ op: 'assign', assignment: ASSIGNMENT, credential: { jwt: NATS_JWT, seed: USER_SEED, extra: 1 } }, 'credential'],
    [{ op: 'preload', sha: SHA, metadata: META, instances: [{ instanceId: 'x' }] }, 'instances[0].credential'],
    [{ op: 'nonsense' }, 'unknown worker control op "nonsense"'],
    [{}, 'unknown worker control op'],
  ])('rejects %j, naming %s', (body, field) => {
    expect(() => parseRequest(schemas.workerControl, body, 'worker control')).toThrow(expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringContaining(field) }));
  });
});

describe('heartbeat', () => {
  it('accepts what a worker sends', () => {
    expect(checkMessage(schemas.heartbeat, heartbeat(), 'heartbeat').ok).toBe(true);
    const observed = {
      ...report().metrics, latencyBuckets: [0, 3, 9], latencySumUs: 40, busyTotalMs: 10, idleTotalMs: 990, backpressuredTotalMs: 0,
      outlets: [{ stream: 'out', records: 5, creditStallMs: 1.5 }],
    };
    const process = { rssBytes: 5e7, heapUsedBytes: 1e7, cpuUserMicros: 1e6, cpuSystemMicros: 1e5, eventLoopLagMs: { mean: 10.2, p99: 12, max: 30 } };
    expect(checkMessage(schemas.heartbeat, heartbeat({ instances: [report({ metrics: observed })], process }), 'heartbeat').ok).toBe(true);
    expect(checkMessage(schemas.heartbeat, heartbeat({ instances: [report({ state: 'stuck', stuck: { callback: 'processRecord', forMs: 10, count: 1 }, queued: 3, lastError: 'boom' })] }), 'heartbeat').ok).toBe(true);
  });
  it('caps lastError, and truncateError keeps a capped error valid', () => {
    const long = `processRecord: cannot handle key ${'k'.repeat(180_000)}`;
    const r = checkMessage(schemas.heartbeat, heartbeat({ instances: [report({ lastError: long })] }), 'heartbeat');
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.message).toContain('instances[0].lastError');
    const cut = truncateError(long);
    expect(cut.length).toBeLessThanOrEqual(MAX_ERROR_LENGTH);
    expect(cut.startsWith('processRecord: cannot handle key kkk')).toBe(true);
    expect(cut.endsWith('(truncated)')).toBe(true);
    expect(checkMessage(schemas.heartbeat, heartbeat({ instances: [report({ lastError: cut })] }), 'heartbeat').ok).toBe(true);
    expect(truncateError('short')).toBe('short');
    // Never splits a surrogate pair.
    const emoji = truncateError('😀'.repeat(2_000));
    expect(emoji.length).toBeLessThanOrEqual(MAX_ERROR_LENGTH);
    expect(() => encodeURIComponent(emoji)).not.toThrow();
  });
  it('rejects bad ids and shapes, naming the field', () => {
    for (const [hb, field] of [
      [heartbeat({ workerId: 'w 1' }), 'workerId'],
      [heartbeat({ lang: 'cobol' }), 'lang'],
      [heartbeat({ instances: {} }), 'instances'],
      [heartbeat({ instances: [report({ metrics: null })] }), 'instances[0].metrics'],
      [heartbeat({ instances: [report({ state: 'dancing' })] }), 'instances[0].state'],
      // Metrics for Prometheus: bounded arrays, stream names, non-negative figures.
      [heartbeat({ instances: [report({ metrics: { ...report().metrics, latencyBuckets: new Array(65).fill(1) } })] }), 'instances[0].metrics.latencyBuckets'],
      [heartbeat({ instances: [report({ metrics: { ...report().metrics, latencyBuckets: [1, -1] } })] }), 'instances[0].metrics.latencyBuckets[1]'],
      [heartbeat({ instances: [report({ metrics: { ...report().metrics, outlets: [{ stream: 'a b', records: 1, creditStallMs: 0 }] } })] }), 'instances[0].metrics.outlets[0].stream'],
      [heartbeat({ instances: [report({ metrics: { ...report().metrics, busyTotalMs: -5 } })] }), 'instances[0].metrics.busyTotalMs'],
      [heartbeat({ process: { rssBytes: 1, heapUsedBytes: 1, cpuUserMicros: 1, cpuSystemMicros: 1 } }), 'process.eventLoopLagMs'],
      [heartbeat({ process: { rssBytes: 'lots', heapUsedBytes: 1, cpuUserMicros: 1, cpuSystemMicros: 1, eventLoopLagMs: { mean: 0, p99: 0, max: 0 } } }), 'process.rssBytes'],
    ] as const) {
      const r = checkMessage(schemas.heartbeat, hb, 'heartbeat');
      expect(r.ok ? '' : r.message).toContain(field);
    }
  });
});

describe('API requests', () => {
  const swap = { name: 'counter', sha: SHA, lang: 'ts', metadata: META };
  it.each([
    [schemas.api.deploy, { sha: 'abc', lang: 'ts', metadata: META }, 'sha: must be 64 lowercase hex'],
    [schemas.api.deploy, { sha: SHA, lang: 'ts', metadata: META, instances: 65 }, 'instances: must be an integer from 1 to 64'],
    [schemas.api.swap, { ...swap, canary: 100 }, 'canary: must be an integer percentage from 1 to 99, got 100'],
    [schemas.api.swap, { ...swap, probation: { ms: -1 } }, 'probation.ms'],
    [schemas.api.swap, { ...swap, probation: { foo: 1 } }, '"foo"'],
    [schemas.api.swap, { ...swap, drainBudgetMs: 0 }, 'drainBudgetMs'],
    [schemas.api.swap, { ...swap, dryRun: 'yes' }, 'dryRun'],
    [schemas.api.rollback, { name: 'counter', to: 0 }, 'to: must be a version number'],
    [schemas.api.kill, { name: 'bad name' }, 'name'],
    [schemas.api.history, 7, 'request must be a JSON object'],
  ] as const)('%#: BAD_REQUEST naming the field', (schema, body, message) => {
    expect(() => parseRequest(schema, body, 'request')).toThrow(expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringContaining(message) }));
  });
  it('bad metadata is INVALID_METADATA with every bad field, as validateMetadata reports it', () => {
    expect(() => parseRequest(schemas.api.deploy, { sha: SHA, lang: 'ts', metadata: 5 }, 'deploy request')).toThrow(expect.objectContaining({ code: 'INVALID_METADATA' }));
  });
  it('status and workers take any object', () => {
    expect(parseRequest(schemas.api.status, {}, 'status')).toEqual({});
  });
});

describe('KV records', () => {
  const rec = {
    name: 'counter', version: 2, sha: SHA, lang: 'ts', metadata: META, instances: 1,
    placements: [{ index: 0, instanceId: 'counter-0-abc123', workerId: 'w-1' }], deployedAt: 1,
  };
  it('checkComputationEntry accepts a record under its own key only', () => {
    expect(checkComputationEntry('comp.counter', rec).ok).toBe(true);
    expect(checkComputationEntry('comp.other', rec)).toMatchObject({ ok: false, problem: expect.stringContaining('not "other"') });
    expect(checkComputationEntry('comp.counter', { ...rec, metadata: undefined })).toMatchObject({ ok: false, problem: expect.stringContaining('metadata') });
    expect(checkComputationEntry('comp.counter', { ...rec, instances: 65 }).ok).toBe(false);
    expect(checkComputationEntry('comp.counter', { ...rec, placements: [{ index: 0, instanceId: 'x.y', workerId: 'w-1' }] }).ok).toBe(false);
  });
  it('history entries cap their error', () => {
    const e = { name: 'counter', version: 1, sha: SHA, action: 'swap', at: 1, result: 'rolled-back' };
    expect(schemas.historyEntry.safeParse({ ...e, error: 'x'.repeat(MAX_ERROR_LENGTH) }).success).toBe(true);
    expect(schemas.historyEntry.safeParse({ ...e, error: 'x'.repeat(MAX_ERROR_LENGTH + 1) }).success).toBe(false);
  });
});

describe('JSON Schema files (protocol/schemas/*.json)', () => {
  const dir = new URL('../protocol/schemas/', import.meta.url);
  it('are exactly what the zod schemas give (run `node protocol/schemas/generate.mjs` after changing a schema)', () => {
    const wanted = jsonSchemas();
    const committed = readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length)).sort();
    expect(committed).toEqual(Object.keys(wanted).sort());
    for (const [name, schema] of Object.entries(wanted)) {
      expect(readFileSync(new URL(`${name}.json`, dir), 'utf8'), `${name}.json`).toBe(`${JSON.stringify(schema, null, 2)}\n`);
    }
  });
  it('carry the bounds', () => {
    const batch = JSON.parse(readFileSync(new URL('batch.json', dir), 'utf8')) as { properties: { src: { maxLength: number; pattern: string } } };
    expect(batch.properties.src).toMatchObject({ maxLength: MAX_ID_LENGTH, pattern: '^[A-Za-z0-9_-]+$' });
  });
});
