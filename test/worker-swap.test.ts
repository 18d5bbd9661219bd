/**
 * The worker's side of a hot swap, driven op by op over real NATS against real
 * worker processes (this test plays the controller): pause leases and fences,
 * release with state hand-over, probation, commit, and rollback on every
 * failure mode, with a checker that sees every record of a sequence-numbered
 * source exactly once and in order per key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';
import { connectNats } from '../runtime/transport/connect.js';
import { call, serve, encodeJson } from '../runtime/transport/rpc.js';
import { openControlPlane, type ControlPlaneStores } from '../runtime/controller/infrastructure.js';
import { bundleComputation } from '../runtime/client/bundle.js';
import { distFile } from '../runtime/client/paths.js';
import { decodeBatch, subjects, type Assignment, type ComputationRecord, type PauseReply, type Probation, type ReleaseReply } from '../protocol/index.js';
import { waitFor } from './harness.js';

const PROBATION: Probation = { records: 20, ms: 300, callbackTimeoutMs: 500 };

interface Out {
  key: string;
  seq: number;
  count: number;
  version: number;
}

describe('worker swap ops', () => {
  let nats: StartedNats;
  let nc: NatsConnection;
  let stores: ControlPlaneStores;
  let dir: string;
  const workers: ChildProcess[] = [];
  const out: Out[] = [];
  let counter: Assignment[] = [];
  let source: Assignment;
  let version = 1;

  const ctl = (worker: string, body: object, timeoutMs = 10_000) => call<Record<string, unknown>>(nc, subjects.workerControl(worker), body, timeoutMs);

  async function artifact(file: string) {
    const b = await bundleComputation(file);
    if (!(await stores.artifacts.info(b.sha))) await stores.artifacts.putBlob({ name: b.sha }, b.code);
    return b;
  }

  async function publishState(a: Assignment[]) {
    const first = a[0]!;
    const rec: ComputationRecord = {
      name: first.computation, version: first.version, sha: first.sha, lang: 'ts', metadata: first.metadata, instances: a.length,
      placements: a.map((x) => ({ index: x.index, instanceId: x.instanceId, workerId: 'w-b' })), deployedAt: Date.now(),
    };
    await stores.state.put(`comp.${rec.name}`, encodeJson(rec));
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'topo-wswap-'));
    nats = await startNatsServer({ storeDir: join(dir, 'nats') });
    nc = await connectNats(nats.url, { name: 'wswap-test' });
    stores = await openControlPlane(nc);
    serve(nc, subjects.register, () => ({ heartbeatMs: 1000, leaseMs: 5000 }));
    for (const id of ['w-a', 'w-b']) {
      workers.push(spawn(process.execPath, [distFile('worker'), '--nats', nats.url, '--id', id, '--data-dir', join(dir, id)], { stdio: 'ignore' }));
    }
    await waitFor(async () => {
      try {
        await ctl('w-a', { op: 'drain', instanceId: 'none' });
      } catch (e) {
        return (e as Error).name === 'NotFoundError';
      }
      return false;
    }, { what: 'worker w-a answering', timeoutMs: 15_000 });

    nc.subscribe(subjects.dataAll('wswap-out'), {
      callback: (_e, m) => {
        for (const r of decodeBatch(m.data).recs) out.push({ key: r[0], ...(r[1] as { seq: number; count: number; version: number }) });
      },
    });
    const v1 = await artifact('test/fixtures/wswap-counter-v1.ts');
    counter = [0, 1].map((index) => ({
      instanceId: `wswap-counter-${index}-v1`, computation: 'wswap-counter', version: 1, sha: v1.sha, lang: 'ts' as const, index, count: 2, metadata: v1.metadata,
    }));
    for (const a of counter) await ctl('w-b', { op: 'assign', assignment: a });
    await publishState(counter);
    const src = await artifact('test/fixtures/wswap-source.ts');
    source = { instanceId: 'wswap-source-0-x', computation: 'wswap-source', version: 1, sha: src.sha, lang: 'ts', index: 0, count: 1, metadata: src.metadata };
    await ctl('w-a', { op: 'assign', assignment: source });
    await waitFor(() => out.length > 200, { what: 'records flowing' });
  }, 60_000);

  afterAll(async () => {
    for (const w of workers) w.kill('SIGKILL');
    await nc?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Swaps both counter instances to `file`; returns the error of a rolled-back swap. */
  async function swap(file: string, failAt?: 'adopt' | 'health'): Promise<{ error?: string; pauseMs: number; fences: PauseReply }> {
    const next = await artifact(file);
    version++;
    const swapId = `wswap-v${version}`;
    await ctl('w-b', { op: 'preload', sha: next.sha, metadata: next.metadata });
    const pausedAt = performance.now();
    const fences = (await ctl('w-a', { op: 'pause', instanceId: source.instanceId, swapId, leaseMs: 5000 })) as unknown as PauseReply;
    const released = await Promise.all(counter.map((a) => ctl('w-b', { op: 'release', instanceId: a.instanceId, swapId, export: 'memory' })));
    for (const r of released) expect((r as unknown as ReleaseReply).keys).toBeGreaterThanOrEqual(0);
    const adopted = counter.map((a) => ({ ...a, instanceId: `wswap-counter-${a.index}-v${version}`, version, sha: next.sha }));
    let error: string | undefined;
    try {
      await Promise.all(adopted.map((a, i) => ctl('w-b', { op: 'adopt', swapId, assignment: a, from: [{ workerId: 'w-b', instanceId: counter[i]!.instanceId }], filterByPartition: false, probation: PROBATION })));
    } catch (e) {
      error = (e as Error).message;
    }
    const resume = () => ctl('w-a', { op: 'resume', instanceId: source.instanceId, swapId });
    if (error) {
      await ctl('w-b', { op: 'abort', swapId, reason: error });
      await resume();
      return { error, pauseMs: performance.now() - pausedAt, fences };
    }
    await resume();
    const pauseMs = performance.now() - pausedAt;
    try {
      await Promise.all(adopted.map((a) => ctl('w-b', { op: 'health', instanceId: a.instanceId, timeoutMs: 5000 })));
    } catch (e) {
      error = (e as Error).message;
      await ctl('w-a', { op: 'pause', instanceId: source.instanceId, swapId, leaseMs: 5000 });
      await ctl('w-b', { op: 'abort', swapId, reason: error });
      await resume();
      return { error, pauseMs, fences };
    }
    await ctl('w-b', { op: 'commit', swapId });
    counter = adopted;
    await publishState(counter);
    void failAt;
    return { pauseMs, fences };
  }

  /** Every (key, seq) exactly once, counts 1..n per key in order: nothing lost, duplicated or reordered. */
  function checkExactlyOnce(settledSeq: number) {
    const byKey = new Map<string, Out[]>();
    for (const o of out) {
      const l = byKey.get(o.key) ?? [];
      l.push(o);
      byKey.set(o.key, l);
    }
    expect(byKey.size).toBe(20);
    for (const [key, list] of byKey) {
      const seqs = list.map((o) => o.seq);
      const upTo = seqs.filter((s) => s <= settledSeq);
      expect(upTo, `seqs of ${key}`).toEqual(Array.from({ length: settledSeq }, (_, i) => i + 1));
      expect(list.map((o) => o.count), `counts of ${key}`).toEqual(Array.from({ length: list.length }, (_, i) => i + 1));
    }
  }

  async function settle(): Promise<number> {
    const maxSeq = Math.max(...out.map((o) => o.seq));
    await waitFor(() => out.filter((o) => o.seq === maxSeq).length === 20 && out.some((o) => o.seq > maxSeq + 5), { what: 'output caught up' });
    return maxSeq;
  }

  it('swaps a key-grouped counter live, state and order intact, and reports fences', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await swap(i % 2 === 0 ? 'test/fixtures/wswap-counter-v2.ts' : 'test/fixtures/wswap-counter-v1.ts');
      expect(r.error).toBeUndefined();
      expect(r.fences.fences['wswap-in']).toBeGreaterThan(0);
      await waitFor(() => out.some((o) => o.version === (i % 2 === 0 ? 2 : 1) && o.count > 5), { what: 'new version producing' });
    }
    checkExactlyOnce(await settle());
  });

  it('rolls back when init throws, losing nothing', async () => {
    const r = await swap('test/fixtures/wswap-counter-init-throws.ts');
    expect(r.error).toMatch(/init of "wswap-counter" v\d+ threw: config missing/);
    checkExactlyOnce(await settle());
  });

  it('rolls back when the new version throws on records, losing nothing', async () => {
    const dlqBefore = out.length;
    const r = await swap('test/fixtures/wswap-counter-throws.ts');
    expect(r.error).toMatch(/processRecord of "wswap-counter" v\d+ threw: cannot count key-/);
    expect(out.length).toBeGreaterThanOrEqual(dlqBefore);
    checkExactlyOnce(await settle());
  });

  it('rolls back when the new version hangs, losing nothing', async () => {
    const r = await swap('test/fixtures/wswap-counter-hangs.ts');
    expect(r.error).toMatch(/hung: processRecord did not return within 500 ms/);
    checkExactlyOnce(await settle());
  });

  it('resumes a paused upstream by itself when its lease expires', async () => {
    const pause = (await ctl('w-a', { op: 'pause', instanceId: source.instanceId, swapId: 'abandoned', leaseMs: 400 })) as unknown as PauseReply;
    // 20 records per tick, producer sequence from 1: the fence is the last tick published.
    const fenceTick = Math.ceil(pause.fences['wswap-in']! / 20);
    await new Promise((r) => setTimeout(r, 250));
    const during = out.length;
    expect(Math.max(...out.map((o) => o.seq))).toBeLessThanOrEqual(fenceTick);
    await waitFor(() => out.length > during + 100, { what: 'output flowing again after the lease', timeoutMs: 5_000 });
    expect(Math.max(...out.map((o) => o.seq))).toBeGreaterThan(fenceTick);
    checkExactlyOnce(await settle());
  });
});
