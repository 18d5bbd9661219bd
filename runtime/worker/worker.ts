/**
 * A worker process hosts computation instances. It registers with the
 * controller, renews its lease with heartbeats that carry per-instance
 * metrics, and obeys WorkerControl requests on topo.worker.ctl.<id>.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { Logger } from 'pino';
import {
  buckets, packr, partitionOf, subjects, NotFoundError, BadRequestError, TopoError,
  type Assignment, type Heartbeat, type PauseReply, type Probation, type RegisterReply, type RegisterRequest, type ReleaseReply,
  type SnapshotRef, type WorkerControl,
} from '../../sdk/protocol/index.js';
import { call, encodeJson, serve } from '../transport/rpc.js';
import { ArtifactCache, checkMetadata } from './artifacts.js';
import { Instance, type Inbound, type InstanceSnapshot } from './instance.js';
import { instanceLogger } from './logs.js';
import { TopologyView } from './topology.js';

const SWAP_DEADLINE_MS = 60_000;

export interface WorkerOptions {
  nc: NatsConnection;
  workerId: string;
  dataDir: string;
  log: Logger;
  /** Credit window per consumer group, in records. */
  window?: number;
}

export class Worker {
  readonly id: string;
  private readonly nc: NatsConnection;
  private readonly log: Logger;
  private readonly dataDir: string;
  private readonly window: number | undefined;
  private readonly instances = new Map<string, Instance>();
  private readonly view = new TopologyView();
  private artifacts!: ArtifactCache;
  private heartbeatMs = 1_000;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private control: { unsubscribe(): void } | undefined;
  private stopping: Promise<void> | undefined;
  /** Snapshots of released (standby) instances, by instance id, until their swap ends. */
  private readonly snapshots = new Map<string, InstanceSnapshot>();
  /** For each adopted instance: the instances it replaced (where a rollback hands its input back). */
  private readonly adoptedFrom = new Map<string, SnapshotRef[]>();
  /** A swap neither committed nor aborted by then is aborted here (the controller died). */
  private readonly swapDeadlines = new Map<string, NodeJS.Timeout>();
  private snapshotStore: ObjectStore | undefined;
  private readonly startedAt = Date.now();
  /** Resolves when a stop was requested (control 'stop' or a signal). */
  readonly stopped: Promise<void>;
  private resolveStopped!: () => void;

  constructor(o: WorkerOptions) {
    this.nc = o.nc;
    this.id = o.workerId;
    this.log = o.log;
    this.dataDir = o.dataDir;
    this.window = o.window;
    this.stopped = new Promise((r) => (this.resolveStopped = r));
  }

