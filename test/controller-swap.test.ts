/**
 * Live swap orchestration in the controller: a real nats-server, the
 * controller in-process, and fake workers that implement the swap ops
 * minimally (they record every control request in one shared log and answer
 * per script), so the order of steps, the leases and the KV/history results
 * can be checked exactly.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { pino } from 'pino';
import {
  buckets, subjects, partitionsOwnedBy, InitFailedError, TopoError,
  type ComputationRecord, type DeployReply, type Heartbeat, type HistoryEntry, type HistoryReply, type InstanceReport, type Lang,
  type NormalizedMetadata, type SwapReply, type SwapRequest, type WorkerControl,
} from '../protocol/index.js';
import { connectNats } from '../runtime/transport/connect.js';
import { startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';
import { call, encodeJson, serve } from '../runtime/transport/rpc.js';
import { startController, type ControllerOptions, type RunningController } from '../runtime/controller/controller.js';
import { isMalformed } from '../runtime/client/client.js';
import { startCluster, type Cluster } from './harness.js';
import { COUNTS, KEYS } from './fixtures/swap-ctl-lib.js';

const HEARTBEAT_MS = 100;
const LEASE_MS = 700;
const PAUSE_LEASE_MS = 3_000;

interface Event {
  worker: string;
  ctl: WorkerControl;
  at: number;
}

/** Throw to fail the op (the error goes back to the controller), await to delay it. */
type Script = (ctl: WorkerControl) => void | Promise<void>;

/** A worker that speaks the control protocol, swap ops included, and keeps instance reports like a real one. */
class SwapFakeWorker {
  readonly instances = new Map<string, InstanceReport & { swapId?: string }>();
  private timer?: NodeJS.Timeout;
  private ctl?: { unsubscribe(): void };
  script: Script | undefined;

  private constructor(readonly id: string, readonly nc: NatsConnection, private readonly events: Event[], private readonly lang: Lang) {}

  static async start(natsUrl: string, id: string, events: Event[], lang: Lang = 'ts'): Promise<SwapFakeWorker> {
    const nc = await connectNats(natsUrl, { name: `swap-fake-worker ${id}` });
    const w = new SwapFakeWorker(id, nc, events, lang);
    w.ctl = serve<WorkerControl, object>(nc, subjects.workerControl(id), (ctl) => w.handle(ctl));
    await nc.flush();
    await call(nc, subjects.register, { workerId: id, host: 'test', pid: process.pid, lang, startedAt: Date.now() });
    w.beat();
    w.timer = setInterval(() => w.beat(), HEARTBEAT_MS);
    return w;
  }

  private report(instanceId: string, a: { computation: string; version: number; index: number; count: number }, state: InstanceReport['state'], swapId?: string) {
    this.instances.set(instanceId, {
      instanceId, computation: a.computation, version: a.version, index: a.index, count: a.count, state,
      metrics: { recordsIn: 0, recordsOut: 0, errors: 0, deadLetters: 0, malformed: 0 }, ...(swapId ? { swapId } : {}),
    });
  }

  private async handle(ctl: WorkerControl): Promise<object> {
    this.events.push({ worker: this.id, ctl, at: Date.now() });
    await this.script?.(ctl);
    switch (ctl.op) {
      case 'assign':
        this.report(ctl.assignment.instanceId, ctl.assignment, 'running');
        return {};
      case 'unassign':
        this.instances.delete(ctl.instanceId);
        return {};
      case 'preload':
        return { loadMs: 7 };
      case 'pause':
        return { producer: ctl.instanceId, fences: Object.fromEntries((ctl.streams ?? []).map((s) => [s, 0])) };
      case 'release': {
        const r = this.instances.get(ctl.instanceId);
        if (!r) throw new TopoError(`no instance ${ctl.instanceId} here`);
        r.state = 'standby';
        r.swapId = ctl.swapId;
        return { keys: 3, timers: 1, bytes: 64, drained: 2 };
      }
      case 'adopt':
        this.report(ctl.assignment.instanceId, ctl.assignment, 'probation', ctl.swapId);
        return {};
      case 'health':
        return { processed: 5, ms: 40 };
      case 'renew':
        return { renewed: true };
      case 'commit':
        for (const [id, r] of this.instances) {
          if (r.swapId !== ctl.swapId) continue;
          if (r.state === 'standby') this.instances.delete(id);
          else r.state = 'running';
          delete r.swapId;
        }
        return {};
      case 'abort':
        for (const [id, r] of this.instances) {
          if (r.swapId !== ctl.swapId) continue;
          if (r.state === 'probation') this.instances.delete(id);
          else r.state = 'running';
          delete r.swapId;
        }
        return {};
      default:
        return {};
    }
  }

  beat(): void {
    const hb: Heartbeat = {
      workerId: this.id, host: 'test', pid: process.pid, lang: this.lang, at: Date.now(),
      instances: [...this.instances.values()].map(({ swapId: _s, ...r }) => r),
    };
    this.nc.publish(subjects.heartbeat(this.id), encodeJson(hb));
  }

  async crash(): Promise<void> {
    clearInterval(this.timer);
    this.ctl?.unsubscribe();
    if (!this.nc.isClosed()) await this.nc.close();
  }
}

interface Harness {
  nats: StartedNats;
  controller: RunningController;
  client: NatsConnection;
  state: KV;
  events: Event[];
  workers: SwapFakeWorker[];
  addWorker(id: string, lang?: Lang): Promise<SwapFakeWorker>;
  upload(content: string): Promise<string>;
  deploy(metadata: NormalizedMetadata, sha: string, instances: number, lang?: Lang): Promise<ComputationRecord>;
  swap(req: Partial<SwapRequest> & { sha: string }): Promise<SwapReply>;
  record(name: string): Promise<ComputationRecord | null>;
  history(name: string): Promise<HistoryEntry[]>;
  restartController(): Promise<void>;
  close(): Promise<void>;
}

