/**
 * ThreadRunner directly: a bundled computation artifact runs in its own
 * thread, fed encoded batches; outputs come back in produce order, failures
 * with their batch and index, timers through nextTimerAt, state through
 * snapshot/init(from), and a callback in `while (true) {}` is ended by
 * terminating the thread, after which the runner starts again from a snapshot.
 *
 * Then end to end, real nats-server, controller and worker processes: a
 * `hints: { cpu: 'heavy' }` computation runs in its own thread inside its
 * worker. A sequence-numbered stream goes through it with zero loss; the
 * worker's event loop keeps heartbeating while a callback burns CPU for
 * 1.8 s; a callback stuck in `while (true) {}` is ended by terminating its
 * thread (stuck report, dead letter, state lost and said so) and the instance
 * goes on in the same worker process (same pid); a hot swap hands the state
 * from one thread to the next, and a version that throws fails its probation
 * in its thread and is rolled back, with a source running and nothing lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { describeProto, StreamType } from '../protocol/types.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeBatch, partitionOf, subjects, type StuckReport, type WireRecord } from '../protocol/index.js';
import { bundleFile } from '../runtime/client/bundle.js';
import { isMalformed, type TapRecord, type TopoClient } from '../runtime/client/client.js';
import { TerminatedError, ThreadRunner } from '../runtime/runners/thread.js';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import type { NatsConnection } from '@nats-io/transport-node';
import { validateMetadata, type Assignment } from '../protocol/index.js';
import type { Computation } from '../sdk/computation.js';
import { Instance } from '../runtime/worker/instance.js';
import type { EdgeFactory, Inbound, Outlet } from '../runtime/worker/edges.js';
import { TopologyView } from '../runtime/worker/topology.js';
import { startCluster, waitFor, type Cluster } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'topo-runner-thread-'));
let file: string;

let bseq = 0;
function batch(recs: [key: string, value: unknown][], seq0 = 1): { data: Uint8Array; stream: string } {
  const wire: WireRecord[] = recs.map(([k, v], i) => [k, v, Date.now(), seq0 + i]);
  return { data: encodeBatch({ v: 1, src: 'p-1', stream: 'heavy-in', bseq: ++bseq, recs: wire }), stream: 'heavy-in' };
}

const runners: ThreadRunner[] = [];
function runner(): ThreadRunner {
  const r = new ThreadRunner({ file, instance: { index: 0, count: 1, id: 'heavy-counter-0-t' } });
  runners.push(r);
  return r;
}

beforeAll(async () => {
  file = join(dir, 'heavy-counter.mjs');
  writeFileSync(file, await bundleFile('test/fixtures/heavy-counter.ts'));
});

describe('a typed computation in a thread', () => {
  it('decodes its typed input and encodes its typed output there; a record that does not decode is a type failure, a value that does not fit fails its callback', async () => {
    const typedFile = join(dir, 'typed-heavy.mjs');
    writeFileSync(typedFile, await bundleFile('test/fixtures/typed-heavy.ts'));
    const r = new ThreadRunner({ file: typedFile, instance: { index: 0, count: 1, id: 'typed-heavy-0-t' } });
    runners.push(r);
    await r.init();
    const proto = (f: string) => readFileSync(join(import.meta.dirname, 'fixtures', f), 'utf8');
    const tweet = new StreamType('typed-tweets', describeProto(proto('typed-tweet.proto'), 'demo.Tweet'));
    const seen = new StreamType('typed-seen', describeProto(proto('typed-seen.proto'), 'demo.Seen'));
    const good = tweet.encode({ text: 'hi', user: { id: 5, name: 'x' }, tags: ['a'], kind: 'TWEET' });
    const misfit = tweet.encode({ text: 'misfit', user: { id: 6, name: 'y' }, tags: [], kind: 'TWEET' });
    const data = encodeBatch({ v: 1, src: 'p-1', stream: 'typed-tweets', bseq: 1, recs: [['k1', good, 1, 1], ['k2', { not: 'bytes' }, 2, 2], ['k3', misfit, 3, 3]] });
    const c = await r.activate({ batches: [{ data, stream: 'typed-tweets' }], now: Date.now() });
    expect(c.records).toBe(3);
    expect(c.failures.map((f) => [f.where, f.index])).toEqual([['type', 1], ['processRecord', 2]]);
    expect(c.failures[0]!.error).toMatch(/^stream "typed-tweets" is typed demo.Tweet \(fingerprint [0-9a-f]{12}\): expected its protobuf encoding/);
    expect(c.failures[1]!.error).toMatch(/produceRecord\("typed-seen"\): value does not fit demo.Seen: n:/);
    expect(c.outputs).toHaveLength(1);
    const [stream, key, value] = c.outputs[0]!;
    expect([stream, key]).toEqual(['typed-seen', 'k1']);
    expect(value).toBeInstanceOf(Uint8Array);
    expect(seen.decode(value)).toEqual({ n: 5, text: 'hi', tags: 1, kind: 'TWEET' });
  });
});

afterAll(async () => {
  await Promise.allSettled(runners.map((r) => r.terminate()));
  rmSync(dir, { recursive: true, force: true });
});

describe('metadata hints', () => {
  it('are optional, validated and normalized; metadata without them is unchanged', () => {
    const base = { name: 'h', istreams: ['a'], ostreams: ['b'] };
    expect(validateMetadata(base)).toEqual({ name: 'h', istreams: [{ stream: 'a', grouping: 'shuffle' }], ostreams: ['b'] });
    expect(validateMetadata({ ...base, hints: { autoscale: { max: 4, min: 1 }, cpu: 'heavy' } }).hints).toEqual({ cpu: 'heavy', autoscale: { min: 1, max: 4 } });
    expect(JSON.stringify(validateMetadata({ ...base, hints: { fuse: false, cpu: 'light' } }).hints)).toBe('{"cpu":"light","fuse":false}');
    expect(() => validateMetadata({ ...base, hints: { cpu: 'huge' } })).toThrow(/hints\.cpu/);
    expect(() => validateMetadata({ ...base, hints: { autoscale: { min: 5, max: 2 } } })).toThrow(/hints\.autoscale: min must be at most max/);
    expect(() => validateMetadata({ ...base, hints: { gpu: true } })).toThrow(/hints/);
  });
});

describe('ThreadRunner', () => {
  it('runs init in a thread and returns outputs in produce order, with per-batch counts for credit', async () => {
    const r = runner();
    const c0 = await r.init();
    expect(c0.failures).toEqual([]);
    expect(c0.stateKeys).toBe(1); // 'inits'
    const c = await r.activate({
      batches: [batch([['a', { n: 1 }], ['b', { n: 2 }], ['a', { n: 3 }]]), batch([['a', { n: 4 }]], 4)],
      now: Date.now(),
    });
    expect(c.records).toBe(4);
    expect(c.failures).toEqual([]);
    expect(c.batches).toEqual([{ src: 'p-1', records: 3 }, { src: 'p-1', records: 1 }]);
    expect(c.outputs).toEqual([
      ['heavy-out', 'a', { n: 1, count: 1, thread: true }],
      ['heavy-out', 'b', { n: 2, count: 1, thread: true }],
      ['heavy-out', 'a', { n: 3, count: 2, thread: true }],
      ['heavy-out', 'a', { n: 4, count: 3, thread: true }],
    ]);
    expect(c.stateKeys).toBe(3);
    await r.destroy();
    expect(r.alive).toBe(false);
  });

  it('reports failures with their batch and index and the record, and keeps going; a bad batch is a decode failure', async () => {
    const r = runner();
    await r.init();
    const c = await r.activate({
      batches: [batch([['a', { n: 1 }], ['bad', { n: 2 }], ['a', { n: 3 }]]), { data: new Uint8Array([0xc1, 1, 2]), stream: 'heavy-in' }, batch([['bad', { n: 9 }]], 7)],
      now: Date.now(),
    });
    expect(c.outputs.map((o) => (o[2] as { n: number }).n)).toEqual([1, 3]);
    expect(c.failures).toHaveLength(3);
    expect(c.failures[0]).toMatchObject({ where: 'processRecord', batch: 0, index: 1, error: 'bad record 2', record: { key: 'bad', value: { n: 2 }, seq: 2 } });
    expect(c.failures[1]).toMatchObject({ where: 'decode', batch: 1 });
    expect(c.failures[2]).toMatchObject({ where: 'processRecord', batch: 2, index: 0, error: 'bad record 7' });
    expect(c.batches).toEqual([{ src: 'p-1', records: 3 }, null, { src: 'p-1', records: 1 }]);
    // stopOnFailure (probation): stops at the first failure.
    const s = await r.activate({ batches: [batch([['a', { n: 1 }], ['bad', { n: 2 }], ['a', { n: 3 }]])], now: Date.now(), stopOnFailure: true });
    expect(s.stopped).toBe(true);
    expect(s.outputs).toHaveLength(1);
    expect(s.batches).toEqual([{ src: 'p-1', records: 2 }]);
  });

  it('fires timers due by `now` and reports the next one; ctx.log lines come back', async () => {
    const r = runner();
    await r.init();
    const at = Date.now() + 60_000;
    const c = await r.activate({ batches: [batch([['x', { n: 1, timerAt: at }], ['y', { n: 2, timerAt: at + 5 }]])], now: Date.now() });
    expect(c.nextTimerAt).toBe(at);
    expect(c.timers).toBe(2);
    const early = await r.activate({ batches: [], now: at - 1 });
    expect(early.outputs).toEqual([]);
    const fired = await r.activate({ batches: [], now: at + 1 });
    expect(fired.outputs).toEqual([['heavy-ticks', 't-x', { atMs: at }]]);
    expect(fired.nextTimerAt).toBe(at + 5);
    expect(fired.logs?.map((l) => JSON.parse(l) as { msg: string; key: string })).toMatchObject([{ msg: 'tick', key: 't-x' }]);
  });

  it('snapshots and restores state and timers (all, or by partition)', async () => {
    const r = runner();
    await r.init();
    const at = Date.now() + 60_000;
    await r.activate({ batches: [batch([['a', { n: 1 }], ['a', { n: 2 }], ['b', { n: 3, timerAt: at }]])], now: Date.now() });
    const snap = await r.snapshot();
    expect(new Map(snap.state.entries)).toEqual(new Map<string, unknown>([['inits', 1], ['a', 2], ['b', 1]]));
    expect(snap.timers).toEqual([['t-b', at]]);
    const part = await r.snapshot([0]);
    expect(part.state.entries.length).toBeLessThan(snap.state.entries.length);

    const r2 = runner();
    const c = await r2.init(snap, { runInit: false });
    expect(c.stateKeys).toBe(3);
    expect(c.nextTimerAt).toBe(at);
    const out = await r2.activate({ batches: [batch([['a', { n: 4 }]])], now: Date.now() });
    expect(out.outputs).toEqual([['heavy-out', 'a', { n: 4, count: 3, thread: true }]]);
    // init runs again on a restart that asks for it, on the restored state.
    await r2.init(snap);
    expect(new Map((await r2.snapshot()).state.entries).get('inits')).toBe(2);
  });

  it('ends a callback stuck in while(true) by terminating its thread, within a bound, and starts again from a snapshot', async () => {
    const r = runner();
    await r.init();
    await r.activate({ batches: [batch([['a', { n: 1 }], ['a', { n: 2 }]])], now: Date.now() });
    const snap = await r.snapshot();
    const stuck = r.activate({ batches: [batch([['a', { n: 3 }], ['hang', { n: 4 }], ['a', { n: 5 }]])], now: Date.now() });
    stuck.catch(() => undefined);
    // The progress in shared memory names the stuck record while it spins.
    await expect.poll(() => r.progress(), { timeout: 5_000 }).toMatchObject({ phase: 'processRecord', batch: 0, index: 1 });
    const t0 = performance.now();
    await r.terminate();
    const ms = performance.now() - t0;
    await expect(stuck).rejects.toBeInstanceOf(TerminatedError);
    expect(ms).toBeLessThan(1_000);
    console.log(`terminate() of a thread in while(true): ${ms.toFixed(1)} ms`);
    expect(r.alive).toBe(false);
    await expect(r.activate({ batches: [], now: Date.now() })).rejects.toBeInstanceOf(TerminatedError);

    await r.init(snap, { runInit: false });
    const c = await r.activate({ batches: [batch([['a', { n: 6 }]])], now: Date.now() });
    expect(c.outputs).toEqual([['heavy-out', 'a', { n: 6, count: 3, thread: true }]]);
    expect(r.terminations).toBe(1);
  });

  it('hands outputs over msgpack-encoded, as the wire would carry them: a value structured clone rejects does not take the thread down', async () => {
    const r = runner();
    await r.init();
    const c = await r.activate({ batches: [batch([['a', { n: 1 }], ['unclonable', { n: 2 }], ['a', { n: 3 }]])], now: Date.now() });
    expect(c.outputs.map((o) => o[1])).toEqual(['a', 'unclonable', 'a']);
    expect(c.outputs[2]![2]).toEqual({ n: 3, count: 2, thread: true }); // the thread and its state are still there
  });

  it('gives each instance its own thread', async () => {
    const a = runner();
    const b = runner();
    await Promise.all([a.init(), b.init()]);
    const who = async (r: ThreadRunner) => ((await r.activate({ batches: [batch([['whoami', {}]])], now: Date.now() })).outputs[0]![2] as { threadId: number }).threadId;
    const [ta, tb] = await Promise.all([who(a), who(b)]);
    expect(ta).toBeGreaterThan(0);
    expect(tb).toBeGreaterThan(0);
    expect(ta).not.toBe(tb);
    expect(await who(a)).toBe(ta); // pinned: the same thread every time
  });
});

describe('an inline instance that measures as CPU-heavy', () => {
  it('moves to its own thread with its keyed state, without losing or repeating a record', async () => {
    const mfile = join(dir, 'heavy-measured.mjs');
    writeFileSync(mfile, await bundleFile('test/fixtures/heavy-measured.ts'));
    const comp = ((await import(pathToFileURL(mfile).href)) as { default: Computation }).default;
    const outputs: { key: string; value: { count: number; thread: boolean } }[] = [];
    let onItem: ((item: Inbound) => void) | undefined;
    // A stand-in: only what the instance's loop uses (cast, so that fields added to Outlet later do not break it).
    const outlet = (stream: string): Outlet => ({
      stream, produce: (key: string, value: unknown) => void outputs.push({ key, value: value as { count: number; thread: boolean } }),
      hold() {}, release() {}, isHeld: false, discard() {}, flush: () => true, isBlocked: () => false, lastPublishedSeq: 0, pending: 0,
      partitionFences: {}, partitionAgesMs: {}, credit() {}, checkStall() {}, close() {},
      producedSeq: 0, restoreSeq() {}, durableUpTo: async () => {}, settle: async () => {},
    }) as unknown as Outlet;
    const edges: EdgeFactory = {
      outlet, inlet: (_a, _p, cb) => ({ open: () => void (onItem = cb), close: () => void (onItem = undefined) }),
      listenCredits: () => ({ close() {} }), sendCredit() {},
    };
    const a: Assignment = { instanceId: 'heavy-measured-0-t', computation: comp.name, version: 1, sha: '0'.repeat(64), lang: 'ts', index: 0, count: 1, metadata: validateMetadata(comp) };
    const nc = { publish() {}, flush: async () => {} } as unknown as NatsConnection;
    const inst = new Instance(a, comp, { nc, view: new TopologyView(), log: pino({ level: 'silent' }), workerId: 'w-test', edges, artifactFile: mfile });
    await inst.start();
    let sent = 0;
    const feeder = setInterval(() => {
      const recs: [string, unknown][] = Array.from({ length: 60 }, (_, i) => [`k${(sent + i) % 5}`, { n: sent + i }]);
      sent += recs.length;
      onItem!({ ...batch(recs, sent), partition: 0 });
    }, 40); // 60 records x 400 µs every 40 ms: busy ~60%, 400 µs/record >= 200
    try {
      await expect.poll(() => outputs.some((o) => o.value.thread), { timeout: 8_000, interval: 100 }).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      clearInterval(feeder);
    }
    await expect.poll(() => outputs.length, { timeout: 5_000 }).toBe(sent);
    const first = outputs.findIndex((o) => o.value.thread);
    expect(first).toBeGreaterThan(0); // it started inline
    expect(outputs.slice(first).every((o) => o.value.thread)).toBe(true); // and stayed in its thread
    // The keyed state went with it: per key the counts run on without a gap or repeat.
    const byKey = new Map<string, number[]>();
    for (const o of outputs) byKey.set(o.key, [...(byKey.get(o.key) ?? []), o.value.count]);
    for (const counts of byKey.values()) expect(counts).toEqual(counts.map((_, i) => i + 1));
    await inst.stop();
  }, 20_000);
});

// ---- end to end ------------------------------------------------------------------

const STUCK_AFTER_MS = 3_000;

function collect(client: TopoClient, stream: string) {
  const records: TapRecord[] = [];
  const ac = new AbortController();
  const done = (async () => {
    for await (const item of client.tap(stream, { signal: ac.signal })) if (!isMalformed(item)) records.push(item);
  })();
  return { records, stop: async () => (ac.abort(), await done) };
}

let cluster: Cluster;
let seq = 0;

/** Publishes records on heavy-in as a producer "test-src" would: one batch per partition. */
function publishRecords(recs: [key: string, value: unknown][]): void {
  const byPartition = new Map<number, WireRecord[]>();
  for (const [k, v] of recs) {
    const p = partitionOf(k);
    if (!byPartition.has(p)) byPartition.set(p, []);
    byPartition.get(p)!.push([k, v, Date.now(), ++seq]);
  }
  for (const [p, wire] of byPartition) {
    cluster.client.nc.publish(subjects.data('heavy-in', p), encodeBatch({ v: 1, src: 'test-src', stream: 'heavy-in', bseq: ++bseq, recs: wire }));
  }
}

