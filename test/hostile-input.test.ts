/**
 * One bad field in one message (issue 6, item 5), against real worker
 * processes over a real nats-server; this test plays the controller. Each
 * test sends one kind of hostile message and asserts, as counts, that it is
 * rejected (dead-lettered as malformed, BAD_REQUEST, counted and ignored, or
 * skipped with a logged error) and that nothing else changes: the sequence-
 * numbered source keeps flowing through a keyed counter with no record lost,
 * duplicated or reordered per key, and no counter reset.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';
import { connectNats } from '../runtime/transport/connect.js';
import { call, decodeJson, encodeJson, serve } from '../runtime/transport/rpc.js';
import { openControlPlane, type ControlPlaneStores } from '../runtime/controller/infrastructure.js';
import { StateStore } from '../runtime/controller/stateStore.js';
import { bundleComputation } from '../runtime/client/bundle.js';
import { distFile } from '../runtime/client/paths.js';
import { StreamProducer } from '../runtime/worker/producer.js';
import { TopologyView } from '../runtime/worker/topology.js';
import {
  MAX_ERROR_LENGTH, decodeBatch, encodeBatch, packr, partitionOf, schemas, subjects,
  type Assignment, type ComputationRecord, type DeadLetter, type Heartbeat, type InstanceReport,
} from '../protocol/index.js';
import { waitFor } from './harness.js';

interface Out {
  key: string;
  seq: number;
  count: number;
}

/** Per key: every seq exactly once and in order, every count the previous + 1 (no reset). */
function auditOutput(out: readonly Out[]): { keys: number; lost: number; duplicated: number; reordered: number; resets: number } {
  const last = new Map<string, Out>();
  let lost = 0;
  let duplicated = 0;
  let reordered = 0;
  let resets = 0;
  for (const o of out) {
    const prev = last.get(o.key);
    if (prev) {
      if (o.seq === prev.seq) duplicated++;
      else if (o.seq < prev.seq) reordered++;
      else lost += o.seq - prev.seq - 1;
      if (o.count !== prev.count + 1) resets++;
    }
    last.set(o.key, o);
  }
  return { keys: last.size, lost, duplicated, reordered, resets };
}