const sha256 = (content: string): string => createHash('sha256').update(content).digest('hex');

const SOURCE: NormalizedMetadata = { name: 'source', istreams: [], ostreams: ['words'] };
const COUNTER: NormalizedMetadata = { name: 'counter', istreams: [{ stream: 'words', grouping: 'key' }], ostreams: ['counts'] };
const SINK: NormalizedMetadata = { name: 'sink', istreams: [{ stream: 'counts', grouping: 'shuffle' }], ostreams: [] };
const LETTERS: NormalizedMetadata = { name: 'letters', istreams: [], ostreams: ['letters'] };

async function startHarness(extra: Partial<ControllerOptions> = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'topo-swap-test-'));
  const nats = await startNatsServer({ storeDir: join(dir, 'js') });
  const logger = pino({ level: 'silent' });
  const opts: ControllerOptions = {
    natsUrl: nats.url, logger, heartbeatMs: HEARTBEAT_MS, leaseMs: LEASE_MS,
    swapStepTimeoutMs: 1_000, pauseLeaseMs: PAUSE_LEASE_MS, pauseRenewMs: 1_000, ...extra,
  };
  const controller = await startController(opts);
  const client = await connectNats(nats.url, { name: 'swap-test client' });
  const kvm = new Kvm(client);
  const events: Event[] = [];
  const h: Harness = {
    nats, controller, client, events, workers: [],
    state: await kvm.open(buckets.state),
    async addWorker(id, lang) {
      const w = await SwapFakeWorker.start(nats.url, id, events, lang);
      h.workers.push(w);
      return w;
    },
    async upload(content) {
      const sha = sha256(content);
      const os = await new Objm(client).open(buckets.artifacts);
      await os.putBlob({ name: sha }, new TextEncoder().encode(content));
      return sha;
    },
    async deploy(metadata, sha, instances, lang = 'ts') {
      const r = await call<DeployReply>(client, subjects.api('deploy'), { sha, lang, metadata, instances, source: `${metadata.name}.ts` }, 10_000);
      return r.computation;
    },
    swap(req) {
      return call<SwapReply>(client, subjects.api('swap'), { name: 'counter', lang: 'ts', metadata: COUNTER, ...req }, 20_000);
    },
    async record(name) {
      const e = await h.state.get(`comp.${name}`);
      return e && e.operation === 'PUT' ? e.json<ComputationRecord>() : null;
    },
    async history(name) {
      return (await call<HistoryReply>(client, subjects.api('history'), { name })).entries;
    },
    async restartController() {
      await h.controller.stop();
      h.controller = await startController(opts);
    },
    async close() {
      for (const w of h.workers) await w.crash().catch(() => {});
      await h.controller.stop();
      await client.close();
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

/** Index of the first (or last) event matching, -1 if none. */
function first(events: Event[], op: WorkerControl['op'], pred: (e: Event) => boolean = () => true): number {
  return events.findIndex((e) => e.ctl.op === op && pred(e));
}
function last(events: Event[], op: WorkerControl['op'], pred: (e: Event) => boolean = () => true): number {
  return events.findLastIndex((e) => e.ctl.op === op && pred(e));
}
const ops = <K extends WorkerControl['op']>(events: Event[], op: K) =>
  events.filter((e) => e.ctl.op === op).map((e) => ({ worker: e.worker, ...(e.ctl as Extract<WorkerControl, { op: K }>) }));

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

async function rejection(p: Promise<unknown>): Promise<TopoError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(TopoError);
  return err as TopoError;
}

/** source (on wa) -> words -> counter (2 instances, key grouping, wa+wb) -> counts -> sink (wb). */
async function topology(h: Harness): Promise<{ wa: SwapFakeWorker; wb: SwapFakeWorker; counter: ComputationRecord; source: ComputationRecord; sha1: string }> {
  const wa = await h.addWorker('wa');
  const wb = await h.addWorker('wb');
  const source = await h.deploy(SOURCE, await h.upload('source v1'), 1);
  const sha1 = await h.upload('counter v1');
  const counter = await h.deploy(COUNTER, sha1, 2);
  await h.deploy(SINK, await h.upload('sink v1'), 1);
  await h.controller.idle();
  h.events.length = 0;
  return { wa, wb, counter, source, sha1 };
}

let h: Harness;
const freshHarness = (): void => {
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });
};

