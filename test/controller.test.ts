/**
 * Controller tests. Harness: a real nats-server, the controller
 * in-process, and small fake workers that speak the control protocol over
 * real NATS (register, heartbeat, answer assign/unassign).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { pino } from 'pino';
import {
  buckets, subjects,
  type Assignment, type ComputationRecord, type DeployReply, type DeployRequest, type Heartbeat, type InstanceReport,
  type RegisterReply, type StatusReply, type WorkerControl, type WorkerStatus, InitFailedError,
} from '../protocol/index.js';
import { connectNats } from '../runtime/transport/connect.js';
import { startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';
import { call, encodeJson, serve } from '../runtime/transport/rpc.js';
import { startController, type ControllerOptions, type RunningController } from '../runtime/controller/controller.js';
import { chooseWorkers } from '../runtime/controller/placement.js';
import { parseControllerArgs } from '../runtime/controller/args.js';

export const HEARTBEAT_MS = 100;
export const LEASE_MS = 700;

export interface FakeWorkerOptions {
  /** Throw from here to fail an assign (e.g. InitFailedError). */
  onAssign?: (a: Assignment) => void | Promise<void>;
  /** Records in/out added per instance per heartbeat. */
  inPerBeat?: number;
  outPerBeat?: number;
  /** When false the worker accepts assigns but forgets them (reconciliation tests). */
  keepAssigned?: boolean;
}

export class FakeWorker {
  readonly controls: WorkerControl[] = [];
  readonly instances = new Map<string, InstanceReport>();
  /** Extra reports sent in heartbeats although nobody assigned them (stray tests). */
  readonly extraReports: InstanceReport[] = [];
  lease?: RegisterReply;
  private timer?: NodeJS.Timeout;
  private ctl?: { unsubscribe(): void };
  private readonly startedAt = Date.now();

  private constructor(readonly id: string, readonly nc: NatsConnection, private readonly opts: FakeWorkerOptions) {}

  static async start(natsUrl: string, id: string, opts: FakeWorkerOptions = {}): Promise<FakeWorker> {
    const nc = await connectNats(natsUrl, { name: `fake-worker ${id}` });
    const w = new FakeWorker(id, nc, opts);
    w.ctl = serve<WorkerControl, object>(nc, subjects.workerControl(id), (ctl) => w.handle(ctl));
    await nc.flush();
    w.lease = await call<RegisterReply>(nc, subjects.register, { workerId: id, host: 'test', pid: process.pid, lang: 'ts', startedAt: w.startedAt });
    w.beat();
    w.timer = setInterval(() => w.beat(), HEARTBEAT_MS);
    return w;
  }

  assigns(): Assignment[] {
    return this.controls.flatMap((c) => (c.op === 'assign' ? [c.assignment] : []));
  }
  unassigns(): string[] {
    return this.controls.flatMap((c) => (c.op === 'unassign' ? [c.instanceId] : []));
  }

  private async handle(ctl: WorkerControl): Promise<object> {
    this.controls.push(ctl);
    if (ctl.op === 'assign') {
      await this.opts.onAssign?.(ctl.assignment);
      const a = ctl.assignment;
      if (this.opts.keepAssigned !== false) {
        this.instances.set(a.instanceId, {
          instanceId: a.instanceId, computation: a.computation, version: a.version, index: a.index, count: a.count,
          state: 'running', metrics: { recordsIn: 0, recordsOut: 0, errors: 0, deadLetters: 0, malformed: 0 },
        });
      }
    } else if (ctl.op === 'unassign') {
      this.instances.delete(ctl.instanceId);
    }
    return {};
  }

  beat(): void {
    for (const r of this.instances.values()) {
      r.metrics.recordsIn += this.opts.inPerBeat ?? 0;
      r.metrics.recordsOut += this.opts.outPerBeat ?? 0;
    }
    const hb: Heartbeat = {
      workerId: this.id, host: 'test', pid: process.pid, lang: 'ts', at: Date.now(),
      instances: [...this.instances.values(), ...this.extraReports],
    };
    this.nc.publish(subjects.heartbeat(this.id), encodeJson(hb));
  }

