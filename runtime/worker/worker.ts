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
  buckets, packr, partitionsOwnedBy, schemas, subjects, ConflictError, NotFoundError, BadRequestError,
  type Assignment, type Heartbeat, type PauseReply, type Probation, type RegisterReply, type RegisterRequest, type ReleaseReply,
  type AbortReply, type Handback, type ProducerFence, type SnapshotRef, type UpstreamRef, type UserCredential, type WorkerControl,
} from '../../protocol/index.js';
import { call, encodeJson, serve } from '../transport/rpc.js';
import { ArtifactCache, checkMetadata } from './artifacts.js';
import { Instance, type Inbound, type InstanceSnapshot, type OutputPosition } from './instance.js';
import { SwapSessions, type SwapSession } from './swapSessions.js';
import { instanceLogger } from './logs.js';
import { TopologyView } from './topology.js';
import { natsEdges, portable } from './edges.js';
import { selectPartitions } from '../executor/executor.js';
import { FusionBus, fusedEdges } from './fusion.js';
import { TapInterest } from './taps.js';
import { hostedComputation, hostedRunner, launchOf, WarmOperators } from './hosted.js';
import { deliveryEdges, type DeliveryCounters } from './jetstream.js';
import { CheckpointStore, type LoadedCheckpoint } from '../state/checkpointStore.js';
import { DEFAULT_CHECKPOINT_MS } from './instance.js';
import { ProcessSampler } from './processMetrics.js';
import type { Computation } from '../../sdk/index.js';
import type { Logger as PinoLogger } from 'pino';

function withoutMeta(c: LoadedCheckpoint): LoadedCheckpoint {
  const { meta: _dropped, ...rest } = c;
  return rest;
}

/** Languages this worker runs as hosted operator processes (PROTOCOL.md, "Hosted operators"). */
const HOSTS: ('python' | 'cmd')[] = ['python', 'cmd'];
/** Snapshots up to this size (msgpack) go back inline in the release reply instead of through the Object Store. */
const INLINE_SNAPSHOT_BYTES = 256 * 1024;
/** A release still draining after this long gives up, unless the request sets its own budget. */
const DEFAULT_DRAIN_BUDGET_MS = 30_000;
/** When a worker aborts a swap by itself, its upstreams get a fresh pause of this long, so they resume only after the old instances are back. */
const SELF_ABORT_PAUSE_MS = 2_000;
/** A connection opened at preload for an adopt that never came is closed after this long. */
const PREOPENED_MS = 120_000;
/** A heartbeat that cannot be sent is logged at most this often. */
const HEARTBEAT_PROBLEM_LOG_MS = 5_000;

export interface WorkerOptions {
  nc: NatsConnection;
  workerId: string;
  dataDir: string;
  log: Logger;
  /** Credit window per consumer group, in records. */
  window?: number;
  /** An async callback running longer than this is reported stuck (default TOPO_STUCK_AFTER_MS, else 10 s). */
  stuckAfterMs?: number;
  /** The host this worker reports (placement spreads instances over hosts); default os.hostname(). */
  host?: string;
  /** How often instances checkpoint (ms; 0: never). Default TOPO_CHECKPOINT_MS, else 1 s. */
  checkpointMs?: number;
  /**
   * Opens an instance's own connection with the NATS user the controller minted for it (same server and TLS as
   * this worker's); `onRefused` hears what the server refuses it. Without it every instance uses this worker's connection.
   */
  connectInstance?: (instanceId: string, credential: UserCredential, onRefused: (err: Error) => void) => Promise<NatsConnection>;
  /** TOPO_TRACE_SAMPLE: the share of a source's records that start a trace (PROTOCOL.md, Traces), unless its hints say; default 0. */
  traceSample?: number;
}

export class Worker {
  readonly id: string;
  private readonly nc: NatsConnection;
  private readonly log: Logger;
  private readonly dataDir: string;
  private readonly window: number | undefined;
  private readonly instances = new Map<string, Instance>();
  private readonly connectInstance: WorkerOptions['connectInstance'];
  /** Connections a preload opened for instances a swap is about to adopt here. */
  private readonly preopened = new Map<string, { nc: Promise<NatsConnection>; timer: NodeJS.Timeout }>();
  private readonly view = new TopologyView();
  /** Fused instances of this worker find each other here. */
  private readonly fusion = new FusionBus();
  private readonly taps: TapInterest;
  private artifacts!: ArtifactCache;
  private warmOperators!: WarmOperators;
  private heartbeatMs = 1_000;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatProblemAt = -Infinity;
  private readonly processSampler = process.env.TOPO_METRICS === '0' ? undefined : new ProcessSampler();
  private control: { unsubscribe(): void } | undefined;
  private stopping: Promise<void> | undefined;
  /** Snapshots of released (standby) instances, by instance id, until their swap ends. */
  private readonly snapshots = new Map<string, InstanceSnapshot>();
  /** Swaps under way here: which instances are the old version and which the new. */
  private readonly swaps: SwapSessions;
  private readonly stuckAfterMs: number | undefined;
  private snapshotStore: ObjectStore | undefined;
  private checkpoints!: CheckpointStore;
  private readonly checkpointMs: number;
  private readonly traceSample: number;
  private readonly startedAt = Date.now();
  private readonly host: string;
  /** Resolves when a stop was requested (control 'stop' or a signal). */
  readonly stopped: Promise<void>;
  private resolveStopped!: () => void;