  async start(): Promise<void> {
    const kvm = new Kvm(this.nc);
    const objm = new Objm(this.nc);
    // The controller creates these; wait for them rather than racing it.
    const stateKv = await retry(() => kvm.open(buckets.state), 'the topo_state bucket', this.log);
    const store = await retry(() => objm.open(buckets.artifacts), 'the artifact store', this.log);
    this.artifacts = new ArtifactCache(store, join(this.dataDir, 'artifacts'));
    await this.view.watch(stateKv);
    this.control = serve<WorkerControl, object>(this.nc, subjects.workerControl(this.id), (req) => this.onControl(req));
    await this.register();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.heartbeatMs);
    this.heartbeat();
  }

  private async register(): Promise<void> {
    const req: RegisterRequest = { workerId: this.id, host: hostname(), pid: process.pid, lang: 'ts', startedAt: this.startedAt };
    const reply = await retry(() => call<RegisterReply>(this.nc, subjects.register, req, 2_000), 'the controller', this.log);
    this.heartbeatMs = reply.heartbeatMs;
    this.log.info({ worker: this.id, heartbeatMs: reply.heartbeatMs, leaseMs: reply.leaseMs }, 'registered with the controller');
  }

  private heartbeat(): void {
    const hb: Heartbeat = {
      workerId: this.id,
      host: hostname(),
      pid: process.pid,
      lang: 'ts',
      at: Date.now(),
      instances: [...this.instances.values()].map((i) => i.report()),
    };
    try {
      this.nc.publish(subjects.heartbeat(this.id), encodeJson(hb));
    } catch {
      /* reconnecting */
    }
  }

  private async onControl(req: WorkerControl): Promise<object> {
    switch (req?.op) {
      case 'assign':
        return this.assign(req.assignment);
      case 'unassign': {
        const inst = this.instances.get(req.instanceId);
        if (!inst) return { unassigned: false };
        this.instances.delete(req.instanceId);
        await inst.stop();
        this.heartbeat();
        return { unassigned: true };
      }
      case 'pause': {
        const fences = await this.instance(req.instanceId).pauseOutput(req.streams, req.leaseMs ?? 5_000);
        const reply: PauseReply = { producer: req.instanceId, fences };
        return reply;
      }
      case 'resume':
        this.instance(req.instanceId).resumeOutput();
        return {};
      case 'drain':
        return this.instance(req.instanceId).drain(req.timeoutMs);
      case 'preload': {
        const t0 = performance.now();
        checkMetadata(await this.artifacts.load(req.sha), req.metadata);
        return { loadMs: performance.now() - t0 };
      }
      case 'release':
        return this.release(req.instanceId, req.swapId, req.export);
      case 'adopt':
        return this.adopt(req.swapId, req.assignment, req.from, req.filterByPartition, req.probation);
      case 'health':
        return this.instance(req.instanceId).health(req.timeoutMs);
      case 'commit':
        return this.commitSwap(req.swapId);
      case 'abort':
        return this.abortSwap(req.swapId, req.reason);
      case 'stop':
        setImmediate(() => void this.stop());
        return {};
      default:
        throw new BadRequestError(`unknown worker control op ${JSON.stringify((req as { op?: unknown })?.op)}`);
    }
  }

  private instance(id: string): Instance {
    const inst = this.instances.get(id);
    if (!inst) throw new NotFoundError(`instance ${id} is not on worker ${this.id}`);
    return inst;
  }

  private async assign(a: Assignment): Promise<object> {
    if (this.instances.has(a.instanceId)) return { instanceId: a.instanceId, already: true };
    const comp = await this.artifacts.load(a.sha);
    checkMetadata(comp, a.metadata);
    const log = instanceLogger(this.nc, { computation: a.computation, index: a.index, instanceId: a.instanceId, worker: this.id, version: a.version });
    const inst = new Instance(a, comp, { nc: this.nc, view: this.view, log, workerId: this.id, ...(this.window !== undefined ? { window: this.window } : {}) });
    this.instances.set(a.instanceId, inst);
    try {
      await inst.start();
    } catch (err) {
      this.instances.delete(a.instanceId);
      log.error({ err }, (err as Error).message);
      throw err;
    }
    log.info({ sha: a.sha.slice(0, 12) }, `instance ${a.index + 1}/${a.count} of "${a.computation}" started`);
    this.heartbeat();
    return { instanceId: a.instanceId };
  }

  // ---- hot swap (PROTOCOL.md, "Hot swap") -------------------------------------

  private armSwapDeadline(swapId: string): void {
    if (this.swapDeadlines.has(swapId)) return;
    const t = setTimeout(() => {
      this.swapDeadlines.delete(swapId);
      this.log.warn({ swapId }, `swap ${swapId} got neither commit nor abort within ${SWAP_DEADLINE_MS} ms: rolling it back here`);
      void this.abortSwap(swapId, 'swap deadline passed').catch((err: unknown) => this.log.error({ err }, 'rollback after swap deadline failed'));
    }, SWAP_DEADLINE_MS);
    t.unref();
    this.swapDeadlines.set(swapId, t);
  }

  private endSwap(swapId: string): void {
    const t = this.swapDeadlines.get(swapId);
    if (t) clearTimeout(t);
    this.swapDeadlines.delete(swapId);
  }

  private async release(instanceId: string, swapId: string, exportTo: 'memory' | 'store'): Promise<ReleaseReply> {
    const inst = this.instance(instanceId);
    if (inst.state === 'standby' && inst.swapId === swapId) {
      const snap = this.snapshots.get(instanceId)!;
      return { keys: snap.state.entries.length, timers: snap.timers.length, bytes: packr.pack(snap).length, drained: 0 };
    }
    this.armSwapDeadline(swapId);
    const { snapshot, drained } = await inst.release(swapId);
    this.snapshots.set(instanceId, snapshot);
    const bytes = packr.pack(snapshot);
    if (exportTo === 'store') {
      const store = await this.snapshotsBucket();
      await store.putBlob({ name: `${swapId}/${instanceId}` }, bytes);
    }
    this.heartbeat();
    return { keys: snapshot.state.entries.length, timers: snapshot.timers.length, bytes: bytes.length, drained };
  }

  private async snapshotsBucket(): Promise<ObjectStore> {
    this.snapshotStore ??= await new Objm(this.nc).create(buckets.snapshots);
    return this.snapshotStore;
  }

  /** Merges the snapshots of the instances being replaced, keeping only this instance's keys when asked. */
  private async gatherSnapshot(swapId: string, from: SnapshotRef[], keep: Set<number> | undefined): Promise<InstanceSnapshot> {
    const entries: [string, unknown][] = [];
    const timers = new Map<string, number>();
    for (const ref of from) {
      let snap = ref.workerId === this.id ? this.snapshots.get(ref.instanceId) : undefined;
      if (!snap) {
        const bytes = await (await this.snapshotsBucket()).getBlob(`${swapId}/${ref.instanceId}`);
        if (!bytes) throw new NotFoundError(`no snapshot of ${ref.instanceId} for swap ${swapId} (was it released?)`);
        snap = packr.unpack(bytes) as InstanceSnapshot;
      }
      for (const e of snap.state.entries) if (!keep || keep.has(partitionOf(e[0]))) entries.push(e);
      // Timers are not keyed by record key in general (a window timer): every adopter gets them.
      for (const [k, at] of snap.timers) timers.set(k, Math.min(at, timers.get(k) ?? Infinity));
    }
    return { state: { entries }, timers: [...timers] };
  }

  private async adopt(swapId: string, a: Assignment, from: SnapshotRef[], filterByPartition: boolean, probation: Probation): Promise<object> {
    if (this.instances.has(a.instanceId)) return { instanceId: a.instanceId, already: true };
    this.armSwapDeadline(swapId);
    const comp = await this.artifacts.load(a.sha);
    checkMetadata(comp, a.metadata);
    const log = instanceLogger(this.nc, { computation: a.computation, index: a.index, instanceId: a.instanceId, worker: this.id, version: a.version });
    const inst = new Instance(a, comp, { nc: this.nc, view: this.view, log, workerId: this.id, ...(this.window !== undefined ? { window: this.window } : {}) });
    inst.restore(await this.gatherSnapshot(swapId, from, filterByPartition ? new Set(inst.partitions) : undefined));
    inst.swapId = swapId;
    this.instances.set(a.instanceId, inst);
    this.adoptedFrom.set(a.instanceId, from);
    try {
      await inst.start(probation);
    } catch (err) {
      this.instances.delete(a.instanceId);
      this.adoptedFrom.delete(a.instanceId);
      log.error({ err }, (err as Error).message);
      throw err;
    }
    log.info({ sha: a.sha.slice(0, 12), swapId }, `v${a.version} of "${a.computation}" swapped in (instance ${a.index + 1}/${a.count}), on probation`);
    this.heartbeat();
    return { instanceId: a.instanceId };
  }

  private swapInstances(swapId: string): Instance[] {
    return [...this.instances.values()].filter((i) => i.swapId === swapId);
  }

  private async commitSwap(swapId: string): Promise<object> {
    this.endSwap(swapId);
    let committed = 0;
    for (const inst of this.swapInstances(swapId)) {
      if (inst.state === 'standby') {
        this.instances.delete(inst.id);
        this.snapshots.delete(inst.id);
        await inst.stop();
      } else {
        inst.commit();
        this.adoptedFrom.delete(inst.id);
        committed++;
      }
    }
    this.heartbeat();
    return { committed };
  }

  private async abortSwap(swapId: string, reason: string): Promise<object> {
    this.endSwap(swapId);
    const involved = this.swapInstances(swapId);
    const standby = involved.filter((i) => i.state === 'standby');
    const replay = new Map<Instance, Inbound[]>(standby.map((s) => [s, []]));
    for (const inst of involved) {
      if (inst.state === 'standby') continue;
      const items = await inst.abandon();
      this.instances.delete(inst.id);
      const targets = (this.adoptedFrom.get(inst.id) ?? []).map((r) => this.instances.get(r.instanceId)).filter((t): t is Instance => t?.state === 'standby');
      this.adoptedFrom.delete(inst.id);
      if (targets.length === 0) {
        if (items.length > 0) this.log.error({ swapId, instance: inst.id, batches: items.length }, 'rolled-back instance has input but no standby instance here to hand it to');
        continue;
      }
      for (const item of items) {
        const to = targets.length === 1 ? targets[0]! : (targets.find((t) => t.partitions.includes(item.partition)) ?? targets[0]!);
        replay.get(to)!.push(item);
      }
    }
    for (const s of standby) {
      this.snapshots.delete(s.id);
      s.reinstate(replay.get(s) ?? []);
      s.lastError = `swap rolled back: ${reason}`;
    }
    this.heartbeat();
    return { reinstated: standby.length };
  }

  /** Stops every instance (processing what they hold), then the connection. Idempotent. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        this.log.info({ worker: this.id }, 'worker stopping');
        this.control?.unsubscribe();
        if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
        await Promise.allSettled([...this.instances.values()].map((i) => i.stop()));
        this.instances.clear();
        this.view.stop();
        this.resolveStopped();
      })();
    }
    return this.stopping;
  }
}

async function retry<T>(fn: () => Promise<T>, what: string, log: Logger): Promise<T> {
  let warned = false;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!warned) {
        log.info({ err: (err as Error).message }, `waiting for ${what}`);
        warned = true;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}