describe('a cpu: heavy computation in a worker', () => {
  beforeAll(async () => {
    cluster = await startCluster({ workers: 1, env: { TOPO_STUCK_AFTER_MS: String(STUCK_AFTER_MS) } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('processes a sequence-numbered stream in its thread with zero loss, heartbeats flowing while a callback burns CPU, and survives a stuck callback in the same process; swaps in threads', async () => {
    const { client } = cluster;
    const out = collect(client, 'heavy-out');
    await client.deployFile('test/fixtures/heavy-counter.ts', { instances: 1 });
    const s0 = await client.status();
    const inst = s0.computations.find((c) => c.name === 'heavy-counter')!.instances[0]!;
    const pid = s0.workers.find((w) => w.workerId === inst.workerId)!.pid;

    // 1. Zero loss: 3000 records over 20 keys, 100 µs of CPU each, in chunks.
    const N = 3_000;
    for (let n = 1; n <= N; n += 100) publishRecords(Array.from({ length: 100 }, (_, i) => [`k${(n + i) % 20}`, { n: n + i }]));
    await waitFor(() => out.records.length >= N, { what: `${N} records out (got ${out.records.length})`, timeoutMs: 30_000 });
    const ns = out.records.map((r) => (r.value as { n: number }).n);
    expect(new Set(ns).size).toBe(N);
    expect(Math.min(...ns)).toBe(1);
    expect(Math.max(...ns)).toBe(N);
    expect(out.records.every((r) => (r.value as { thread: boolean }).thread)).toBe(true);
    // Per key the counts have no gaps: one instance, serial, in order.
    const byKey = new Map<string, number[]>();
    for (const r of out.records) byKey.set(r.key, [...(byKey.get(r.key) ?? []), (r.value as { count: number }).count]);
    for (const counts of byKey.values()) expect(counts).toEqual(counts.map((_, i) => i + 1));

    // 2. The event loop is free: heartbeats keep coming while one callback burns 1.8 s in the thread.
    const beats: number[] = [];
    const hb = client.nc.subscribe(subjects.heartbeat(inst.workerId), { callback: () => void beats.push(Date.now()) });
    await new Promise((r) => setTimeout(r, 1_200));
    publishRecords([['slow', { n: N + 1, burnUs: 1_800_000 }]]);
    const slow = await waitFor(() => out.records.find((r) => (r.value as { n: number }).n === N + 1), { what: 'the slow record', timeoutMs: 15_000 });
    await new Promise((r) => setTimeout(r, 1_200));
    hb.unsubscribe();
    const doneAt = (slow.value as { doneAt: number }).doneAt;
    const during = beats.filter((t) => t > doneAt - 1_800 && t < doneAt);
    expect(during.length, `heartbeats during the burn (${beats.map((t) => t - doneAt).join(', ')})`).toBeGreaterThanOrEqual(1);
    let maxGap = 0;
    for (let i = 1; i < beats.length; i++) maxGap = Math.max(maxGap, beats[i]! - beats[i - 1]!);
    expect(maxGap).toBeLessThan(1_600); // inline, the burn would hold the loop (and the heartbeat) for 1.8 s

    // 3. Stuck in while(true): its thread is terminated, the stuck record dead-lettered, the rest processed, same pid.
    const reports: StuckReport[] = [];
    const sub = client.nc.subscribe(subjects.stuck(inst.workerId), { callback: (_e, m) => void reports.push(m.json<StuckReport>()) });
    const before = out.records.length;
    const t0 = Date.now();
    // One batch (same partition for all three keys is not needed: the stuck one's batch is redone without it).
    publishRecords([['hang', { n: N + 2 }]]);
    publishRecords([['k1', { n: N + 3 }]]);
    const report = await waitFor(() => reports[0], { what: 'a stuck report', timeoutMs: STUCK_AFTER_MS + 10_000 });
    const terminatedAfterMs = Date.now() - t0;
    expect(report).toMatchObject({ workerId: inst.workerId, pid, computation: 'heavy-counter', callback: 'processRecord' });
    expect(report.action).toMatch(/terminated the instance's thread/);
    expect(report.forMs).toBeGreaterThanOrEqual(STUCK_AFTER_MS);
    expect(terminatedAfterMs).toBeLessThan(STUCK_AFTER_MS + 2_000);
    await waitFor(() => out.records.slice(before).find((r) => (r.value as { n: number }).n === N + 3), { what: 'the record after the stuck one', timeoutMs: 10_000 });
    // The thread's state was lost: k1 counts from 1 again.
    expect((out.records.find((r) => (r.value as { n: number }).n === N + 3)!.value as { count: number }).count).toBe(1);
    publishRecords([['k2', { n: N + 4 }]]);
    await waitFor(() => out.records.find((r) => (r.value as { n: number }).n === N + 4), { what: 'a record after recovery', timeoutMs: 10_000 });
    sub.unsubscribe();

    const s1 = await waitFor(async () => {
      const s = await client.status();
      return s.computations.find((c) => c.name === 'heavy-counter')!.instances[0]!.stuck ? s : undefined;
    }, { what: 'status showing the stuck instance', timeoutMs: 5_000 });
    const after = s1.computations.find((c) => c.name === 'heavy-counter')!.instances[0]!;
    expect(after.instanceId).toBe(inst.instanceId); // the same instance, not re-placed
    expect(s1.workers.find((w) => w.workerId === inst.workerId)!.pid).toBe(pid); // the worker did not restart
    expect(after.lastError).toMatch(/thread was terminated.*lost/);
    expect(after.stuck).toMatchObject({ callback: 'processRecord', count: 1 });

    const letters = [];
    for await (const d of client.deadLetters('heavy-counter')) letters.push(d);
    expect(letters).toEqual([expect.objectContaining({ reason: 'processRecord stuck', record: expect.objectContaining({ key: 'hang', value: { n: N + 2 } }) })]);
    // 4. Hot swap in threads, records flowing: v2 takes over v1's state (snapshot from its thread, init(from) in the new one);
    // then a version that throws fails its probation in its thread and is rolled back; nothing lost or repeated.
    const input = collect(client, 'heavy-in');
    await client.deployFile('test/fixtures/heavy-source.ts');
    await waitFor(() => input.records.length > 50, { what: 'the source running' });
    let r2, r3: unknown;
    try {
      r2 = await client.swap('heavy-counter', 'test/fixtures/heavy-counter-v2.ts');
      await new Promise((r) => setTimeout(r, 300));
      r3 = await client.swap('heavy-counter', 'test/fixtures/heavy-counter-throws.ts').then(() => 'no error', (e: unknown) => e);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      await client.kill('heavy-source');
    }
    await new Promise((r) => setTimeout(r, 500));
    await input.stop();
    const sent = input.records.map((r) => (r.value as { n: number }).n);
    expect(r2!.result, r2!.error).toBe('ok');
    expect((r3 as Error).message).toMatch(/rolled back: processRecord of "heavy-counter" v3 threw: v3 throws on every record/);
    publishRecords([['k2', { n: N + 5 }]]);
    const k2 = await waitFor(() => out.records.find((r) => (r.value as { n: number }).n === N + 5), { what: 'k2 after the swaps', timeoutMs: 10_000 });
    expect(k2.value).toMatchObject({ count: 2, version: 2 }); // v1's count of k2 (1) went over to v2
    await waitFor(() => out.records.filter((r) => (r.value as { n: number }).n > 100_000).length >= sent.length, {
      what: () => `${sent.length} records of the source (got ${out.records.filter((r) => (r.value as { n: number }).n > 100_000).length})`, timeoutMs: 15_000,
    });
    await new Promise((r) => setTimeout(r, 300));
    const swapped = out.records.filter((r) => (r.value as { n: number }).n > 100_000);
    expect(new Set(swapped.map((r) => (r.value as { n: number }).n))).toEqual(new Set(sent));
    expect(swapped.length).toBe(sent.length);
    const perKey = new Map<string, number[]>();
    for (const r of swapped) perKey.set(r.key, [...(perKey.get(r.key) ?? []), (r.value as { count: number }).count]);
    for (const counts of perKey.values()) expect(counts).toEqual(counts.map((_, i) => i + 1));
    expect(swapped.every((r) => (r.value as { version?: number }).version !== 3)).toBe(true);

    await out.stop();
    console.log(`stuck heavy callback: thread terminated and reported ${terminatedAfterMs} ms after the record was sent (threshold ${STUCK_AFTER_MS} ms)`);
  }, 150_000);
});