describe('swap', () => {
  freshHarness();

  it('dry run reports streams gained and lost and the computations affected, and changes nothing', async () => {
    const { counter } = await topology(h);
    await h.deploy(LETTERS, await h.upload('letters v1'), 1);
    h.events.length = 0;
    const sha2 = await h.upload('counter v2');
    const next: NormalizedMetadata = {
      name: 'counter',
      istreams: [{ stream: 'words', grouping: 'shuffle' }, { stream: 'letters', grouping: 'key' }],
      ostreams: ['totals'],
    };
    const reply = await h.swap({ sha: sha2, metadata: next, dryRun: true });
    expect(reply).toMatchObject({ name: 'counter', result: 'dry-run', fromVersion: 1, version: 2, sha: sha2, steps: [] });
    expect(reply.diff).toEqual({
      istreams: { gained: ['letters'], lost: [], regrouped: [{ stream: 'words', from: 'key', to: 'shuffle' }] },
      ostreams: { gained: ['totals'], lost: ['counts'] },
      producersAffected: ['letters'],
      consumersAffected: ['sink'],
    });
    expect(h.events).toEqual([]);
    expect(await h.record('counter')).toEqual(counter);
    expect((await h.history('counter')).map((e) => e.action)).toEqual(['deploy']);
  });

  it('preloads before pausing, pauses before releasing, resumes before the health gate, commits last, and writes KV and history', async () => {
    const { wa, wb, counter, source } = await topology(h);
    const sha2 = await h.upload('counter v2');
    const reply = await h.swap({ sha: sha2, source: 'counter2.ts', probation: { records: 3 } });

    expect(reply).toMatchObject({ name: 'counter', result: 'ok', fromVersion: 1, version: 2, sha: sha2, loadMs: 7 });
    expect(reply.pauseMs).toBeGreaterThanOrEqual(0);
    expect(reply.steps.map((s) => s.step)).toEqual(['preload', 'pause', 'release', 'adopt', 'resume', 'health', 'commit']);
    expect(reply.steps.every((s) => s.ok)).toBe(true);

    const ev = h.events;
    // Every preload before any pause, every pause before any release, and so on.
    expect(last(ev, 'preload')).toBeLessThan(first(ev, 'pause'));
    expect(last(ev, 'pause')).toBeLessThan(first(ev, 'release'));
    expect(last(ev, 'release')).toBeLessThan(first(ev, 'adopt'));
    expect(last(ev, 'adopt')).toBeLessThan(first(ev, 'resume'));
    expect(last(ev, 'resume')).toBeLessThan(first(ev, 'health'));
    expect(last(ev, 'health')).toBeLessThan(first(ev, 'commit'));
    expect(ev.at(-1)!.ctl.op).toBe('commit');

    expect(ops(ev, 'preload').map((p) => [p.worker, p.sha]).sort()).toEqual([['wa', sha2], ['wb', sha2]]);
    // Only the producer of what counter reads is paused (not sink, which reads counter's output), on "words" only.
    const pauses = ops(ev, 'pause');
    expect(pauses).toHaveLength(1);
    expect(pauses[0]).toMatchObject({ worker: 'wa', instanceId: source.placements[0]!.instanceId, streams: ['words'], leaseMs: PAUSE_LEASE_MS });
    expect(pauses[0]!.swapId).toMatch(/^counter-v2-[0-9a-f]{8}$/);
    expect(ops(ev, 'resume')).toEqual([{ worker: 'wa', op: 'resume', instanceId: source.placements[0]!.instanceId, swapId: pauses[0]!.swapId }]);

    const releases = ops(ev, 'release');
    expect(releases.map((r) => r.instanceId).sort()).toEqual(counter.placements.map((p) => p.instanceId).sort());
    for (const r of releases) expect(r).toMatchObject({ swapId: pauses[0]!.swapId, export: 'memory' });

    const adopts = ops(ev, 'adopt');
    expect(adopts).toHaveLength(2);
    for (const old of counter.placements) {
      const a = adopts.find((x) => x.assignment.index === old.index)!;
      expect(a.worker).toBe(old.workerId);
      expect(a.from).toEqual([{ workerId: old.workerId, instanceId: old.instanceId }]);
      expect(a.filterByPartition).toBe(false);
      expect(a.probation).toEqual({ records: 3, ms: 500, callbackTimeoutMs: 2_000 });
      expect(a.assignment).toMatchObject({ computation: 'counter', version: 2, sha: sha2, lang: 'ts', count: 2, metadata: COUNTER });
      expect(a.assignment.instanceId).not.toBe(old.instanceId);
    }
    const healths = ops(ev, 'health');
    expect(healths.map((x) => x.instanceId).sort()).toEqual(adopts.map((a) => a.assignment.instanceId).sort());
    expect(healths[0]!.timeoutMs).toBe(500 + 2_000 + 3_000);
    expect(ops(ev, 'commit').map((c) => c.worker).sort()).toEqual(['wa', 'wb']);

    const rec = (await h.record('counter'))!;
    expect(rec).toMatchObject({ name: 'counter', version: 2, sha: sha2, instances: 2, source: 'counter2.ts', metadata: COUNTER });
    expect(rec.placements.map((p) => [p.index, p.instanceId, p.workerId]).sort()).toEqual(
      adopts.map((a) => [a.assignment.index, a.assignment.instanceId, a.worker]).sort(),
    );
    const entries = await h.history('counter');
    expect(entries.map((e) => [e.version, e.action, e.result])).toEqual([[1, 'deploy', 'ok'], [2, 'swap', 'ok']]);
    expect(entries[1]).toMatchObject({ fromVersion: 1, pauseMs: reply.pauseMs, loadMs: 7, sha: sha2, lang: 'ts', metadata: COUNTER });
    expect(entries[1]!.steps).toEqual(reply.steps);
    // The journal that lets a restarted controller finish the swap is gone once it is done.
    expect((await h.state.get('swap.counter'))?.operation).not.toBe('PUT');

    // With KV updated, reconciliation has nothing to correct: no unassign, no re-assign.
    await sleep(HEARTBEAT_MS * 6);
    expect(ops(h.events, 'unassign')).toEqual([]);
    expect(ops(h.events, 'assign')).toEqual([]);
    expect([...wa.instances.keys(), ...wb.instances.keys()].filter((id) => id.startsWith('counter')).sort()).toEqual(
      rec.placements.map((p) => p.instanceId).sort(),
    );
  });

  it('rolls back when an adopt fails: abort on every involved worker, upstreams resumed, KV untouched, history rolled-back', async () => {
    const { wa, wb, counter } = await topology(h);
    wb.script = (ctl) => {
      if (ctl.op === 'adopt') throw new InitFailedError('init of counter v2 threw: database unreachable');
    };
    const sha2 = await h.upload('counter v2');
    const err = await rejection(h.swap({ sha: sha2 }));
    expect(err.code).toBe('SWAP_ROLLED_BACK');
    expect(err.message).toBe('swap of "counter" to v2 rolled back: init of counter v2 threw: database unreachable');
    const detail = err.detail as SwapReply;
    expect(detail).toMatchObject({ result: 'rolled-back', version: 2, fromVersion: 1, error: 'init of counter v2 threw: database unreachable' });
    expect(detail.steps.map((s) => [s.step, s.ok])).toEqual([
      ['preload', true], ['pause', true], ['release', true], ['adopt', false], ['abort', true], ['resume', true],
    ]);

    const ev = h.events;
    expect(first(ev, 'health')).toBe(-1);
    expect(first(ev, 'commit')).toBe(-1);
    expect(ops(ev, 'abort').map((a) => a.worker).sort()).toEqual(['wa', 'wb']);
    expect(last(ev, 'abort')).toBeLessThan(first(ev, 'resume'));
    expect(ops(ev, 'resume')).toHaveLength(1);
    expect((await h.state.get('swap.counter'))?.operation).not.toBe('PUT');
    // The old instances run again, and nothing of v2 is left.
    expect(await h.record('counter')).toEqual(counter);
    for (const w of [wa, wb]) for (const r of w.instances.values()) expect(r.state).toBe('running');
    const entries = await h.history('counter');
    expect(entries.at(-1)).toMatchObject({
      version: 2, action: 'swap', result: 'rolled-back', error: 'init of counter v2 threw: database unreachable', steps: detail.steps,
    });
    // The next swap gets a new version number.
    wb.script = undefined;
    expect((await h.swap({ sha: sha2 })).version).toBe(3);
  });

  it('rolls back instead of committing when a worker no longer holds the swap (its lease ran out)', async () => {
    const { wb, counter } = await topology(h);
    wb.script = (ctl) => {
      if (ctl.op === 'renew') throw new TopoError('swap lease ran out here');
    };
    const sha2 = await h.upload('counter v2');
    const err = await rejection(h.swap({ sha: sha2 }));
    expect(err.code).toBe('SWAP_ROLLED_BACK');
    expect(err.message).toContain('swap lease ran out here');
    expect(ops(h.events, 'commit')).toEqual([]);
    expect((err.detail as SwapReply).steps.map((s) => s.step)).toEqual(['preload', 'pause', 'release', 'adopt', 'resume', 'health', 'pause', 'abort', 'resume']);
    expect(await h.record('counter')).toEqual(counter);
  });

  it('rolls back when the health gate fails after resume: pauses upstreams again, aborts, resumes', async () => {
    const { wa, counter } = await topology(h);
    wa.script = (ctl) => {
      if (ctl.op === 'health') throw new TopoError('processRecord threw: Cannot read properties of undefined');
    };
    const sha2 = await h.upload('counter v2');
    const err = await rejection(h.swap({ sha: sha2 }));
    expect(err.code).toBe('SWAP_ROLLED_BACK');
    expect(err.message).toContain('Cannot read properties of undefined');
    const steps = (err.detail as SwapReply).steps.map((s) => s.step);
    expect(steps).toEqual(['preload', 'pause', 'release', 'adopt', 'resume', 'health', 'pause', 'abort', 'resume']);

    const seq = h.events.filter((e) => ['pause', 'resume', 'health', 'abort', 'commit'].includes(e.ctl.op)).map((e) => e.ctl.op);
    expect(seq.filter((op) => op !== 'abort' && op !== 'health')).toEqual(['pause', 'resume', 'pause', 'resume']);
    const secondPause = last(h.events, 'pause');
    expect(secondPause).toBeGreaterThan(last(h.events, 'health'));
    expect(secondPause).toBeLessThan(first(h.events, 'abort'));
    expect(last(h.events, 'abort')).toBeLessThan(last(h.events, 'resume'));
    expect(first(h.events, 'commit')).toBe(-1);
    expect(await h.record('counter')).toEqual(counter);
  });

  it('fails before anything pauses when the new code does not load, with the worker\'s error', async () => {
    const { wb, counter } = await topology(h);
    wb.script = (ctl) => {
      if (ctl.op === 'preload') throw new TopoError('counter v2: module has no default export');
    };
    const err = await rejection(h.swap({ sha: await h.upload('counter v2') }));
    expect(err.message).toBe('counter v2: module has no default export');
    expect(h.events.map((e) => e.ctl.op).filter((op) => op !== 'preload')).toEqual([]);
    expect(await h.record('counter')).toEqual(counter);
    expect((await h.history('counter')).at(-1)).toMatchObject({ version: 2, result: 'failed', error: 'counter v2: module has no default export' });
  });

  it('skips an upstream whose worker is dead', async () => {
    await h.addWorker('wa');
    await h.addWorker('wb');
    // A python source: when its only python worker dies nobody can take it over, so it stays on the dead worker.
    const wp = await h.addWorker('wp', 'python');
    await h.deploy(SOURCE, await h.upload('python source'), 1, 'python');
    await h.deploy(COUNTER, await h.upload('counter v1'), 2);
    await wp.crash();
    await waitFor('wp to be declared dead', () => h.controller.status().workers.find((w) => w.workerId === 'wp')?.alive === false);
    h.events.length = 0;
    const reply = await h.swap({ sha: await h.upload('counter v2') });
    expect(reply.result).toBe('ok');
    expect(ops(h.events, 'pause')).toEqual([]);
    expect(reply.steps.find((s) => s.step === 'pause')!.detail).toMatch(/skipped \(worker not alive\): source\/source-0-[0-9a-f]{6}@wp/);
  });

  it('renews the pause lease while a step takes long', async () => {
    await h.close();
    h = await startHarness({ pauseRenewMs: 100, pauseLeaseMs: 1_000, swapStepTimeoutMs: 3_000 });
    const { wb, source } = await topology(h);
    wb.script = async (ctl) => {
      if (ctl.op === 'release') await sleep(700);
    };
    const reply = await h.swap({ sha: await h.upload('counter v2') });
    expect(reply.result).toBe('ok');
    const pauses = ops(h.events, 'pause');
    expect(pauses.length).toBeGreaterThanOrEqual(4);
    for (const p of pauses) expect(p).toMatchObject({ instanceId: source.placements[0]!.instanceId, swapId: pauses[0]!.swapId, leaseMs: 1_000 });
    // Renewals stop with the resume.
    const resumeAt = first(h.events, 'resume');
    await sleep(300);
    expect(last(h.events, 'pause')).toBeLessThan(resumeAt);
    expect(reply.steps.some((s) => s.step === 'lease-expired')).toBe(false);
  });

  it('leaves the computation alone while its swap runs, though heartbeats already show the new instances', async () => {
    const { wa, wb, counter } = await topology(h);
    // Longer than reconcileGraceMs (3 heartbeats): reconciliation must neither unassign the new instances
    // (not in KV yet) as strays nor assign the released ones again.
    for (const w of [wa, wb]) {
      w.script = async (ctl) => {
        if (ctl.op === 'health') await sleep(HEARTBEAT_MS * 8);
      };
    }
    const reply = await h.swap({ sha: await h.upload('counter v2') });
    expect(reply.result).toBe('ok');
    expect(ops(h.events, 'unassign')).toEqual([]);
    expect(ops(h.events, 'assign')).toEqual([]);
    const rec = (await h.record('counter'))!;
    expect(rec.placements.map((p) => p.instanceId)).not.toEqual(counter.placements.map((p) => p.instanceId));
    await sleep(HEARTBEAT_MS * 6);
    expect(ops(h.events, 'unassign')).toEqual([]);
  });

  it('records a lease-expired step when an upstream stops acknowledging its pause', async () => {
    await h.close();
    h = await startHarness({ pauseRenewMs: 100, pauseLeaseMs: 400, swapStepTimeoutMs: 2_000 });
    const { wa, wb } = await topology(h);
    let pauses = 0;
    wa.script = async (ctl) => {
      // The first pause is answered; renewals are not.
      if (ctl.op === 'pause' && ++pauses > 1) await new Promise(() => {});
    };
    wb.script = async (ctl) => {
      if (ctl.op === 'adopt') await sleep(700);
    };
    const reply = await h.swap({ sha: await h.upload('counter v2') });
    const expired = reply.steps.find((s) => s.step === 'lease-expired');
    expect(expired).toMatchObject({ ok: false, detail: expect.stringMatching(/source\/source-0-[0-9a-f]{6}@wa/) });
    expect(reply.steps.findIndex((s) => s.step === 'lease-expired')).toBeLessThan(reply.steps.findIndex((s) => s.step === 'resume'));
  });

  it('rolls back quickly when a worker dies mid-swap; its instances are re-placed from KV', async () => {
    const { wa, wb, counter } = await topology(h);
    wb.script = async (ctl) => {
      if (ctl.op === 'release') {
        await wb.crash();
        // A dead process never answers.
        await new Promise(() => {});
      }
    };
    const started = Date.now();
    const err = await rejection(h.swap({ sha: await h.upload('counter v2') }));
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(err.code).toBe('SWAP_ROLLED_BACK');
    expect(ops(h.events, 'abort').map((a) => a.worker)).toContain('wa');
    const onB = counter.placements.find((p) => p.workerId === 'wb')!;
    const rec = await waitFor('re-placement of the dead worker\'s instance', async () => {
      const r = await h.record('counter');
      return r?.placements.every((p) => p.workerId === 'wa') ? r : undefined;
    }, LEASE_MS * 5);
    expect(rec.version).toBe(1);
    expect(ops(h.events, 'assign').find((a) => a.assignment.index === onB.index)?.assignment.version).toBe(1);
    expect(wa.instances.size).toBeGreaterThan(0);
  });

  it('refuses bad requests with clear errors and changes nothing', async () => {
    const { counter } = await topology(h);
    const sha2 = await h.upload('counter v2');
    await expect(h.swap({ name: 'nope', sha: sha2 })).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining('"nope"') });
    await expect(h.swap({ sha: sha2, metadata: { ...COUNTER, name: 'x' } })).rejects.toMatchObject({
      code: 'BAD_REQUEST', message: expect.stringContaining('the file defines "x", not "counter"'),
    });
    await expect(h.swap({ sha: sha256('never uploaded') })).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining('object store') });
    await expect(h.swap({ sha: sha2, lang: 'python' })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('ts workers') });
    await expect(h.swap({ sha: sha2, canary: 100 })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('1 to 99') });
    await expect(h.swap({ sha: sha2, probation: { ms: -1 } })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('probation.ms') });
    expect(h.events).toEqual([]);
    expect(await h.record('counter')).toEqual(counter);
  });
});

