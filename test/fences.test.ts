/**
 * Fences actually used: a release drains until it has seen what each paused
 * producer published last on the partitions it reads, not just until a round
 * trip to its server (which on a NATS cluster does not prove that another
 * server's messages arrived). This test plays a late route: the fenced
 * records reach the worker only after its release started. Driven op by op
 * over real NATS against a real worker process. Also: how a release exports
 * its snapshot (inline when small, else to the Object Store).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { Objm } from '@nats-io/obj';
import { startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';
import { connectNats } from '../runtime/transport/connect.js';
import { call, serve, encodeJson } from '../runtime/transport/rpc.js';
import { openControlPlane, type ControlPlaneStores } from '../runtime/controller/infrastructure.js';
import { bundleComputation } from '../runtime/client/bundle.js';
import { distFile } from '../runtime/client/paths.js';
import {
  buckets, decodeBatch, encodeBatch, kvKeys, packr, partitionOf, PROTOCOL_VERSION, subjects, type Assignment, type ComputationRecord, type ReleaseReply, type WireRecord,
} from '../protocol/index.js';
import { waitFor } from './harness.js';

describe('release and producer fences', () => {
  let nats: StartedNats;
  let nc: NatsConnection;
  let stores: ControlPlaneStores;
  let dir: string;
  let worker: ChildProcess;
  let sha: string;
  let metadata: Assignment['metadata'];
  let n = 0;

  const ctl = (body: object, timeoutMs = 10_000) => call<Record<string, unknown>>(nc, subjects.workerControl('w-f'), body, timeoutMs);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'topo-fences-'));
    nats = await startNatsServer({ storeDir: join(dir, 'nats') });
    nc = await connectNats(nats.url, { name: 'fences-test' });
    stores = await openControlPlane(nc);
    serve(nc, subjects.register, () => ({ heartbeatMs: 1000, leaseMs: 5000 }));
    worker = spawn(process.execPath, [distFile('worker'), '--nats', nats.url, '--id', 'w-f', '--data-dir', join(dir, 'w-f')], { stdio: 'ignore' });
    await waitFor(async () => {
      try {
        await ctl({ op: 'drain', instanceId: 'none' });
      } catch (e) {
        return (e as Error).name === 'NotFoundError';
      }
      return false;
    }, { what: 'worker w-f answering', timeoutMs: 15_000 });
    const b = await bundleComputation('test/fixtures/wswap-counter-v1.ts');
    await stores.artifacts.putBlob({ name: b.sha }, b.code);
    sha = b.sha;
    metadata = b.metadata;
  }, 60_000);

  afterAll(async () => {
    worker?.kill('SIGKILL');
    await nc?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh counter instance (1 of 1: every partition), in desired state so its producer credit has a group. */
  async function counter(): Promise<Assignment> {
    const a: Assignment = { instanceId: `fence-counter-${++n}`, computation: 'wswap-counter', version: 1, sha, lang: 'ts', index: 0, count: 1, metadata };
    const rec: ComputationRecord = {
      name: a.computation, version: 1, sha, lang: 'ts', metadata, instances: 1, placements: [{ index: 0, instanceId: a.instanceId, workerId: 'w-f' }], deployedAt: Date.now(),
    };
    await stores.state.put(kvKeys.computation(rec.name), encodeJson(rec));
    await ctl({ op: 'assign', assignment: a });
    return a;
  }

  /** Publishes records 1..count of key `key` as producer `src`, on the key's partition, in one batch. */
  function publish(src: string, key: string, count: number): number {
    const p = partitionOf(key);
    const recs: WireRecord[] = Array.from({ length: count }, (_, i) => [key, { seq: i + 1 }, Date.now(), i + 1]);
    nc.publish(subjects.data('wswap-in', p), encodeBatch({ v: PROTOCOL_VERSION, src, stream: 'wswap-in', bseq: 1, recs }));
    return p;
  }

  it('waits for fenced records that arrive after the release started, and drains them', async () => {
    const a = await counter();
    const key = 'late-key';
    const p = partitionOf(key);
    const released = ctl({
      op: 'release', instanceId: a.instanceId, swapId: 'fence-swap-1', export: 'memory', budgetMs: 5_000,
      fences: [{ producer: 'late-producer', stream: 'wswap-in', partitions: { [String(p)]: 50 } }],
    }) as Promise<unknown> as Promise<ReleaseReply>;
    // The late route: the producer's last 50 records reach the worker 400 ms after the release began.
    await new Promise((r) => setTimeout(r, 400));
    publish('late-producer', key, 50);
    await nc.flush();
    const reply = await released;
    expect(reply.fencesMet).toBe(1);
    expect(reply.drained).toBe(50);
    expect(reply.keys).toBe(1);
    await ctl({ op: 'abort', swapId: 'fence-swap-1', reason: 'test done' });
    await ctl({ op: 'unassign', instanceId: a.instanceId });
  });

  it('without the fence, the same late records are not part of the release (what the fence protects against)', async () => {
    const a = await counter();
    const released = ctl({ op: 'release', instanceId: a.instanceId, swapId: 'fence-swap-2', export: 'memory', budgetMs: 5_000 }) as Promise<unknown> as Promise<ReleaseReply>;
    await new Promise((r) => setTimeout(r, 400));
    publish('late-producer-2', 'late-key', 50);
    await nc.flush();
    const reply = await released;
    expect(reply.fencesMet ?? 0).toBe(0);
    expect(reply.drained).toBe(0);
    await ctl({ op: 'abort', swapId: 'fence-swap-2', reason: 'test done' });
    await ctl({ op: 'unassign', instanceId: a.instanceId });
  });

  it('does not wait for a fence published before the instance subscribed (its predecessor consumed it)', async () => {
    const a = await counter();
    const at = Date.now();
    const reply = (await ctl({
      op: 'release', instanceId: a.instanceId, swapId: 'fence-swap-4', export: 'memory', budgetMs: 5_000,
      // Published an hour ago: long before this instance was assigned.
      fences: [{ producer: 'old-producer', stream: 'wswap-in', partitions: { '3': 900 }, agesMs: { '3': 3_600_000 } }],
    })) as unknown as ReleaseReply;
    expect(reply.fencesMet ?? 0).toBe(0);
    expect(Date.now() - at).toBeLessThan(1_000);
    await ctl({ op: 'abort', swapId: 'fence-swap-4', reason: 'test done' });
    await ctl({ op: 'unassign', instanceId: a.instanceId });
  });

  it('hands a small snapshot back inline and puts a big one (over 256 KiB) in the store', async () => {
    const small = await counter();
    publish('snap-producer', 'one-key', 3);
    await waitFor(async () => (await ctl({ op: 'drain', instanceId: small.instanceId })).drained === true, { what: 'small drained' });
    const s = (await ctl({ op: 'release', instanceId: small.instanceId, swapId: 'snap-small', export: 'store', budgetMs: 5_000 })) as unknown as ReleaseReply;
    expect(s.inline).toEqual(expect.any(String));
    const store = await new Objm(nc).create(buckets.snapshots);
    expect(await store.info(`snap-small/${small.instanceId}`)).toBeNull();
    await ctl({ op: 'abort', swapId: 'snap-small', reason: 'test done' });
    await ctl({ op: 'unassign', instanceId: small.instanceId });

    const big = await counter();
    // 24,000 distinct keys: the counter's state packs to well over 256 KiB.
    for (let b = 0; b < 96; b++) {
      const recs: WireRecord[] = Array.from({ length: 250 }, (_, i) => [`a-rather-long-key-name-${b}-${i}`, { seq: 1 }, Date.now(), b * 250 + i + 1]);
      nc.publish(subjects.data('wswap-in', b % 32), encodeBatch({ v: PROTOCOL_VERSION, src: 'snap-producer-2', stream: 'wswap-in', bseq: b + 1, recs }));
    }
    await nc.flush();
    await waitFor(async () => (await ctl({ op: 'drain', instanceId: big.instanceId })).drained === true, { what: 'big drained' });
    const r = (await ctl({ op: 'release', instanceId: big.instanceId, swapId: 'snap-big', export: 'store', budgetMs: 10_000 })) as unknown as ReleaseReply;
    expect(r.keys).toBe(24_000);
    expect(r.bytes).toBeGreaterThan(256 * 1024);
    expect(r.inline).toBeUndefined();
    const os = await new Objm(nc).open(buckets.snapshots);
    expect((await os.getBlob(`snap-big/${big.instanceId}`))?.length).toBe(r.bytes);
    await ctl({ op: 'abort', swapId: 'snap-big', reason: 'test done' });
    await ctl({ op: 'unassign', instanceId: big.instanceId });
  });

  it('refuses a replay of an object that is not the swap\'s hand-back, or not input batches, and an adopt with a garbage inline snapshot', async () => {
    const a = await counter();
    const store = await new Objm(nc).create(buckets.snapshots);
    const from = [{ workerId: 'w-f', instanceId: a.instanceId }];
    await expect(ctl({ op: 'replay', swapId: 'hb-1', handback: 'other-swap/handback/x', from })).rejects.toThrow(/is not one of swap hb-1/);
    await store.putBlob({ name: 'hb-1/handback/garbage' }, new TextEncoder().encode('not msgpack at all \xc1'));
    await expect(ctl({ op: 'replay', swapId: 'hb-1', handback: 'hb-1/handback/garbage', from })).rejects.toThrow(/not msgpack|not a list/);
    await store.putBlob({ name: 'hb-1/handback/map' }, packr.pack({ a: 1 }));
    await expect(ctl({ op: 'replay', swapId: 'hb-1', handback: 'hb-1/handback/map', from })).rejects.toThrow(/not a list of input batches/);
    await store.putBlob({ name: 'hb-1/handback/items' }, packr.pack([{ stream: 'wswap-in' }, 'x', null, { stream: 1, partition: 'p' }]));
    expect(await ctl({ op: 'replay', swapId: 'hb-1', handback: 'hb-1/handback/items', from })).toMatchObject({ replayed: 0 });
    // The instance runs on, unharmed.
    const r = await ctl({ op: 'drain', instanceId: a.instanceId });
    expect(r.drained).toBe(true);
    const garbage = Buffer.from(packr.pack({ state: 'nope', timers: 7 })).toString('base64');
    const adopted = { ...a, instanceId: `${a.instanceId}-x` };
    await expect(ctl({
      op: 'adopt', swapId: 'hb-2', assignment: adopted, from: [{ workerId: 'w-other', instanceId: 'old-1' }], filterByPartition: true,
      probation: { records: 1, ms: 100, callbackTimeoutMs: 500 }, snapshots: [{ instanceId: 'old-1', data: garbage }],
    })).rejects.toThrow();
    await expect(ctl({ op: 'drain', instanceId: adopted.instanceId })).rejects.toThrow(/not on worker/);
    await ctl({ op: 'abort', swapId: 'hb-2', reason: 'test done' });
    await ctl({ op: 'unassign', instanceId: a.instanceId });
  });

  it('gives up within its budget when a fence never arrives, keeping its state, and says which fence', async () => {
    const a = await counter();
    const p = publish('steady-producer', 'steady-key', 10);
    await waitFor(async () => {
      const r = await ctl({ op: 'drain', instanceId: a.instanceId });
      return r.drained === true;
    }, { what: 'the first 10 records processed' });
    const at = Date.now();
    const err = await ctl({
      op: 'release', instanceId: a.instanceId, swapId: 'fence-swap-3', export: 'memory', budgetMs: 800,
      fences: [{ producer: 'steady-producer', stream: 'wswap-in', partitions: { [String(p)]: 20 } }],
    }).then(() => undefined, (e: Error) => e);
    expect(err?.name).toBe('TimeoutError');
    expect(err?.message).toMatch(/1 producer fence\(s\) not seen: steady-producer wswap-in \d+ #20/);
    expect(Date.now() - at).toBeLessThan(3_000);
    // Rolled back, it runs on with its state: the next records of the key count from 11.
    await ctl({ op: 'abort', swapId: 'fence-swap-3', reason: 'test done' });
    const out: number[] = [];
    const sub = nc.subscribe(subjects.dataAll('wswap-out'), {
      callback: (_e, m) => {
        for (const r of decodeBatch(m.data).recs) if (r[0] === 'steady-key') out.push((r[1] as { count: number }).count);
      },
    });
    await nc.flush();
    const recs: WireRecord[] = Array.from({ length: 5 }, (_, i) => ['steady-key', { seq: 11 + i }, Date.now(), 11 + i]);
    nc.publish(subjects.data('wswap-in', p), encodeBatch({ v: PROTOCOL_VERSION, src: 'steady-producer', stream: 'wswap-in', bseq: 2, recs }));
    await waitFor(() => out.length >= 5, { what: 'counts after the rollback' });
    sub.unsubscribe();
    expect(out).toEqual([11, 12, 13, 14, 15]);
  });
});