  /** Simulates a network partition or a stall: alive, but silent. */
  pauseHeartbeats(): void {
    clearInterval(this.timer);
  }
  resumeHeartbeats(): void {
    this.beat();
    this.timer = setInterval(() => this.beat(), HEARTBEAT_MS);
  }

  /** Simulates a crash: no more heartbeats, no answers. */
  async crash(): Promise<void> {
    clearInterval(this.timer);
    this.ctl?.unsubscribe();
    await this.nc.close();
  }

  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    await this.crash();
  }
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface Harness {
  nats: StartedNats;
  controller: RunningController;
  client: NatsConnection;
  state: KV;
  history: KV;
  logs: LogLine[];
  workers: FakeWorker[];
  addWorker(id: string, opts?: FakeWorkerOptions): Promise<FakeWorker>;
  /** Stores bytes in the artifact store and returns their sha256 hex. */
  upload(content: string): Promise<string>;
  deploy(req: Partial<DeployRequest> & { sha: string }, instances?: number): Promise<DeployReply>;
  record(name: string): Promise<ComputationRecord | null>;
  restartController(extra?: Partial<ControllerOptions>): Promise<void>;
  close(): Promise<void>;
}

export function sha256(content: string): string {
  return createHash('sha256').update(content).digest('hex');
}