describe('a controller restarted mid-swap', () => {
  freshHarness();

  /** Puts counter's instance 0 on wa half-way through a swap, as a controller that died would leave it. */
  async function halfSwapped(phase: 'started' | 'committing', adoptOnWorker: boolean) {
    const { wa, counter } = await topology(h);
    const old0 = counter.placements.find((p) => p.workerId === 'wa')!;
    const swapId = 'counter-v2-0badc0de';
    const newId = 'counter-0-abcdef';
    await call(h.client, subjects.workerControl('wa'), { op: 'release', instanceId: old0.instanceId, swapId, export: 'memory' });
    if (adoptOnWorker) {
      await call(h.client, subjects.workerControl('wa'), {
        op: 'adopt', swapId, filterByPartition: false, probation: { records: 20, ms: 500, callbackTimeoutMs: 2_000 },
        assignment: { instanceId: newId, computation: 'counter', version: 2, sha: counter.sha, lang: 'ts', index: old0.index, count: 2, metadata: COUNTER },
        from: [{ workerId: 'wa', instanceId: old0.instanceId }],
      });
    }
    const record: ComputationRecord = {
      ...counter, version: 2, placements: counter.placements.map((p) => (p.instanceId === old0.instanceId ? { ...p, instanceId: newId } : p)),
    };
    const historyEntry: HistoryEntry = { name: 'counter', version: 2, sha: counter.sha, action: 'swap', at: Date.now(), result: 'ok', fromVersion: 1, steps: [] };
    await h.state.put('swap.counter', JSON.stringify({
      swapId, name: 'counter', phase, workers: ['wa'], startedAt: Date.now(), history: historyEntry, ...(phase === 'committing' ? { record } : {}),
    }));
    h.events.length = 0;
    return { wa, counter, old0, swapId, newId };
  }

  it('aborts a swap that had not committed, so the old instance takes over again', async () => {
    const { wa, counter, old0, swapId } = await halfSwapped('started', true);
    await h.restartController();
    await waitFor('the journal to be gone', async () => (await h.state.get('swap.counter'))?.operation !== 'PUT');
    expect(ops(h.events, 'abort')).toEqual([{ worker: 'wa', op: 'abort', swapId, reason: 'the controller stopped mid-swap' }]);
    expect(wa.instances.get(old0.instanceId)?.state).toBe('running');
    expect(await h.record('counter')).toEqual(counter);
    expect((await h.history('counter')).at(-1)).toMatchObject({ version: 2, result: 'rolled-back', error: expect.stringContaining('controller stopped') });
  });

  it('commits a swap that was committing, and desired state follows what the workers run', async () => {
    const { wa, swapId, newId } = await halfSwapped('committing', true);
    await h.restartController();
    await waitFor('the journal to be gone', async () => (await h.state.get('swap.counter'))?.operation !== 'PUT');
    expect(ops(h.events, 'commit')).toEqual([{ worker: 'wa', op: 'commit', swapId }]);
    expect(wa.instances.get(newId)?.state).toBe('running');
    const rec = (await h.record('counter'))!;
    expect(rec.version).toBe(2);
    expect(rec.placements.map((p) => p.instanceId)).toContain(newId);
    expect((await h.history('counter')).at(-1)).toMatchObject({ version: 2, result: 'ok' });
  });

  it('keeps desired state when the workers no longer run the committing swap\'s instances', async () => {
    const { counter } = await halfSwapped('committing', false);
    await h.restartController();
    await waitFor('the journal to be gone', async () => (await h.state.get('swap.counter'))?.operation !== 'PUT');
    expect(await h.record('counter')).toEqual(counter);
    expect((await h.history('counter')).at(-1)).toMatchObject({ version: 2, result: 'rolled-back' });
  });
});