describe('hostile input: one bad field in one message', () => {
  let nats: StartedNats;
  let nc: NatsConnection;
  let stores: ControlPlaneStores;
  let dir: string;
  const workers: ChildProcess[] = [];
  const out: Out[] = [];
  const deadLetters: DeadLetter[] = [];
  const heartbeats = new Map<string, Heartbeat>();
  const heartbeatCount = new Map<string, number>();
  let biggestHeartbeat = 0;
  const creditSubjects: string[] = [];
  let counter: Assignment[] = [];
  let source: Assignment;

  const ctl = (worker: string, body: object, timeoutMs = 10_000) => call<Record<string, unknown>>(nc, subjects.workerControl(worker), body, timeoutMs);
  const reportsOf = (worker: string, computation: string): InstanceReport[] =>
    (heartbeats.get(worker)?.instances ?? []).filter((i) => i.computation === computation);
  const sum = (rs: InstanceReport[], f: (r: InstanceReport) => number) => rs.reduce((n, r) => n + f(r), 0);

  async function artifact(file: string) {
    const b = await bundleComputation(file);
    if (!(await stores.artifacts.info(b.sha))) await stores.artifacts.putBlob({ name: b.sha }, b.code);
    return b;
  }

  async function publishState(a: Assignment[], workerId: string) {
    const first = a[0]!;
    const rec: ComputationRecord = {
      name: first.computation, version: first.version, sha: first.sha, lang: 'ts', metadata: first.metadata, instances: a.length,
      placements: a.map((x) => ({ index: x.index, instanceId: x.instanceId, workerId })), deployedAt: Date.now(),
    };
    await stores.state.put(`comp.${rec.name}`, encodeJson(rec));
  }

  async function assignments(file: string, count: number): Promise<Assignment[]> {
    const b = await artifact(file);
    const name = b.metadata.name;
    return Array.from({ length: count }, (_, index) => ({
      instanceId: `${name}-${index}-h1`, computation: name, version: 1, sha: b.sha, lang: 'ts' as const, index, count, metadata: b.metadata,
    }));
  }

  /** Waits until output has grown by `n` records, so the topology demonstrably keeps flowing. */
  async function keepsFlowing(n = 500): Promise<void> {
    const from = out.length;
    await waitFor(() => out.length >= from + n, { what: `${n} more output records (have ${out.length - from})`, timeoutMs: 15_000 });
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'topo-hostile-'));
    nats = await startNatsServer({ storeDir: join(dir, 'nats') });
    nc = await connectNats(nats.url, { name: 'hostile-test' });
    stores = await openControlPlane(nc);
    serve(nc, subjects.register, () => ({ heartbeatMs: 250, leaseMs: 5000 }));
    nc.subscribe(subjects.heartbeatAll, {
      callback: (_e, m) => {
        biggestHeartbeat = Math.max(biggestHeartbeat, m.data.length);
        const hb = decodeJson<Heartbeat>(m.data);
        heartbeats.set(hb.workerId, hb);
        heartbeatCount.set(hb.workerId, (heartbeatCount.get(hb.workerId) ?? 0) + 1);
      },
    });
    nc.subscribe(subjects.dataAll('hostile-out'), {
      callback: (_e, m) => {
        for (const r of decodeBatch(m.data).recs) out.push({ key: r[0], ...(r[1] as { seq: number; count: number }) });
      },
    });
    nc.subscribe(subjects.deadLetter('hostile-counter'), { callback: (_e, m) => void deadLetters.push(packr.unpack(m.data) as DeadLetter) });
    nc.subscribe('topo.fc.>', { callback: (_e, m) => void creditSubjects.push(m.subject) });
    for (const id of ['w-a', 'w-b', 'w-c']) {
      workers.push(spawn(process.execPath, [distFile('worker'), '--nats', nats.url, '--id', id, '--data-dir', join(dir, id)], { stdio: 'ignore' }));
    }
    for (const id of ['w-a', 'w-b', 'w-c']) {
      await waitFor(async () => {
        try {
          await ctl(id, { op: 'drain', instanceId: 'none' });
        } catch (e) {
          return (e as Error).name === 'NotFoundError';
        }
        return false;
      }, { what: `worker ${id} answering`, timeoutMs: 20_000 });
    }
    counter = await assignments('test/fixtures/hostile-counter.ts', 2);
    for (const a of counter) await ctl('w-b', { op: 'assign', assignment: a });
    await publishState(counter, 'w-b');
    source = (await assignments('test/fixtures/hostile-source.ts', 1))[0]!;
    await ctl('w-a', { op: 'assign', assignment: source });
    await publishState([source], 'w-a');
    await keepsFlowing(1000);
  }, 90_000);

  afterAll(async () => {
    for (const w of workers) w.kill('SIGKILL');
    await nc?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serve() with a schema answers BAD_REQUEST naming the field and never calls the handler', async () => {
    let calls = 0;
    const sub = serve(nc, 'hostile.rpc', () => (calls++, {}), { schema: schemas.api.swap, what: 'swap request' });
    await expect(call(nc, 'hostile.rpc', { name: 'counter', sha: 'a'.repeat(64), lang: 'ts', metadata: { name: 'counter', istreams: [], ostreams: [] }, canary: -5 }))
      .rejects.toMatchObject({ code: 'BAD_REQUEST', message: 'swap request: canary: must be an integer percentage from 1 to 99, got -5' });
    await expect(call(nc, 'hostile.rpc', [])).rejects.toMatchObject({ code: 'BAD_REQUEST', message: 'swap request must be a JSON object' });
    expect(calls).toBe(0);
    await call(nc, 'hostile.rpc', { name: 'counter', sha: 'a'.repeat(64), lang: 'ts', metadata: { name: 'counter', istreams: [], ostreams: [] } });
    expect(calls).toBe(1);
    sub.unsubscribe();
  });

  it('dead-letters a batch whose src is not a subject-safe id (space, tab, CR, 5000 characters) as malformed, sends it no credit, and keeps flowing', async () => {
    const bad = ['p 1', 'p\t1', 'p\r1', 'p'.repeat(5_000)];
    const before = sum(reportsOf('w-b', 'hostile-counter'), (r) => r.metrics.malformed);
    const inBefore = sum(reportsOf('w-b', 'hostile-counter'), (r) => r.metrics.recordsIn);
    const hbBefore = heartbeatCount.get('w-b') ?? 0;
    for (const src of bad) {
      // Partition 0 is read by instance 0 of 2.
      nc.publish(subjects.data('hostile-in', 0), encodeBatch({ v: 1, src, stream: 'hostile-in', bseq: 1, recs: [['evil', { seq: 1 }, Date.now(), 1]] }));
    }
    await waitFor(() => deadLetters.filter((d) => d.reason === 'malformed batch').length >= bad.length, { what: 'the malformed dead letters' });
    const malformed = deadLetters.filter((d) => d.reason === 'malformed batch');
    expect(malformed).toHaveLength(bad.length);
    for (const d of malformed) {
      expect(d.error).toContain('batch.src must be a subject-safe id');
      expect(d.instanceId).toBe(counter[0]!.instanceId);
    }
    await waitFor(() => sum(reportsOf('w-b', 'hostile-counter'), (r) => r.metrics.malformed) === before + bad.length, { what: 'malformed counted in the heartbeat' });
    await keepsFlowing();
    // No record of the bad batches reached the computation, and no credit went to a bad subject.
    expect(out.filter((o) => o.key === 'evil')).toHaveLength(0);
    expect(creditSubjects.filter((s) => !/^topo\.fc\.[A-Za-z0-9_-]{1,128}$/.test(s))).toEqual([]);
    expect(sum(reportsOf('w-b', 'hostile-counter'), (r) => r.metrics.recordsIn)).toBeGreaterThan(inBefore);
    // The consuming worker kept its connection (it would have lost it over a 5000-character credit subject).
    expect(heartbeatCount.get('w-b')!).toBeGreaterThan(hbBefore);
    expect(auditOutput(out)).toMatchObject({ keys: 20, lost: 0, duplicated: 0, reordered: 0, resets: 0 });
  });

  it('counts and ignores credits with n = NaN, n = -1e9 and garbage, and flow control keeps working', async () => {
    const bad = [packr.pack({ g: 'hostile-counter', n: NaN }), packr.pack({ g: 'hostile-counter', n: -1e9 }), packr.pack({ g: 'hostile-counter', n: 1.5 }), new Uint8Array([0xc1, 0x00])];
    for (const b of bad) nc.publish(subjects.credit(source.instanceId), b);
    await waitFor(() => reportsOf('w-a', 'hostile-source')[0]?.metrics.malformedCredits === bad.length, {
      what: () => `malformedCredits = ${bad.length} (have ${JSON.stringify(reportsOf('w-a', 'hostile-source')[0]?.metrics)})`,
    });
    await keepsFlowing();
    expect(auditOutput(out)).toMatchObject({ keys: 20, lost: 0, duplicated: 0, reordered: 0, resets: 0 });
  });

  it('answers BAD_REQUEST to {"op":"abort"} and {"op":"commit"} without swapId, destroying and un-pausing nothing', async () => {
    const idsBefore = reportsOf('w-b', 'hostile-counter').map((r) => r.instanceId).sort();
    const inBefore = sum(reportsOf('w-b', 'hostile-counter'), (r) => r.metrics.recordsIn);
    await expect(ctl('w-b', { op: 'abort' })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('swapId') });
    await expect(ctl('w-b', { op: 'abort', swapId: '', reason: 'x' })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('swapId') });
    await expect(ctl('w-b', { op: 'nonsense' })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('unknown worker control op') });

    // A paused upstream stays paused through a commit without swapId.
    await ctl('w-a', { op: 'pause', instanceId: source.instanceId, swapId: 'hostile-swap', leaseMs: 20_000 });
    await expect(ctl('w-a', { op: 'commit' })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('swapId') });
    await expect(ctl('w-b', { op: 'commit' })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    const hbCount = heartbeatCount.get('w-a') ?? 0;
    await waitFor(() => (heartbeatCount.get('w-a') ?? 0) >= hbCount + 2, { what: 'two more heartbeats of w-a' });
    expect(reportsOf('w-a', 'hostile-source')[0]?.state).toBe('paused');
    await ctl('w-a', { op: 'resume', instanceId: source.instanceId, swapId: 'hostile-swap' });

    await keepsFlowing();
    // Same instances, counters not reset, nothing lost.
    expect(reportsOf('w-b', 'hostile-counter').map((r) => r.instanceId).sort()).toEqual(idsBefore);
    expect(sum(reportsOf('w-b', 'hostile-counter'), (r) => r.metrics.recordsIn)).toBeGreaterThan(inBefore);
    expect(auditOutput(out)).toMatchObject({ keys: 20, lost: 0, duplicated: 0, reordered: 0, resets: 0 });
  });

  it('keeps sending heartbeats under max_payload when instances fail with a 180 KB key in their error', async () => {
    const big = await assignments('test/fixtures/hostile-big-error.ts', 7);
    for (const a of big) await ctl('w-c', { op: 'assign', assignment: a });
    // 7 instances x a 180 KB lastError would be a 1.26 MB heartbeat: over the server's 1 MiB max_payload.
    nc.publish(subjects.data('hostile-big', 0), encodeBatch({ v: 1, src: 'hostile-test', stream: 'hostile-big', bseq: 1, recs: [['k'.repeat(180_000), 1, Date.now(), 1]] }));
    const maxPayload = nc.info!.max_payload;
    await waitFor(() => {
      const rs = reportsOf('w-c', 'hostile-big');
      return rs.length === 7 && rs.every((r) => r.metrics.errors === 1 && r.lastError !== undefined);
    }, { what: () => `a heartbeat of w-c with 7 failed instances (have ${JSON.stringify(reportsOf('w-c', 'hostile-big').map((r) => r.metrics.errors))})` });
    const count = heartbeatCount.get('w-c')!;
    await waitFor(() => heartbeatCount.get('w-c')! >= count + 3, { what: 'heartbeats of w-c keep coming' });
    for (const r of reportsOf('w-c', 'hostile-big')) {
      expect(r.lastError!.length).toBeLessThanOrEqual(MAX_ERROR_LENGTH);
      expect(r.lastError).toMatch(/^processRecord: cannot handle key kkkk/);
    }
    expect(biggestHeartbeat).toBeLessThan(maxPayload);
    for (const a of big) await ctl('w-c', { op: 'unassign', instanceId: a.instanceId });
  });

  it('skips an invalid comp.* KV entry: a key-grouped consumer deployed afterwards gets every record on the right partition', async () => {
    await stores.state.put('comp.hostile-garbage', encodeJson({ name: 'hostile-garbage' }));
    await stores.state.put('comp.hostile-junk', new TextEncoder().encode('not json {'));
    const keyed = await assignments('test/fixtures/hostile-keyed.ts', 3);
    for (const a of keyed) await ctl('w-b', { op: 'assign', assignment: a });
    await publishState(keyed, 'w-b');
    // Give the source's view time to see the consumer, then look at every batch for a while.
    await new Promise((r) => setTimeout(r, 750));
    let right = 0;
    let wrong = 0;
    const tap = nc.subscribe(subjects.dataAll('hostile-k'), {
      callback: (_e, m) => {
        const p = Number(m.subject.split('.').at(-1));
        for (const r of decodeBatch(m.data).recs) partitionOf(r[0]) === p ? right++ : wrong++;
      },
    });
    await new Promise((r) => setTimeout(r, 1_500));
    tap.unsubscribe();
    expect(right).toBeGreaterThan(1_000);
    expect(wrong).toBe(0);
    await waitFor(() => reportsOf('w-b', 'hostile-keyed').length === 3 && reportsOf('w-b', 'hostile-keyed').every((r) => r.metrics.recordsIn > 0), {
      what: 'every keyed instance gets records',
    });
    await keepsFlowing();
    expect(auditOutput(out)).toMatchObject({ keys: 20, lost: 0, duplicated: 0, reordered: 0, resets: 0 });

    // The controller's store skips the same entries (each reported), and invalid history entries too.
    // (History is read when the store loads: these stand for entries a restarted controller finds.)
    const entry = { name: 'hostile-keyed', version: 1, sha: 'a'.repeat(64), action: 'deploy', at: 1, result: 'ok' };
    await stores.history.put('hostile-keyed.1', encodeJson({ ...entry, error: 'e'.repeat(50_000) }));
    await stores.history.put('hostile-keyed.2', encodeJson({ ...entry, version: 'two' }));
    const invalid: string[] = [];
    const store = new StateStore(stores.state, stores.history, (key) => void invalid.push(key));
    expect((await store.load()).sort()).toEqual(['comp.hostile-garbage', 'comp.hostile-junk']);
    expect(store.all().map((r) => r.name).sort()).toEqual(['hostile-counter', 'hostile-keyed', 'hostile-source']);
    const history = await store.history('hostile-keyed');
    expect(history).toHaveLength(1);
    expect(history[0]!.error!.length).toBeLessThanOrEqual(MAX_ERROR_LENGTH);
    expect(invalid.filter((k) => k.startsWith('hostile-keyed.2'))).toHaveLength(1);
  });
});