export function metadataOf(name: string) {
  return { name, istreams: [{ stream: 'words', grouping: 'shuffle' as const }], ostreams: ['counts'] };
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function startHarness(extra: Partial<ControllerOptions> = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'topo-controller-test-'));
  const nats = await startNatsServer({ storeDir: join(dir, 'js') });
  const logs: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  const opts: ControllerOptions = { natsUrl: nats.url, logger, heartbeatMs: HEARTBEAT_MS, leaseMs: LEASE_MS, ...extra };
  const controller = await startController(opts);
  const client = await connectNats(nats.url, { name: 'controller-test client' });
  const kvm = new Kvm(client);
  const h: Harness = {
    nats, controller, client, logs, workers: [],
    state: await kvm.open(buckets.state),
    history: await kvm.open(buckets.history),
    async addWorker(id, wopts) {
      const w = await FakeWorker.start(nats.url, id, wopts);
      h.workers.push(w);
      return w;
    },
    async upload(content) {
      const sha = sha256(content);
      const os = await new Objm(client).open(buckets.artifacts);
      await os.putBlob({ name: sha }, new TextEncoder().encode(content));
      return sha;
    },
    deploy(req, instances) {
      const body: DeployRequest = { lang: 'ts', metadata: metadataOf('counter'), ...req, ...(instances !== undefined ? { instances } : {}) };
      return call<DeployReply>(client, subjects.api('deploy'), body, 30_000);
    },
    async record(name) {
      const e = await h.state.get(`comp.${name}`);
      return e && e.operation === 'PUT' ? e.json<ComputationRecord>() : null;
    },
    async restartController(more = {}) {
      await h.controller.stop();
      h.controller = await startController({ ...opts, ...more });
    },
    async close() {
      for (const w of h.workers) await w.close().catch(() => {});
      await h.controller.stop();
      await client.close();
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

// ---------------------------------------------------------------------------

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

describe('deploy', () => {
  it('places instances across two workers, least loaded first, and writes KV and history', async () => {
    const a = await h.addWorker('wa');
    const b = await h.addWorker('wb');
    expect(a.lease).toMatchObject({ heartbeatMs: HEARTBEAT_MS, leaseMs: LEASE_MS });
    const sha = await h.upload('export default 1');

    const reply = await h.deploy({ sha, source: 'counter.ts' }, 4);
    const rec = reply.computation;
    expect(rec.version).toBe(1);
    expect(rec.placements.map((p) => p.index).sort()).toEqual([0, 1, 2, 3]);
    const perWorker = (id: string) => rec.placements.filter((p) => p.workerId === id).length;
    expect(perWorker('wa')).toBe(2);
    expect(perWorker('wb')).toBe(2);
    for (const p of rec.placements) expect(p.instanceId).toMatch(new RegExp(`^counter-${p.index}-[0-9a-f]{6}$`));

    // Each worker was asked for exactly the instances the record puts on it.
    for (const w of [a, b]) {
      const mine = rec.placements.filter((p) => p.workerId === w.id).map((p) => p.instanceId).sort();
      expect(w.assigns().map((x) => x.instanceId).sort()).toEqual(mine);
      for (const x of w.assigns()) {
        expect(x).toMatchObject({ computation: 'counter', version: 1, sha, lang: 'ts', count: 4, metadata: metadataOf('counter') });
      }
    }
    expect(await h.record('counter')).toEqual(rec);
    const hist = (await h.history.get('counter.1'))!.json<Record<string, unknown>>();
    expect(hist).toMatchObject({ name: 'counter', version: 1, sha, source: 'counter.ts', action: 'deploy', result: 'ok' });

    // A second computation goes to the less loaded worker first.
    await b.close();
    const c = await h.addWorker('wc');
    const sha2 = await h.upload('export default 2');
    const reply2 = await h.deploy({ sha: sha2, metadata: metadataOf('other') }, 1);
    expect(reply2.computation.placements[0]!.workerId).toBe(c.id);
  });

  it('rejects an artifact that is not in the object store, leaving KV untouched', async () => {
    const w = await h.addWorker('wa');
    const missing = sha256('never uploaded');
    await expect(h.deploy({ sha: missing })).rejects.toMatchObject({ name: 'NotFoundError', code: 'NOT_FOUND', message: expect.stringContaining(missing) });
    await expect(h.deploy({ sha: 'abc' })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('sha') });
    await expect(h.deploy({ sha: missing, metadata: { name: 'x', istreams: [], ostreams: ['bad name'] } })).rejects.toMatchObject({
      code: 'INVALID_METADATA',
      message: expect.stringContaining('ostreams[0]'),
    });
    const sha = await h.upload('export default 1');
    await expect(h.deploy({ sha }, 0)).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('instances') });
    expect(await h.record('counter')).toBeNull();
    expect(w.assigns()).toEqual([]);
  });

  it('fails with the worker\'s InitFailedError, unassigns the instance that started, and leaves KV untouched', async () => {
    const good = await h.addWorker('wa');
    const bad = await h.addWorker('wb', {
      onAssign: (a) => {
        throw new InitFailedError(`init of "${a.computation}" failed: database unreachable`);
      },
    });
    const sha = await h.upload('export default 1');
    const err = await h.deploy({ sha }, 2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InitFailedError);
    expect((err as Error).message).toBe('init of "counter" failed: database unreachable');
    expect(bad.assigns()).toHaveLength(1);
    expect(good.assigns()).toHaveLength(1);
    expect(good.unassigns()).toEqual([good.assigns()[0]!.instanceId]);
    expect(good.instances.size).toBe(0);
    expect(await h.record('counter')).toBeNull();
    const hist = (await h.history.get('counter.1'))!.json<Record<string, unknown>>();
    expect(hist).toMatchObject({ action: 'deploy', result: 'failed', error: 'init of "counter" failed: database unreachable' });
  });

  it('refuses a duplicate name with ConflictError and gives a re-deploy after kill a new version', async () => {
    await h.addWorker('wa');
    const sha = await h.upload('export default 1');
    await h.deploy({ sha });
    await expect(h.deploy({ sha })).rejects.toMatchObject({
      code: 'CONFLICT',
      message: 'computation "counter" is already deployed (version 1); kill it first',
    });
    await call(h.client, subjects.api('kill'), { name: 'counter' });
    const again = await h.deploy({ sha });
    expect(again.computation.version).toBe(2);
  });

  it('answers NoWorkersError when no worker of the language is alive', async () => {
    const sha = await h.upload('export default 1');
    await expect(h.deploy({ sha })).rejects.toMatchObject({ code: 'NO_WORKERS' });
    await h.addWorker('wa');
    await expect(h.deploy({ sha, lang: 'python' })).rejects.toMatchObject({ code: 'NO_WORKERS', message: expect.stringContaining('python') });
    expect(await h.record('counter')).toBeNull();
  });
});