describe('canary, promote and rollback', () => {
  freshHarness();

  it('starts a canary on 10% of the keys: instance 0 splits its partitions between the old and the new version', async () => {
    const { wa, wb, counter } = await topology(h);
    const sha2 = await h.upload('counter v2');
    const old0 = counter.placements.find((p) => p.index === 0)!;
    const reply = await h.swap({ sha: sha2, canary: 10 });
    expect(reply).toMatchObject({ result: 'ok', version: 2, fromVersion: 1 });

    const owned0 = partitionsOwnedBy(0, 2);
    const canaryParts = owned0.slice(0, Math.round((32 * 10) / 100));
    expect(ops(h.events, 'release').map((r) => r.instanceId)).toEqual([old0.instanceId]);
    const adopts = ops(h.events, 'adopt');
    expect(adopts.map((a) => a.worker)).toEqual([old0.workerId, old0.workerId]);
    const keep = adopts.find((a) => a.assignment.version === 1)!;
    const canary = adopts.find((a) => a.assignment.version === 2)!;
    expect(keep.assignment).toMatchObject({ index: 0, count: 2, sha: counter.sha, partitions: owned0.filter((p) => !canaryParts.includes(p)) });
    expect(canary.assignment).toMatchObject({ index: 0, count: 1, sha: sha2, partitions: canaryParts });
    for (const a of adopts) expect(a).toMatchObject({ from: [{ workerId: old0.workerId, instanceId: old0.instanceId }], filterByPartition: true });
    expect(ops(h.events, 'health')).toHaveLength(2);

    const rec = (await h.record('counter'))!;
    expect(rec.version).toBe(1);
    expect(rec.placements.find((p) => p.index === 0)).toEqual({
      index: 0, instanceId: keep.assignment.instanceId, workerId: old0.workerId, partitions: keep.assignment.partitions,
    });
    expect(rec.placements.find((p) => p.index === 1)).toEqual(counter.placements.find((p) => p.index === 1));
    expect(rec.canary).toMatchObject({
      version: 2, sha: sha2, lang: 'ts', percent: 10, partitions: canaryParts, metadata: COUNTER,
      placements: [{ index: 0, instanceId: canary.assignment.instanceId, workerId: old0.workerId, partitions: canaryParts }],
    });
    expect((await h.history('counter')).at(-1)).toMatchObject({ version: 2, action: 'canary', result: 'ok', fromVersion: 1 });

    // Reconciliation counts the canary as desired: nothing is unassigned.
    await sleep(HEARTBEAT_MS * 6);
    expect(ops(h.events, 'unassign')).toEqual([]);
    expect(wa.instances.size + wb.instances.size).toBe(5);

    // A second swap must wait for the canary to be promoted or rolled back.
    await expect(h.swap({ sha: sha2 })).rejects.toMatchObject({ code: 'CONFLICT', message: expect.stringContaining('promote or roll back the canary first') });

    // kill stops the canary too.
    await call(h.client, subjects.api('kill'), { name: 'counter' });
    expect(ops(h.events, 'unassign').map((u) => u.instanceId).sort()).toEqual([...rec.placements, ...rec.canary!.placements].map((p) => p.instanceId).sort());
  });

  it('re-places a canary instance whose worker died with the canary version and its partitions', async () => {
    const wa = await h.addWorker('wa');
    await h.addWorker('wb');
    const sha1 = await h.upload('counter v1');
    await h.deploy(COUNTER, sha1, 1);
    const sha2 = await h.upload('counter v2');
    await h.swap({ sha: sha2, canary: 50 });
    const withCanary = (await h.record('counter'))!;
    const host = withCanary.canary!.placements[0]!.workerId;
    const dead = h.workers.find((w) => w.id === host)!;
    const other = h.workers.find((w) => w.id !== host)!;
    h.events.length = 0;
    await dead.crash();
    const rec = await waitFor('both instances on the other worker', async () => {
      const r = await h.record('counter');
      return r && [...r.placements, ...(r.canary?.placements ?? [])].every((p) => p.workerId === other.id) ? r : undefined;
    }, LEASE_MS * 5);
    const assigns = ops(h.events, 'assign').map((a) => a.assignment);
    const canaryAssign = assigns.find((a) => a.instanceId === rec.canary!.placements[0]!.instanceId)!;
    expect(canaryAssign).toMatchObject({ version: 2, sha: sha2, count: 1, partitions: withCanary.canary!.partitions });
    const keepAssign = assigns.find((a) => a.instanceId === rec.placements[0]!.instanceId)!;
    expect(keepAssign).toMatchObject({ version: 1, sha: sha1, count: 1, partitions: withCanary.placements[0]!.partitions });
    expect(rec.canary!.placements[0]!.partitions).toEqual(withCanary.canary!.partitions);
    expect(wa.id === host ? 'wb' : 'wa').toBe(other.id);
  });

  it('refuses a canary that needs more partitions than instance 0 owns, or streams that are not key-grouped', async () => {
    const { counter } = await topology(h);
    const sha2 = await h.upload('counter v2');
    await expect(h.swap({ sha: sha2, canary: 60 })).rejects.toMatchObject({
      code: 'BAD_REQUEST', message: expect.stringMatching(/needs 19 of the 32 key partitions.*owns 16.*--canary 51 or less/),
    });
    const shuffled = { ...COUNTER, istreams: [{ stream: 'words', grouping: 'shuffle' as const }] };
    await expect(h.swap({ sha: sha2, canary: 10, metadata: shuffled })).rejects.toMatchObject({
      code: 'BAD_REQUEST', message: expect.stringContaining('key-grouped'),
    });
    expect(await h.record('counter')).toEqual(counter);
  });

  it('promote gives every key to the canary version; instance 0 merges both snapshots', async () => {
    const { counter } = await topology(h);
    const sha2 = await h.upload('counter v2');
    await h.swap({ sha: sha2, canary: 25, source: 'counter2.ts' });
    const withCanary = (await h.record('counter'))!;
    h.events.length = 0;

    const reply = await call<SwapReply>(h.client, subjects.api('promote'), { name: 'counter' }, 20_000);
    expect(reply).toMatchObject({ result: 'ok', version: 2, fromVersion: 1, sha: sha2 });
    const keep0 = withCanary.placements.find((p) => p.index === 0)!;
    const canary0 = withCanary.canary!.placements[0]!;
    const old1 = withCanary.placements.find((p) => p.index === 1)!;
    expect(ops(h.events, 'release').map((r) => r.instanceId).sort()).toEqual([keep0.instanceId, old1.instanceId, canary0.instanceId].sort());
    const adopts = ops(h.events, 'adopt');
    const a0 = adopts.find((a) => a.assignment.index === 0)!;
    const a1 = adopts.find((a) => a.assignment.index === 1)!;
    expect(a0.from).toEqual([{ workerId: keep0.workerId, instanceId: keep0.instanceId }, { workerId: canary0.workerId, instanceId: canary0.instanceId }]);
    expect(a0.filterByPartition).toBe(true);
    expect(a0.assignment.partitions).toBeUndefined();
    expect(a1).toMatchObject({ from: [{ workerId: old1.workerId, instanceId: old1.instanceId }], filterByPartition: false });
    for (const a of adopts) expect(a.assignment).toMatchObject({ version: 2, sha: sha2, count: 2 });

    const rec = (await h.record('counter'))!;
    expect(rec).toMatchObject({ version: 2, sha: sha2, source: 'counter2.ts' });
    expect(rec.canary).toBeUndefined();
    expect(rec.placements.map((p) => p.partitions)).toEqual([undefined, undefined]);
    expect(rec.placements.map((p) => p.workerId).sort()).toEqual(counter.placements.map((p) => p.workerId).sort());
    expect((await h.history('counter')).map((e) => [e.version, e.action])).toEqual([[1, 'deploy'], [2, 'canary'], [2, 'promote']]);
    await expect(call(h.client, subjects.api('promote'), { name: 'counter' })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('no canary') });
  });

  it('rollback with a canary running gives its keys back to the current version', async () => {
    const { counter } = await topology(h);
    await h.swap({ sha: await h.upload('counter v2'), canary: 10 });
    const withCanary = (await h.record('counter'))!;
    h.events.length = 0;
    const reply = await call<SwapReply>(h.client, subjects.api('rollback'), { name: 'counter' }, 20_000);
    expect(reply).toMatchObject({ result: 'ok', version: 1, fromVersion: 2, sha: counter.sha });
    const adopts = ops(h.events, 'adopt');
    expect(adopts).toHaveLength(1);
    expect(adopts[0]!.assignment).toMatchObject({ version: 1, index: 0, count: 2 });
    expect(adopts[0]!.assignment.partitions).toBeUndefined();
    expect(adopts[0]!.from.map((f) => f.instanceId)).toEqual([withCanary.placements.find((p) => p.index === 0)!.instanceId, withCanary.canary!.placements[0]!.instanceId]);
    const rec = (await h.record('counter'))!;
    expect(rec.canary).toBeUndefined();
    expect(rec.version).toBe(1);
    expect(rec.placements.find((p) => p.index === 0)).toEqual({ index: 0, instanceId: adopts[0]!.assignment.instanceId, workerId: adopts[0]!.worker });
    expect((await h.history('counter')).at(-1)).toMatchObject({ version: 1, action: 'rollback', result: 'ok', fromVersion: 2 });
  });

  it('rollback without a canary swaps back to the previous code as a new version; history lists everything oldest first', async () => {
    const { sha1 } = await topology(h);
    const sha2 = await h.upload('counter v2');
    await h.swap({ sha: sha2 });
    h.events.length = 0;
    const reply = await call<SwapReply>(h.client, subjects.api('rollback'), { name: 'counter' }, 20_000);
    expect(reply).toMatchObject({ result: 'ok', version: 3, fromVersion: 2, sha: sha1 });
    expect(reply.steps[0]).toMatchObject({ step: 'target', detail: expect.stringContaining('v1') });
    const rec = (await h.record('counter'))!;
    expect(rec).toMatchObject({ version: 3, sha: sha1, metadata: COUNTER });
    expect(ops(h.events, 'adopt').every((a) => a.assignment.sha === sha1 && a.assignment.version === 3)).toBe(true);

    await expect(call(h.client, subjects.api('rollback'), { name: 'counter', to: 7 })).rejects.toMatchObject({
      code: 'NOT_FOUND', message: 'version 7 of counter is not in history',
    });
    // Rolling back again goes to where v3 came from: v2's code.
    const again = await call<SwapReply>(h.client, subjects.api('rollback'), { name: 'counter' }, 20_000);
    expect(again).toMatchObject({ version: 4, fromVersion: 3, sha: sha2 });
    const toOne = await call<SwapReply>(h.client, subjects.api('rollback'), { name: 'counter', to: 1 }, 20_000);
    expect(toOne).toMatchObject({ version: 5, sha: sha1 });

    const entries = await h.history('counter');
    expect(entries.map((e) => [e.version, e.action, e.result])).toEqual([
      [1, 'deploy', 'ok'], [2, 'swap', 'ok'], [3, 'rollback', 'ok'], [4, 'rollback', 'ok'], [5, 'rollback', 'ok'],
    ]);
    for (let i = 1; i < entries.length; i++) expect(entries[i]!.at).toBeGreaterThanOrEqual(entries[i - 1]!.at);
    await expect(call(h.client, subjects.api('history'), { name: 'never' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

describe('with real worker processes', () => {
  let cluster: Cluster;
  const out: { key: string; count: number; code: string }[] = [];
  let malformed = 0;
  const ac = new AbortController();
  let tapping: Promise<void> | undefined;

  beforeAll(async () => {
    cluster = await startCluster({ workers: 2 });
  });
  afterAll(async () => {
    ac.abort();
    await tapping?.catch(() => {});
    await cluster?.stop();
  });

  it('swaps a key-grouped counter fed by a timer-only source to v2, which counts on from v1 state', async () => {
    const { client } = cluster;
    const it = client.tap(COUNTS, { signal: ac.signal });
    const firstItem = it.next();
    await client.nc.flush();
    tapping = (async () => {
      for (let r = await firstItem; !r.done; r = await it.next()) {
        if (isMalformed(r.value)) malformed++;
        else out.push({ key: r.value.key, ...(r.value.value as { count: number; code: string }) });
      }
    })();
    await client.deployFile('test/fixtures/swap-ctl-counter-v1.ts', { instances: 2 });
    await client.deployFile('test/fixtures/swap-ctl-source.ts');
    await waitFor('output of v1 on every key', () => new Set(out.filter((o) => o.code === 'v1').map((o) => o.key)).size === KEYS, 10_000);

    const reply = await client.swap('swapctl-counter', 'test/fixtures/swap-ctl-counter-v2.ts');
    expect(reply).toMatchObject({ result: 'ok', fromVersion: 1, version: 2 });
    expect(reply.steps.map((s) => s.step)).toEqual(['preload', 'pause', 'release', 'adopt', 'resume', 'health', 'commit']);
    // The source was the one upstream held.
    expect(reply.steps.find((s) => s.step === 'pause')!.detail).toContain('swapctl-source');

    const st = await client.status();
    const c = st.computations.find((x) => x.name === 'swapctl-counter')!;
    expect(c.version).toBe(2);
    expect(c.instances.map((i) => i.version)).toEqual([2, 2]);
    const entry = (await client.history('swapctl-counter')).at(-1)!;
    expect(entry).toMatchObject({ version: 2, action: 'swap', result: 'ok', fromVersion: 1, source: 'swap-ctl-counter-v2.ts' });
    expect(entry.pauseMs).toBeGreaterThanOrEqual(0);

    // Per key: v1 then v2, counts consecutive across the swap (state moved, nothing lost or duplicated).
    await waitFor('output of v2 on every key', () => new Set(out.filter((o) => o.code === 'v2').map((o) => o.key)).size === KEYS, 10_000);
    expect(malformed).toBe(0);
    for (let k = 0; k < KEYS; k++) {
      const mine = out.filter((o) => o.key === `k${k}`);
      const firstV2 = mine.findIndex((o) => o.code === 'v2');
      expect(mine.slice(firstV2).every((o) => o.code === 'v2'), `k${k}: v1 after v2`).toBe(true);
      for (let i = 1; i < mine.length; i++) expect(mine[i]!.count, `k${k} record ${i}`).toBe(mine[i - 1]!.count + 1);
    }
  });
});
