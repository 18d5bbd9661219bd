/**
 * Bounded memory under floods, the parts testable in isolation: the worker
 * table (registrations that never heartbeat expire within one lease, a
 * one-off heartbeat from an unknown id leaves nothing, the number of pending
 * ids is capped, dead workers are forgotten, also when remembered from KV),
 * and the byte caps of the log and dead-letter streams (also brought to an
 * existing stream capped by count only). The end-to-end flood is
 * test/fuzz.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { pino } from 'pino';
import { buckets, jsStreams, subjects, type Heartbeat, type RegisterRequest, type WorkerStatus } from '../protocol/index.js';
import { WorkerTable, MAX_HOST_CHARS } from '../runtime/controller/workerTable.js';
import { openControlPlane, STREAM_LIMITS } from '../runtime/controller/infrastructure.js';
import { startController } from '../runtime/controller/controller.js';
import { connectNats } from '../runtime/transport/connect.js';
import { call, encodeJson } from '../runtime/transport/rpc.js';
import { startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';

const LEASE = 1_000;
const reg = (workerId: string, extra: Partial<RegisterRequest> = {}): RegisterRequest => ({ workerId, host: 'h', pid: 1, lang: 'ts', startedAt: 1, ...extra });
const hb = (workerId: string, at: number, instances: Heartbeat['instances'] = []): Heartbeat => ({ workerId, host: 'h', pid: 1, lang: 'ts', at, instances });
const report = (instanceId: string) => ({
  instanceId, computation: 'c', version: 1, index: 0, count: 1, state: 'running' as const,
  metrics: { recordsIn: 0, recordsOut: 0, errors: 0, deadLetters: 0, malformed: 0 },
});
const ids = (t: WorkerTable) => t.all().map((w) => w.workerId).sort();

describe('the worker table under a flood', () => {
  it('drops a registration that never heartbeats within one lease, silently and without a KV write', () => {
    const t = new WorkerTable(LEASE);
    expect(t.register(reg('fake-1'), 0)).toBe('new');
    expect(t.isAlive('fake-1')).toBe(true); // a real worker heartbeats right after registering: placeable meanwhile
    expect(ids(t)).toEqual([]); // but not listed in status yet
    expect(t.takeMirrorWork(0)).toEqual({ put: [], remove: [] });
    expect(t.expire(LEASE)).toEqual([]);
    expect(t.get('fake-1')).toBeDefined();
    expect(t.expire(LEASE + 1)).toEqual([]); // not "died": it never was a worker
    expect(t.get('fake-1')).toBeUndefined();
    expect(t.size).toEqual({ entries: 0, pending: 0 });
    expect(t.takeMirrorWork(LEASE + 1)).toEqual({ put: [], remove: [] });
  });

  it('makes a registered id a worker on its first heartbeat', () => {
    const t = new WorkerTable(LEASE);
    t.register(reg('w-1'), 0);
    expect(t.heartbeat(hb('w-1', 10, [report('i-1')]), 10)).toBe('seen'); // 'new' was said at register
    expect(ids(t)).toEqual(['w-1']);
    expect(t.get('w-1')!.reported.size).toBe(1);
    expect(t.takeMirrorWork(10).put.map((s) => s.workerId)).toEqual(['w-1']);
    expect(t.expire(LEASE + 11).map((w) => w.workerId)).toEqual(['w-1']); // a real worker dies, visibly
  });

  it('keeps nothing of a one-off heartbeat from an unknown id, and takes a second one as a worker that outlived a controller restart', () => {
    const t = new WorkerTable(LEASE);
    expect(t.heartbeat(hb('ghost', 0, [report('i-1')]), 0)).toBe('seen');
    expect(ids(t)).toEqual([]);
    expect(t.alive('ts')).toEqual([]); // known from one message only: not placeable
    expect(t.get('ghost')!.reported.size).toBe(0);
    t.expire(LEASE + 1);
    expect(t.size).toEqual({ entries: 0, pending: 0 });

    expect(t.heartbeat(hb('w-2', 0), 0)).toBe('seen');
    expect(t.heartbeat(hb('w-2', 500, [report('i-2')]), 500)).toBe('new');
    expect(ids(t)).toEqual(['w-2']);
    expect(t.alive('ts').map((w) => w.workerId)).toEqual(['w-2']);
    expect(t.get('w-2')!.reported.has('i-2')).toBe(true);
  });

  it('caps pending ids: a flood of fresh registrations keeps at most maxPending, and real workers are not affected', () => {
    const t = new WorkerTable(LEASE, 100);
    t.register(reg('real'), 0);
    t.heartbeat(hb('real', 0), 0);
    for (let i = 0; i < 10_000; i++) t.register(reg(`fake-${i}`), 1);
    for (let i = 0; i < 10_000; i++) t.heartbeat(hb(`ghost-${i}`, 1), 1);
    expect(t.size).toEqual({ entries: 101, pending: 100 });
    expect(ids(t)).toEqual(['real']);
    expect(t.isAlive('real')).toBe(true);
    t.heartbeat(hb('real', LEASE), LEASE);
    t.expire(LEASE + 2);
    expect(t.size).toEqual({ entries: 1, pending: 0 });
  });

  it('expires pending ids in lease order even when one registers again', () => {
    const t = new WorkerTable(LEASE);
    t.register(reg('a'), 0);
    t.register(reg('b'), 100);
    expect(t.register(reg('a'), 600)).toBe('seen'); // a's lease starts again at 600
    t.expire(LEASE + 101);
    expect(t.get('b')).toBeUndefined();
    expect(t.get('a')).toBeDefined();
    t.expire(LEASE + 601);
    expect(t.get('a')).toBeUndefined();
  });

  it('cuts attacker-sized host names', () => {
    const t = new WorkerTable(LEASE);
    t.register(reg('w', { host: 'x'.repeat(100_000) }), 0);
    t.heartbeat({ ...hb('w', 1), host: 'y'.repeat(100_000) }, 1);
    expect(t.get('w')!.host.length).toBe(MAX_HOST_CHARS);
  });

  it('forgets dead workers after the bound, also ones remembered from KV with a missing or future lastSeen', () => {
    const t = new WorkerTable(LEASE);
    const now = 1_000_000;
    const status = (workerId: string, lastSeen: unknown, alive = false) => ({ workerId, host: 'h', pid: 1, lang: 'ts', alive, lastSeen, instances: 0 }) as WorkerStatus;
    expect(t.seed(status('old', now - 700_000), now)).toBe(true);
    expect(t.seed(status('nan', Number.NaN), now)).toBe(true);
    expect(t.seed(status('future', now + 10 ** 12), now)).toBe(true);
    expect(t.seed(status('alive', now - 1_000, true), now)).toBe(true);
    expect(t.seed(status('bad id!', now), now)).toBe(false);
    expect(t.seed({ workerId: 'x' } as WorkerStatus, now)).toBe(false);
    expect(ids(t)).toEqual(['alive', 'future', 'nan', 'old']);
    expect(t.forgetDead(now, 600_000).sort()).toEqual(['nan', 'old']);
    expect(t.forgetDead(now + 600_001, 600_000)).toEqual(['future']);
    expect(t.expire(now + 600_001).map((w) => w.workerId)).toEqual(['alive']);
    expect(t.forgetDead(now + 600_002, 600_000)).toEqual(['alive']);
    expect(t.takeMirrorWork(now).remove.sort()).toEqual(['alive', 'future', 'nan', 'old']);
  });
});

describe('streams and the KV mirror on a real nats-server', () => {
  let nats: StartedNats;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'topo-floods-'));
    nats = await startNatsServer({ storeDir: join(dir, 'js') });
  });
  afterAll(async () => {
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('caps the log and dead-letter streams by bytes as well as count, updating a stream capped by count only', async () => {
    const nc = await connectNats(nats.url, { name: 'floods-test' });
    try {
      const jsm = await jetstreamManager(nc);
      // What an older controller created.
      await jsm.streams.add({ name: jsStreams.deadLetters, subjects: [subjects.deadLetterAll], max_msgs: 100_000, storage: 'file', discard: 'old' });
      await openControlPlane(nc);
      const dlq = (await jsm.streams.info(jsStreams.deadLetters)).config;
      expect(dlq.max_bytes).toBe(STREAM_LIMITS.deadLetters.maxBytes);
      expect(dlq.max_msgs).toBe(STREAM_LIMITS.deadLetters.maxMsgs);
      const logs = (await jsm.streams.info(jsStreams.logs)).config;
      expect(logs.max_bytes).toBe(STREAM_LIMITS.logs.maxBytes);
      expect(logs.max_msgs).toBe(STREAM_LIMITS.logs.maxMsgs);
      expect(STREAM_LIMITS.deadLetters.maxBytes).toBeLessThanOrEqual(64 * 1024 * 1024);
    } finally {
      await nc.close();
    }
  });

  it('leaves no JetStream consumer behind per history request (a flood of them made one each, kept 5 minutes)', async () => {
    const nc = await connectNats(nats.url, { name: 'floods-test' });
    const controller = await startController({ natsUrl: nats.url, logger: pino({ level: 'silent' }) });
    try {
      const jsm = await jetstreamManager(nc);
      const consumers = async () => (await jsm.consumers.list(`KV_${buckets.history}`).next()).length;
      const before = await consumers();
      const replies = Array.from({ length: 300 }, (_, i) => call(nc, subjects.api('history'), { name: `fz${i}nosuchname` }, 30_000).catch(() => undefined));
      await Promise.all(replies);
      expect(await consumers()).toBeLessThanOrEqual(before + 4);
    } finally {
      await controller.stop();
      await nc.close();
    }
  });

  it('a controller drops pending ids within a lease, lists no fake worker, and deletes unusable KV mirror entries', async () => {
    const nc = await connectNats(nats.url, { name: 'floods-test' });
    const logs: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void logs.push(s) });
    const kv = await new Kvm(nc).create(buckets.workers, { history: 1 });
    await kv.put('mismatch', JSON.stringify({ workerId: 'other', host: 'h', pid: 1, lang: 'ts', alive: false, lastSeen: Date.now(), instances: 0 }));
    await kv.put('garbage', 'not json');
    await kv.put('old', JSON.stringify({ workerId: 'old', host: 'h', pid: 1, lang: 'ts', alive: false, lastSeen: 1, instances: 0 }));
    const controller = await startController({ natsUrl: nats.url, logger, heartbeatMs: 100, leaseMs: 500, forgetDeadAfterMs: 60_000 });
    try {
      for (let i = 0; i < 2_000; i++) {
        nc.publish(subjects.register, encodeJson(reg(`fake-${i}`)));
        nc.publish(subjects.heartbeat(`ghost-${i}`), encodeJson(hb(`ghost-${i}`, Date.now())));
        nc.publish(subjects.heartbeat(`bad-${i}`), encodeJson({ workerId: 3 }));
      }
      await nc.flush();
      await new Promise((r) => setTimeout(r, 300));
      expect(controller.status().workers.filter((w) => /^(fake|ghost)-/.test(w.workerId))).toEqual([]);
      await new Promise((r) => setTimeout(r, 900));
      expect(controller.status().workers.map((w) => w.workerId)).toEqual([]);
      const keys: string[] = [];
      for await (const k of await kv.keys()) keys.push(k);
      expect(keys).toEqual([]);
      // Bad heartbeats: a few subjects logged once each, the rest summed up, not 2,000 lines.
      expect(logs.filter((l) => l.includes('heartbeat')).length).toBeLessThan(100);
    } finally {
      await controller.stop();
      await nc.close();
    }
  });
});