describe('kill', () => {
  it('deletes the KV record, unassigns every instance and records history', async () => {
    const a = await h.addWorker('wa');
    const b = await h.addWorker('wb');
    const sha = await h.upload('export default 1');
    const { computation } = await h.deploy({ sha }, 2);
    const reply = await call<{ name: string; version: number }>(h.client, subjects.api('kill'), { name: 'counter' });
    expect(reply).toMatchObject({ name: 'counter', version: computation.version });
    expect(await h.record('counter')).toBeNull();
    const unassigned = [...a.unassigns(), ...b.unassigns()].sort();
    expect(unassigned).toEqual(computation.placements.map((p) => p.instanceId).sort());
    const hist = (await h.history.get('counter.1'))!.json<Record<string, unknown>>();
    expect(hist).toMatchObject({ action: 'kill', result: 'ok' });
    await expect(call(h.client, subjects.api('kill'), { name: 'counter' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('leases and re-placement', () => {
  it('re-places the instances of a worker that stops heartbeating on a live worker within about a lease', async () => {
    const a = await h.addWorker('wa');
    const b = await h.addWorker('wb');
    const sha = await h.upload('export default 1');
    const { computation } = await h.deploy({ sha }, 2);
    const lost = computation.placements.find((p) => p.workerId === b.id)!;

    const crashedAt = Date.now();
    await b.crash();
    const rec = await waitFor('placements to leave the dead worker', async () => {
      const r = await h.record('counter');
      return r && r.placements.every((p) => p.workerId === a.id) ? r : undefined;
    }, LEASE_MS * 4);
    expect(Date.now() - crashedAt).toBeLessThan(LEASE_MS * 3);
    const moved = rec.placements.find((p) => p.index === lost.index)!;
    expect(moved.instanceId).not.toBe(lost.instanceId);
    expect(a.assigns().map((x) => x.instanceId)).toContain(moved.instanceId);
    expect(h.logs.some((l) => /worker wb missed its lease/.test(l.msg))).toBe(true);
    expect(h.logs.some((l) => l.msg.includes(`re-placed instance ${lost.index} of "counter"`))).toBe(true);
    const st = h.controller.status();
    expect(st.workers.find((w) => w.workerId === 'wb')?.alive).toBe(false);
  });

  it('unassigns the stale copy when a worker declared dead comes back', async () => {
    const a = await h.addWorker('wa');
    const b = await h.addWorker('wb');
    const sha = await h.upload('export default 1');
    const { computation } = await h.deploy({ sha }, 2);
    const stale = computation.placements.find((p) => p.workerId === b.id)!;
    b.pauseHeartbeats();
    await waitFor('re-placement on wa', async () => (await h.record('counter'))?.placements.every((p) => p.workerId === a.id), LEASE_MS * 4);
    b.resumeHeartbeats();
    await waitFor('unassign of the stale copy on wb', () => b.unassigns().includes(stale.instanceId), 3_000);
    expect(h.logs.some((l) => l.msg.includes('worker wb') && l.msg.includes('is back'))).toBe(true);
    expect(a.unassigns()).toEqual([]);
    expect(h.controller.status().workers.find((w) => w.workerId === 'wb')?.alive).toBe(true);
  });

  it('keeps instances pending while no worker is alive and places them when one registers', async () => {
    const a = await h.addWorker('wa');
    const sha = await h.upload('export default 1');
    await h.deploy({ sha }, 2);
    await a.crash();
    await waitFor('the lease of wa to expire', () => h.logs.some((l) => /no live ts worker: 2 instance\(s\) of "counter" wait/.test(l.msg)), LEASE_MS * 4);
    const pending = await h.record('counter');
    expect(pending?.placements.every((p) => p.workerId === 'wa')).toBe(true);
    const starting = h.controller.status().computations[0]!.instances;
    expect(starting.map((i) => i.state)).toEqual(['starting', 'starting']);
    expect(starting[0]!.lastError).toContain('not alive');

    const c = await h.addWorker('wc');
    const rec = await waitFor('placement on wc', async () => {
      const r = await h.record('counter');
      return r && r.placements.every((p) => p.workerId === c.id) ? r : undefined;
    });
    expect(c.assigns().map((x) => x.index).sort()).toEqual([0, 1]);
    expect(rec.placements.map((p) => p.instanceId).sort()).toEqual(c.assigns().map((x) => x.instanceId).sort());
  });

  it('assigns again what a live worker does not report and unassigns what it should not run', async () => {
    const forgetful = await h.addWorker('wa', { keepAssigned: false });
    const sha = await h.upload('export default 1');
    const { computation } = await h.deploy({ sha }, 1);
    const id = computation.placements[0]!.instanceId;
    // While missing from heartbeats the instance shows as starting.
    expect(h.controller.status().computations[0]!.instances[0]!.state).toBe('starting');
    await waitFor('a second assign of the same instance', () => forgetful.assigns().filter((x) => x.instanceId === id).length >= 2, 3_000);
    expect(h.logs.some((l) => l.msg.includes(`does not run instance 0 of "counter" (${id})`))).toBe(true);

    forgetful.extraReports.push({
      instanceId: 'ghost-0-abcdef', computation: 'ghost', version: 7, index: 0, count: 1, state: 'running',
      metrics: { recordsIn: 0, recordsOut: 0, errors: 0, deadLetters: 0, malformed: 0 },
    });
    await waitFor('unassign of the stray instance', () => forgetful.unassigns().includes('ghost-0-abcdef'), 3_000);
    expect(forgetful.unassigns()).not.toContain(id);
  });

  it('keeps desired state across a controller restart without moving anything', async () => {
    const a = await h.addWorker('wa');
    const sha = await h.upload('export default 1');
    const { computation } = await h.deploy({ sha }, 2);
    await h.restartController();
    await new Promise((r) => setTimeout(r, LEASE_MS * 2));
    expect(await h.record('counter')).toEqual(computation);
    expect(a.assigns()).toHaveLength(2);
    expect(a.unassigns()).toEqual([]);
    const st = h.controller.status();
    expect(st.computations.map((c) => c.name)).toEqual(['counter']);
    expect(st.workers.find((w) => w.workerId === 'wa')?.alive).toBe(true);
  });
});

describe('status', () => {
  it('reports workers, instance states and per-second rates from successive heartbeats', async () => {
    const inPerBeat = 30;
    const outPerBeat = 10;
    await h.addWorker('wa', { inPerBeat, outPerBeat });
    await h.addWorker('wb', { inPerBeat, outPerBeat });
    const sha = await h.upload('export default 1');
    await h.deploy({ sha }, 2);
    const expectedIn = inPerBeat / (HEARTBEAT_MS / 1000);
    const st = await waitFor('rates in status', async () => {
      const s = await call<StatusReply>(h.client, subjects.api('status'), {});
      const c = s.computations[0];
      return c && c.instances.every((i) => i.inPerSec > 0) ? s : undefined;
    });
    expect(st.natsUrl).toBe(h.nats.url);
    expect(st.workers.map((w) => [w.workerId, w.alive, w.instances])).toEqual([['wa', true, 1], ['wb', true, 1]]);
    const c = st.computations[0]!;
    expect(c).toMatchObject({ name: 'counter', version: 1, sha, lang: 'ts', istreams: metadataOf('counter').istreams, ostreams: ['counts'] });
    expect(c.instances.map((i) => [i.index, i.state])).toEqual([[0, 'running'], [1, 'running']]);
    // Timer jitter moves heartbeat timestamps, so allow a wide band around the configured rate.
    for (const i of c.instances) {
      expect(i.inPerSec).toBeGreaterThan(expectedIn * 0.4);
      expect(i.inPerSec).toBeLessThan(expectedIn * 2.5);
      expect(i.outPerSec / i.inPerSec).toBeCloseTo(outPerBeat / inPerBeat, 5);
    }
    expect(c.inPerSec).toBeCloseTo(c.instances[0]!.inPerSec + c.instances[1]!.inPerSec, 5);

    const { workers } = await call<{ workers: WorkerStatus[] }>(h.client, subjects.api('workers'), {});
    expect(workers.map((w) => w.workerId)).toEqual(['wa', 'wb']);
    const mirrored = await waitFor('worker lease mirrored to KV', async () => {
      const kv = await new Kvm(h.client).open(buckets.workers);
      const e = await kv.get('wa');
      return e?.operation === 'PUT' ? e.json<WorkerStatus>() : undefined;
    });
    expect(mirrored).toMatchObject({ workerId: 'wa', lang: 'ts', alive: true });
  });
});

describe('units', () => {
  it('chooseWorkers spreads a computation first, then prefers the least loaded worker', () => {
    expect(chooseWorkers({ candidates: ['a', 'b'], load: new Map([['a', 5]]), count: 3 })).toEqual(['b', 'a', 'b']);
    expect(chooseWorkers({ candidates: ['a', 'b', 'c'], load: new Map(), sameComputation: new Map([['a', 1], ['b', 1]]), count: 1 })).toEqual(['c']);
    expect(chooseWorkers({ candidates: [], load: new Map(), count: 2 })).toEqual([]);
  });

  it('chooseWorkers spreads a computation over hosts before workers', () => {
    // a1 and a2 on host A, b1 on host B: two instances go to both hosts, not to the two workers of A.
    const hostOf = (w: string) => w[0]!.toUpperCase();
    expect(chooseWorkers({ candidates: ['a1', 'a2', 'b1'], load: new Map(), count: 2, hostOf })).toEqual(['a1', 'b1']);
    // Four: two per host, the second on A on its other worker.
    expect(chooseWorkers({ candidates: ['a1', 'a2', 'b1'], load: new Map(), count: 4, hostOf })).toEqual(['a1', 'b1', 'a2', 'b1']);
    // Without hosts (all on one), as before: per worker.
    expect(chooseWorkers({ candidates: ['a1', 'a2', 'b1'], load: new Map(), count: 3 })).toEqual(['a1', 'a2', 'b1']);
  });

  it('parseControllerArgs takes --nats or TOPO_NATS_URL and names what is missing', () => {
    expect(parseControllerArgs(['--nats', 'nats://x:1'], {})).toEqual({ natsUrl: 'nats://x:1' });
    expect(parseControllerArgs(['--nats=nats://y:2'], { TOPO_NATS_URL: 'nats://z:3' })).toEqual({ natsUrl: 'nats://y:2' });
    expect(parseControllerArgs([], { TOPO_NATS_URL: 'nats://z:3' })).toEqual({ natsUrl: 'nats://z:3' });
    expect(() => parseControllerArgs([], {})).toThrow(/--nats URL or set TOPO_NATS_URL/);
    expect(() => parseControllerArgs(['--nats'], {})).toThrow(/needs a URL/);
    expect(() => parseControllerArgs(['--bogus'], {})).toThrow(/unknown argument "--bogus"/);
  });
});