  constructor(o: WorkerOptions) {
    this.nc = o.nc;
    this.id = o.workerId;
    this.log = o.log;
    this.dataDir = o.dataDir;
    this.window = o.window;
    this.host = o.host ?? hostname();
    this.traceSample = o.traceSample ?? 0;
    const envCheckpoint = process.env.TOPO_CHECKPOINT_MS;
    this.connectInstance = o.connectInstance;
    this.checkpointMs = o.checkpointMs ?? (envCheckpoint !== undefined && envCheckpoint !== '' && Number(envCheckpoint) >= 0 ? Number(envCheckpoint) : DEFAULT_CHECKPOINT_MS);
    const envStuck = Number(process.env.TOPO_STUCK_AFTER_MS);
    this.stuckAfterMs = o.stuckAfterMs ?? (envStuck > 0 ? envStuck : undefined);
    this.taps = new TapInterest(o.nc);
    this.swaps = new SwapSessions((swapId) => void this.abortBySelf(swapId));
    this.stopped = new Promise((r) => (this.resolveStopped = r));
  }

  async start(): Promise<void> {
    const kvm = new Kvm(this.nc);
    const objm = new Objm(this.nc);
    // The controller creates these; wait for them rather than racing it.
    // All at once: a restarted worker's instances wait for this (time to recovery after a kill -9).
    const [stateKv, store, checkpointsKv] = await Promise.all([
      retry(() => kvm.open(buckets.state), 'the topo_state bucket', this.log),
      retry(() => objm.open(buckets.artifacts), 'the artifact store', this.log),
      retry(() => kvm.open(buckets.checkpoints), 'the topo_checkpoints bucket', this.log),
    ]);
    this.checkpoints = new CheckpointStore(checkpointsKv);
    this.artifacts = new ArtifactCache(store, join(this.dataDir, 'artifacts'));
    this.warmOperators = new WarmOperators(join(this.dataDir, 'progress'), this.log);
    await this.view.watch(stateKv, this.log);
    this.taps.start();
    // Validated by its schema: an op without a required field (a commit or abort without swapId) gets BAD_REQUEST and changes nothing.
    this.control = serve<WorkerControl, object>(this.nc, subjects.workerControl(this.id), (req) => this.onControl(req), {
      schema: schemas.workerControl, what: 'worker control',
    });
    await this.register();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.heartbeatMs);
    this.heartbeat();
  }

  private async register(): Promise<void> {
    const req: RegisterRequest = { workerId: this.id, host: this.host, pid: process.pid, lang: 'ts', hosts: HOSTS, startedAt: this.startedAt };
    const reply = await retry(() => call<RegisterReply>(this.nc, subjects.register, req, 2_000), 'the controller', this.log);
    this.heartbeatMs = reply.heartbeatMs;
    this.log.info({ worker: this.id, heartbeatMs: reply.heartbeatMs, leaseMs: reply.leaseMs }, 'registered with the controller');
  }

  private heartbeat(): void {
    const hb: Heartbeat = {
      workerId: this.id,
      host: this.host,
      pid: process.pid,
      lang: 'ts',
      hosts: HOSTS,
      at: Date.now(),
      instances: [...this.instances.values()].map((i) => i.report()),
      ...(this.processSampler ? { process: this.processSampler.sample() } : {}),
    };
    let bytes = encodeJson(hb);
    const max = this.nc.info?.max_payload;
    let problem: string | undefined;
    if (max !== undefined && bytes.length > max) {
      // Never skip a heartbeat for its size: a live worker would be declared dead and its instances placed twice.
      problem = `heartbeat of ${bytes.length} bytes is over the server's max_payload (${max})`;
      bytes = encodeJson({ ...hb, instances: hb.instances.map(({ lastError: _, ...r }) => r) });
      if (bytes.length > max) problem += ', even without the instances\' last errors: not sent';
      else problem += '; sent without the instances\' last errors';
    }
    try {
      if (max === undefined || bytes.length <= max) this.nc.publish(subjects.heartbeat(this.id), bytes);
    } catch (err) {
      problem = `could not publish the heartbeat: ${(err as Error).message}`;
    }
    if (problem) {
      const now = Date.now();
      // At most once every few seconds, so a worker that cannot heartbeat says so without flooding its log.
      if (now - this.heartbeatProblemAt >= HEARTBEAT_PROBLEM_LOG_MS) {
        this.heartbeatProblemAt = now;
        this.log.error({ worker: this.id, bytes: bytes.length, maxPayload: max }, `${problem}; the controller may declare this worker dead`);
      }
    }
  }

  private async onControl(req: WorkerControl): Promise<object> {
    switch (req?.op) {
      case 'assign':
        return this.assign(req.assignment, req.credential);
      case 'unassign': {
        const inst = this.instances.get(req.instanceId);
        if (!inst) return { unassigned: false };
        this.instances.delete(req.instanceId);
        await inst.stop();
        this.heartbeat();
        return { unassigned: true };
      }
      case 'pause': {
        const { fences, partitionFences, partitionAgesMs } = await this.instance(req.instanceId).pauseOutput(req.streams, req.leaseMs ?? 5_000);
        const reply: PauseReply = { producer: this.instance(req.instanceId).producerId, fences, partitionFences, partitionAgesMs };
        return reply;
      }
      case 'resume':
        this.instance(req.instanceId).resumeOutput();
        return {};
      case 'drain':
        return this.instance(req.instanceId).drain(req.timeoutMs);
      case 'preload': {
        const t0 = performance.now();
        // Signed in before the reply: the pause that follows must not share this worker's loop with the sign-ins.
        await Promise.allSettled((req.instances ?? []).map(({ instanceId, credential }) => this.preopen(instanceId, credential)));
        if (req.lang === 'python' || req.lang === 'cmd') {
          // The operator processes the adopts will take, started now: not inside the pause.
          const artifact = await this.artifacts.loadHosted(req.sha, req.lang);
          await this.warmOperators.warm(req.sha, req.metadata, launchOf(artifact, req.sha, req.metadata.name, join(this.dataDir, 'operators')), req.count ?? 1);
        } else checkMetadata(await this.artifacts.load(req.sha), req.metadata);
        return { loadMs: performance.now() - t0 };
      }
      case 'release':
        return this.release(req.instanceId, this.swaps.join(req.swapId, req.leaseMs, req.upstreams), req.export, req.budgetMs ?? DEFAULT_DRAIN_BUDGET_MS, req.fences ?? []);
      case 'adopt':
        return this.adopt(this.swaps.join(req.swapId, req.leaseMs, req.upstreams), req.assignment, req.from, req.filterByPartition, req.probation, req.snapshots ?? []);
      case 'renew':
        return { renewed: this.swaps.renew(req.swapId, req.leaseMs) };
      case 'health':
        return this.instance(req.instanceId).health(req.timeoutMs);
      case 'commit':
        return this.commitSwap(req.swapId);
      case 'abort':
        return this.abortSwap(req.swapId, req.reason);
      case 'replay':
        return this.replay(req.swapId, req.handback, req.from);
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

  private async assign(a: Assignment, credential?: UserCredential): Promise<object> {
    if (this.instances.has(a.instanceId)) return { instanceId: a.instanceId, already: true };
    const own = await this.ownConnection(a, credential);
    const log = this.logOf(a, own);
    // Not handed over by a swap: it starts where the last checkpoint of its partitions left off (empty when there is none).
    const t0 = Date.now();
    const loaded = this.checkpointMs > 0 ? await this.loadCheckpoint(a, log) : undefined;
    // Only at-least-once output continues the predecessor's producer id and sequence (its readers recognize what is
    // produced again); at-most-once output starts a fresh sequence under the instance's own id, as a new producer.
    const from = loaded?.meta && !this.continuesOutput(a) ? withoutMeta(loaded) : loaded;
    const inst = await this.newInstance(a, log, from?.meta, own);
    if (from) inst.restore(from);
    // A fresh at-least-once producer (no output position to continue) claims its producer id before it publishes.
    if (!from?.meta && this.continuesOutput(a)) await inst.claimOutput();
    this.instances.set(a.instanceId, inst);
    try {
      await inst.start();
    } catch (err) {
      this.instances.delete(a.instanceId);
      log.error({ err }, (err as Error).message);
      throw err;
    }
    log.info({ sha: a.sha.slice(0, 12) }, `instance ${a.index + 1}/${a.count} of "${a.computation}" started`);
    if (from) {
      log.info({ keys: from.state.entries.length, timers: from.timers.length, chunks: from.chunks, checkpointAgeMs: t0 - from.at, restoreMs: Date.now() - t0, producer: inst.producerId },
        `restored from its checkpoint of ${t0 - from.at} ms ago (${from.state.entries.length} key(s), ${from.timers.length} timer(s), ${from.chunks} chunk(s)) in ${Date.now() - t0} ms`);
    }
    this.heartbeat();
    return { instanceId: a.instanceId };
  }

  /**
   * An Instance of `a`: a TS computation imported from its bundle, or one in
   * another language run by an operator process (its metadata is checked
   * against the hello of that process when it starts).
   */
  private async loadCheckpoint(a: Assignment, log: Logger): Promise<LoadedCheckpoint | undefined> {
    try {
      const loaded = await this.checkpoints.load(a.computation, a.partitions ?? partitionsOwnedBy(a.index, a.count), a.index, a.count);
      if (loaded?.invalid) log.error({ invalid: loaded.invalid }, `${loaded.invalid} checkpoint chunk(s) of "${a.computation}" were not valid and were skipped`);
      if (loaded?.unpinned) {
        log.warn({ unpinned: loaded.unpinned }, `${loaded.unpinned} checkpoint chunk(s) of "${a.computation}" were read at their latest, not at the revision its output position names: ` +
          'records replayed from them may be counted again downstream');
      }
      return loaded;
    } catch (err) {
      log.error({ err: (err as Error).message }, `could not read the checkpoints of "${a.computation}": starting empty (${(err as Error).message})`);
      return undefined;
    }
  }

  /**
   * The instance's own connection, as the NATS user the controller minted for it (only its streams), or
   * undefined: no credential (a server whose auth topo does not manage), or this worker cannot open one.
   */
  private async ownConnection(a: Assignment, credential: UserCredential | undefined): Promise<NatsConnection | undefined> {
    if (!credential || !this.connectInstance) return undefined;
    return this.connectInstance(a.instanceId, credential, this.refusalsOf(a.instanceId));
  }

  /**
   * Starts signing in, now, as the user of an instance a swap will adopt here (the preload): an adopt runs inside
   * the upstreams' pause, and a sign-in takes tens of ms. One not taken within PREOPENED_MS is closed.
   */
  private preopen(instanceId: string, credential: UserCredential): Promise<unknown> {
    if (!this.connectInstance) return Promise.resolve();
    const already = this.preopened.get(instanceId);
    if (already) return already.nc;
    const nc = this.connectInstance(instanceId, credential, this.refusalsOf(instanceId));
    nc.catch((err: unknown) => this.log.warn({ instanceId, err: (err as Error).message }, `could not sign in as instance ${instanceId}: ${(err as Error).message}; it will use the worker's connection`));
    const timer = setTimeout(() => {
      if (this.preopened.get(instanceId)?.nc !== nc) return;
      this.preopened.delete(instanceId);
      void nc.then((c) => c.close(), () => undefined);
    }, PREOPENED_MS);
    timer.unref();
    this.preopened.set(instanceId, { nc, timer });
    return nc;
  }

  /** The connection preload opened for `instanceId`, or undefined (none, or it could not sign in: the worker's is used). */
  private async takePreopened(instanceId: string): Promise<NatsConnection | undefined> {
    const p = this.preopened.get(instanceId);
    if (!p) return undefined;
    this.preopened.delete(instanceId);
    clearTimeout(p.timer);
    return p.nc.catch(() => undefined);
  }

  /** What the server refuses an instance's own user goes to that instance (logged and counted), or to this worker's log before it exists. */
  private refusalsOf(instanceId: string): (err: Error) => void {
    return (err) => {
      const inst = this.instances.get(instanceId);
      if (inst) inst.noteRefused(err);
      else this.log.error({ instanceId, err: err.message }, `NATS refused instance ${instanceId}: ${err.message}`);
    };
  }

  /** Lines go out on the instance's own connection while it is open, then on this worker's. */
  private logOf(a: Assignment, own: NatsConnection | undefined): PinoLogger {
    const bindings = { computation: a.computation, index: a.index, instanceId: a.instanceId, worker: this.id, version: a.version };
    return instanceLogger(own ? () => (own.isClosed() ? this.nc : own) : this.nc, bindings);
  }

  /** True when an instance of `a` continues its predecessor's output position: some ostream is at-least-once. */
  private continuesOutput(a: Assignment): boolean {
    return a.metadata.ostreams.some((s) => this.view.isAtLeastOnce(s) || a.metadata.delivery?.[s] !== undefined);
  }

  /** `own`: the instance's own connection, closed here when the instance cannot be made; `continues`: the output position it takes on. */
  private async newInstance(a: Assignment, log: PinoLogger, continues?: OutputPosition, own?: NatsConnection): Promise<Instance> {
    try {
      return await this.makeInstance(a, log, continues, own);
    } catch (err) {
      await own?.close().catch(() => undefined);
      throw err;
    }
  }

  private async makeInstance(a: Assignment, log: PinoLogger, continues?: OutputPosition, own?: NatsConnection): Promise<Instance> {
    if (a.lang === 'python' || a.lang === 'cmd') {
      const artifact = await this.artifacts.loadHosted(a.sha, a.lang);
      const launch = launchOf(artifact, a.sha, a.computation, join(this.dataDir, 'operators'));
      const progressDir = join(this.dataDir, 'progress');
      const { artifactFile: _none, ...deps } = this.instanceDeps(log, a, own);
      const warm = this.warmOperators.take(a.sha, a.computation);
      return new Instance(a, hostedComputation(a.metadata), { ...deps, ...(continues ? { continues } : {}), hosted: (note) => hostedRunner(launch, a, log, progressDir, note, warm) });
    }
    const comp: Computation = await this.artifacts.load(a.sha);
    checkMetadata(comp, a.metadata);
    return new Instance(a, comp, { ...this.instanceDeps(log, a, own), ...(continues ? { continues } : {}) });
  }

  /** `own`: the instance's own connection (its data plane, logs and dead letters), closed with it; else this worker's. */
  private instanceDeps(log: Logger, a: Assignment, own?: NatsConnection) {
    const nc = own ?? this.nc;
    // At-least-once streams on JetStream, the others on core NATS; fused edges on top of both.
    const delivery: DeliveryCounters = { publishRetries: 0 };
    const base = deliveryEdges(natsEdges(nc, this.view), nc, this.view, log, delivery, a.metadata);
    return {
      nc, workerNc: this.nc, ...(own ? { ownConnection: own } : {}), view: this.view, log, workerId: this.id, artifactFile: this.artifacts.fileOf(a.sha),
      edges: a.fusion ? fusedEdges(base, this.fusion, this.taps, a.fusion, a.index) : base,
      checkpoints: this.checkpoints, checkpointMs: this.checkpointMs, delivery, traceSample: this.traceSample,
      ...(this.window !== undefined ? { window: this.window } : {}),
      ...(this.stuckAfterMs !== undefined ? { stuckAfterMs: this.stuckAfterMs } : {}),
    };
  }

  // ---- hot swap (PROTOCOL.md, "Hot swap") -------------------------------------

  /**
   * Drains and snapshots an old instance. It belongs to the swap's old
   * version from the first moment, so an abort reinstates it whatever its
   * release reached: a release that fails or runs out of budget discards nothing.
   */
  private async release(instanceId: string, s: SwapSession, exportTo: 'memory' | 'store', budgetMs: number, fences: readonly ProducerFence[]): Promise<ReleaseReply> {
    const inst = this.instance(instanceId);
    const other = this.swaps.holding(instanceId);
    if (other && other !== s) throw new ConflictError(`instance ${instanceId} is already part of swap ${other.swapId}`);
    const kept = this.snapshots.get(instanceId);
    if (inst.state === 'standby' && s.old.has(instanceId) && kept) {
      return { keys: kept.state.entries.length, timers: kept.timers.length, bytes: packr.pack(kept).length, drained: 0 };
    }
    s.old.add(instanceId);
    const { snapshot, drained, handedOver, fencesMet, outputFences } = await inst.release(s.swapId, budgetMs, fences);
    this.snapshots.set(instanceId, snapshot);
    const bytes = packr.pack(snapshot);
    // A small snapshot rides back in the reply (the controller hands it to its adopters): the store costs several round trips each way.
    const inline = exportTo === 'store' && bytes.length <= INLINE_SNAPSHOT_BYTES ? Buffer.from(bytes).toString('base64') : undefined;
    if (exportTo === 'store' && inline === undefined) {
      const store = await this.snapshotsBucket();
      await store.putBlob({ name: `${s.swapId}/${instanceId}` }, bytes);
    }
    this.heartbeat();
    return {
      keys: snapshot.state.entries.length, timers: snapshot.timers.length, bytes: bytes.length, drained,
      ...(handedOver ? { handedOver } : {}), ...(fencesMet ? { fencesMet } : {}), ...(outputFences.length ? { outputFences } : {}),
      ...(inline !== undefined ? { inline } : {}),
    };
  }

  private async snapshotsBucket(): Promise<ObjectStore> {
    this.snapshotStore ??= await new Objm(this.nc).create(buckets.snapshots);
    return this.snapshotStore;
  }

  /**
   * Merges the snapshots of the instances being replaced, keeping only this
   * instance's keys (and handed-over input of its partitions) when asked.
   */
  private async gatherSnapshot(swapId: string, from: SnapshotRef[], keep: Set<number> | undefined, inline = new Map<string, string>()): Promise<InstanceSnapshot> {
    const entries: [string, unknown][] = [];
    const timers = new Map<string, number>();
    const pending: Inbound[] = [];
    const seen = new Map<string, number>();
    const pos = new Map<string, number>();
    // Fetched in parallel: a scale's adopters read every old instance's snapshot, inside the pause.
    const snaps = await Promise.all(from.map(async (ref) => {
      const local = ref.workerId === this.id ? this.snapshots.get(ref.instanceId) : undefined;
      if (local) return local;
      const carried = inline.get(ref.instanceId);
      if (carried !== undefined) return packr.unpack(Buffer.from(carried, 'base64')) as InstanceSnapshot;
      const bytes = await (await this.snapshotsBucket()).getBlob(`${swapId}/${ref.instanceId}`);
      if (!bytes) throw new NotFoundError(`no snapshot of ${ref.instanceId} for swap ${swapId} (was it released?)`);
      return packr.unpack(bytes) as InstanceSnapshot;
    }));
    for (const snap of snaps) {
      // State and timers belong to the partition of their key (runtime/executor): an adopter that owns some
      // partitions takes theirs. A timer that is about the instance, not a key (a window), is set again by init.
      const mine = keep ? selectPartitions(snap, keep) : snap;
      entries.push(...mine.state.entries);
      for (const [k, at] of mine.timers) timers.set(k, Math.min(at, timers.get(k) ?? Infinity));
      for (const item of snap.pending ?? []) if (!keep || keep.has(item.partition)) pending.push(item);
      // Consumed-up-to marks are per partition (the last token of the key), like the state.
      for (const [k, seq] of snap.seen ?? []) {
        if (keep && !keep.has(Number(k.slice(k.lastIndexOf(' ') + 1)))) continue;
        seen.set(k, Math.max(seq, seen.get(k) ?? 0));
      }
      // At-least-once input positions, per `${stream} ${partition}` likewise.
      for (const [k, seq] of snap.pos ?? []) {
        if (keep && !keep.has(Number(k.slice(k.lastIndexOf(' ') + 1)))) continue;
        pos.set(k, Math.max(seq, pos.get(k) ?? 0));
      }
    }
    // One for one (a move, a swap of the same instance count): the adopter continues the output of the instance it replaces.
    const output = snaps.length === 1 && !keep ? snaps[0]!.output : undefined;
    return {
      state: { entries }, timers: [...timers], ...(pending.length ? { pending } : {}), ...(seen.size ? { seen: [...seen] } : {}), ...(pos.size ? { pos: [...pos] } : {}),
      ...(output ? { output } : {}),
    };
  }

  private async adopt(
    s: SwapSession, a: Assignment, from: SnapshotRef[], filterByPartition: boolean, probation: Probation, carried: { instanceId: string; data: string }[],
  ): Promise<object> {
    if (this.instances.has(a.instanceId)) return { instanceId: a.instanceId, already: true };
    const own = await this.takePreopened(a.instanceId);
    const log = this.logOf(a, own);
    const inline = new Map(carried.map((c) => [c.instanceId, c.data]));
    let snapshot: InstanceSnapshot;
    try {
      snapshot = await this.gatherSnapshot(s.swapId, from, filterByPartition ? new Set(a.partitions ?? partitionsOwnedBy(a.index, a.count)) : undefined, inline);
    } catch (err) {
      await own?.close().catch(() => undefined);
      throw err;
    }
    const inst = await this.newInstance(a, log, this.continuesOutput(a) ? snapshot.output : undefined, own);
    inst.restore(snapshot);
    this.instances.set(a.instanceId, inst);
    s.adopted.set(a.instanceId, from);
    try {
      await inst.start(probation);
    } catch (err) {
      this.instances.delete(a.instanceId);
      s.adopted.delete(a.instanceId);
      log.error({ err }, (err as Error).message);
      throw err;
    }
    log.info({ sha: a.sha.slice(0, 12), swapId: s.swapId }, `v${a.version} of "${a.computation}" swapped in (instance ${a.index + 1}/${a.count}), on probation`);
    this.heartbeat();
    return { instanceId: a.instanceId };
  }

  private async commitSwap(swapId: string): Promise<object> {
    const s = this.swaps.end(swapId);
    if (!s) return { committed: 0 };
    let committed = 0;
    for (const id of s.old) {
      const inst = this.instances.get(id);
      this.snapshots.delete(id);
      if (!inst) continue;
      this.instances.delete(id);
      await inst.stop();
    }
    for (const id of s.adopted.keys()) {
      const inst = this.instances.get(id);
      if (!inst) continue;
      inst.commit();
      committed++;
    }
    this.heartbeat();
    return { committed };
  }

  /**
   * Rolls the swap back here: the new instances stop and hand back every
   * input batch they took, in order, to the old instances they replaced,
   * which resume with their own state and queue. An old instance is never
   * discarded, whatever point its release reached.
   */
  private async abortSwap(swapId: string, reason: string): Promise<object> {
    const s = this.swaps.end(swapId);
    if (!s) return { reinstated: 0 };
    const olds = [...s.old].map((id) => this.instances.get(id)).filter((i): i is Instance => i !== undefined);
    const replay = new Map<Instance, Inbound[]>(olds.map((o) => [o, []]));
    const handbacks: Handback[] = [];
    let lost = 0;
    for (const [id, from] of s.adopted) {
      const inst = this.instances.get(id);
      if (!inst) continue;
      const items = await inst.abandon();
      this.instances.delete(id);
      // Each item goes back to the one old instance that would have had it; those on other workers get it through the store.
      const away: Inbound[] = [];
      for (const item of items) {
        const owner = this.ownerOf(item, from, inst.assignment);
        if (owner) replay.get(owner)?.push(item);
        else away.push(item);
      }
      if (away.length === 0) continue;
      const name = `${swapId}/handback/${id}`;
      try {
        await (await this.snapshotsBucket()).putBlob({ name }, packr.pack(away.map(portable)));
        handbacks.push({ name, from, batches: away.length });
      } catch (err) {
        lost += away.length;
        this.log.error({ err, swapId, batches: away.length }, `swap ${swapId}: could not store ${away.length} input batch(es) for their old instances on other workers: lost`);
      }
    }
    for (const o of olds) {
      this.snapshots.delete(o.id);
      o.reinstate(replay.get(o) ?? []);
    }
    this.log.info({ swapId, reason, reinstated: olds.length, handbacks: handbacks.length }, `swap ${swapId} rolled back here: ${reason}`);
    this.heartbeat();
    const reply: AbortReply = { reinstated: olds.length, ...(handbacks.length ? { handbacks } : {}), ...(lost ? { lostBatches: lost } : {}) };
    return reply;
  }

  /**
   * The old instance here that takes `item` back, among `from` (every old instance of the adopter that had it),
   * or undefined when that one runs on another worker. Key-grouped input goes to the owner of its partition;
   * other input to from[partition % from.length], so that each item goes to exactly one (see the replay op).
   */
  private ownerOf(item: Inbound, from: readonly SnapshotRef[], a: Assignment): Instance | undefined {
    const grouping = a.metadata.istreams.find((i) => i.stream === item.stream)?.grouping;
    // At-least-once input is read by partition whatever its grouping: it goes back to the partition's reader, whose position it moves.
    if (grouping === 'key' || (item.js && grouping !== 'broadcast')) {
      for (const r of from) {
        const o = r.workerId === this.id ? this.instances.get(r.instanceId) : undefined;
        if (o?.partitions.includes(item.partition)) return o;
      }
      return undefined;
    }
    const r = from[item.partition % from.length]!;
    return r.workerId === this.id ? this.instances.get(r.instanceId) : undefined;
  }

  /** The `replay` op: this worker's share of a handback, appended to its (reinstated) old instances' input. */
  private async replay(swapId: string, handback: string, from: SnapshotRef[]): Promise<{ replayed: number }> {
    // Only this swap's hand-backs: the op must not read just any object of the store into an instance's input.
    if (!handback.startsWith(`${swapId}/handback/`)) throw new BadRequestError(`handback ${JSON.stringify(handback.slice(0, 200))} is not one of swap ${swapId}'s`);
    const bytes = await (await this.snapshotsBucket()).getBlob(handback);
    if (!bytes) throw new NotFoundError(`handback ${handback} of swap ${swapId} is not in the store`);
    let stored: unknown;
    try {
      stored = packr.unpack(bytes);
    } catch (err) {
      throw new BadRequestError(`handback ${handback} is not msgpack: ${(err as Error).message}`);
    }
    if (!Array.isArray(stored)) throw new BadRequestError(`handback ${handback} is not a list of input batches`);
    // What an abort stored: raw batches with their stream and partition. Anything else is counted and left out.
    const items = stored.filter((x): x is Inbound => x !== null && typeof x === 'object' && typeof (x as Inbound).stream === 'string' &&
      Number.isInteger((x as Inbound).partition) && ((x as Inbound).data instanceof Uint8Array || typeof (x as Inbound).batch === 'object') &&
      ((x as Inbound).js === undefined || Number.isSafeInteger((x as Inbound).js?.seq)));
    if (items.length !== stored.length) this.log.error({ swapId, handback, bad: stored.length - items.length }, `handback ${handback}: ${stored.length - items.length} item(s) are not input batches: left out`);
    const mine = new Map<Instance, Inbound[]>();
    for (const item of items) {
      const holder = from.find((r) => r.workerId === this.id && this.instances.get(r.instanceId));
      const owner = holder ? this.ownerOf(item, from, this.instances.get(holder.instanceId)!.assignment) : undefined;
      if (owner) mine.set(owner, [...(mine.get(owner) ?? []), item]);
    }
    let replayed = 0;
    for (const [o, list] of mine) {
      o.replay(list);
      replayed += list.length;
    }
    this.log.info({ swapId, handback, replayed }, `swap ${swapId}: ${replayed} input batch(es) handed back from another worker`);
    return { replayed };
  }

  /**
   * The swap lease ran out (the controller stopped renewing it): roll back
   * here. The upstreams get a fresh short pause first, so they resume only
   * after the old instances are subscribed again and nothing they publish is lost.
   */
  private async abortBySelf(swapId: string): Promise<void> {
    const s = this.swaps.get(swapId);
    if (!s) return;
    this.log.warn({ swapId, upstreams: s.upstreams.length }, `swap ${swapId} got no commit, abort or renewal within its lease: rolling it back here`);
    await Promise.allSettled(s.upstreams.map((u: UpstreamRef) =>
      call(this.nc, subjects.workerControl(u.workerId), { op: 'pause', instanceId: u.instanceId, swapId, streams: u.streams, leaseMs: SELF_ABORT_PAUSE_MS }, 2_000)));
    try {
      const reply = (await this.abortSwap(swapId, 'the swap lease expired (controller gone)')) as AbortReply;
      await this.handBackBySelf(swapId, reply.handbacks ?? []);
    } catch (err) {
      this.log.error({ err, swapId }, `rollback of swap ${swapId} after its lease expired failed: ${(err as Error).message}`);
    }
  }

  /**
   * What the rollback's controller would do with the hand-backs (a scale or move: input the new instances
   * here took for old instances on other workers): ask those workers to replay them, while the upstreams
   * are still paused, so they come before anything new. Without it they would stay in the store, lost.
   */
  private async handBackBySelf(swapId: string, handbacks: readonly Handback[]): Promise<void> {
    for (const h of handbacks) {
      const targets = [...new Set(h.from.map((r) => r.workerId))].filter((w) => w !== this.id);
      const outcomes = await Promise.allSettled(targets.map((w) =>
        call<{ replayed?: number }>(this.nc, subjects.workerControl(w), { op: 'replay', swapId, handback: h.name, from: h.from }, 2_000)));
      const replayed = outcomes.reduce((n, o) => n + (o.status === 'fulfilled' ? (o.value.replayed ?? 0) : 0), 0);
      if (replayed === h.batches) this.log.info({ swapId, handback: h.name, replayed }, `swap ${swapId}: ${replayed} input batch(es) handed back to old instances on ${targets.join(', ')}`);
      else this.log.error({ swapId, handback: h.name, replayed, batches: h.batches }, `swap ${swapId}: ${h.batches - replayed} of ${h.batches} handed-back input batch(es) did not reach an old instance: lost`);
      await (await this.snapshotsBucket()).delete(h.name).catch(() => undefined);
    }
  }

  /** Stops every instance (processing what they hold), then the connection. Idempotent. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        this.log.info({ worker: this.id }, 'worker stopping');
        this.control?.unsubscribe();
        if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
        this.processSampler?.close();
        await Promise.allSettled([...this.instances.values()].map((i) => i.stop()));
        await this.warmOperators?.closeAll();
        for (const id of [...this.preopened.keys()]) await (await this.takePreopened(id))?.close().catch(() => undefined);
        this.instances.clear();
        this.view.stop();
        this.taps.stop();
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