describe('producer credit() defends itself', () => {
  function blockedProducer(window: number) {
    const view = new TopologyView();
    const rec = {
      name: 'c', version: 1, sha: 'a'.repeat(64), lang: 'ts', instances: 1, placements: [], deployedAt: 0,
      metadata: { name: 'c', istreams: [{ stream: 's', grouping: 'shuffle' }], ostreams: [] },
    } as ComputationRecord;
    view.apply('c', rec);
    let unblocked = 0;
    const published: string[] = [];
    const nc = { publish: (subject: string) => void published.push(subject) } as unknown as NatsConnection;
    const p = new StreamProducer({ nc, stream: 's', producerId: 'p', view, window, onUnblocked: () => unblocked++, onStallReset: () => {} });
    for (let i = 0; i < 300; i++) p.produce(`k${i}`, i);
    p.flush(true);
    return { p, published, unblocked: () => unblocked };
  }

  it('NaN, negative, fractional and huge credits change nothing; a good credit still unblocks', () => {
    const { p, unblocked } = blockedProducer(100);
    expect(p.isBlocked()).toBe(true);
    for (const n of [NaN, -1e9, -1, 0, 1.5, Infinity, 2 ** 60]) {
      p.credit('c', n);
      expect(p.isBlocked(), `credit ${n}`).toBe(true);
    }
    expect(unblocked()).toBe(0);
    p.credit('c', 250);
    expect(p.isBlocked()).toBe(false);
    expect(unblocked()).toBe(1);
    p.close();
  });
});
