/**
 * The topo controller: owns desired state, worker leases and placement, and
 * serves the CLI API. `startController` runs it in-process (tests, `topo up`);
 * main.ts wraps it as a process.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { KV } from '@nats-io/kv';
import {
  checkMessage, schemas, subjects,
  type DeployRequest, type Heartbeat, type HistoryReply, type HistoryRequest, type KillRequest, type PromoteRequest, type RegisterReply,
  type InstanceReport, type RegisterRequest, type RollbackRequest, type ScaleReply, type ScaleRequest, type FuseRequest, type FusionReply, type SplitRequest, type StatusReply, type SwapReply, type SwapRequest, type UserCredential, type WorkerStatus,
} from '../../protocol/index.js';
import { dirname } from 'node:path';
import { AccountRevocations, accountSigner } from '../transport/auth.js';
import { connectNats, followOutages, type TlsFiles } from '../transport/connect.js';
import { decodeJson, serve } from '../transport/rpc.js';
import { processLogger } from '../log.js';
import { controlWorker, type ControllerContext, type ControllerSettings } from './context.js';
import { openControlPlane } from './infrastructure.js';
import { deploy, kill } from './lifecycle.js';
import { Rebalancer } from './rebalance.js';
import { Autopilot } from './autopilot.js';
import { Reconciler } from './reconciler.js';
import { incidentsOf, watchStuckReports } from './incidents.js';
import { SerialQueue } from './serialQueue.js';
import { StateStore, type SwapJournal } from './stateStore.js';
import { status, workerStatuses } from './status.js';
import { scale } from './scale.js';
import { fuse, split } from './fusion.js';
import { history, promote, rollback, swap } from './swap.js';
import { membersOf, recoverInterruptedSwaps } from './swapRecovery.js';
import { WorkerTable, type WorkerChange, type WorkerEntry } from './workerTable.js';
import { startBridges } from './bridges.js';
import { InstanceCredentials, IssuedLedger } from './instanceCredentials.js';
import { DataStreamTrimmer } from './dataStreamTrimmer.js';
import { startControllerHttp } from './web.js';
import { httpListenFrom, type HttpListen, type HttpServer } from '../http/server.js';

export type { KillReply } from './lifecycle.js';

export interface ControllerOptions {
  /** Admin .creds file (default $TOPO_NATS_CREDS). */
  creds?: string | undefined;
  tls?: TlsFiles | undefined;
  natsUrl: string;
  logger?: Logger;
  /** Heartbeat interval told to workers (default 1000). */
  heartbeatMs?: number;
  /** A worker silent this long is dead (default 5000). */
  leaseMs?: number;
  /** Timeout of one assign request (default 20000). */
  assignTimeoutMs?: number;
  /** Timeout of unassign and other control requests (default 10000). */
  controlTimeoutMs?: number;
  /** How long a heartbeat may disagree with desired state before it is corrected (default 3 heartbeats). */
  reconcileGraceMs?: number;
  /** Dead workers are forgotten after this long (default 10 minutes). */
  forgetDeadAfterMs?: number;
  /** Timeout of one swap step request to a worker (default 5000); short, so a dead worker fails a swap quickly. */
  swapStepTimeoutMs?: number;
  /** Lease of a swap's pause on an upstream (default 5000). */
  pauseLeaseMs?: number;
  /** How often a swap renews its pauses (default 1500). */
  pauseRenewMs?: number;
  /**
   * Lease of a swap on its workers (default pauseLeaseMs - pauseRenewMs - 1000, i.e. 2500); must be shorter than
   * pauseLeaseMs - pauseRenewMs, so that it runs out before the upstream pauses of a controller that died.
   */
  swapLeaseMs?: number;
  /** Drain budget of a release (default 30000). */
  drainBudgetMs?: number;
  /**
   * Move instances onto a worker that joins (default true; TOPO_REBALANCE=0 turns it off), one at a
   * time through the swap steps, until no two live workers of a language differ by more than one instance.
   */
  rebalance?: boolean;
  /** Let the oracle fuse, split and autoscale live (default true; TOPO_AUTOPILOT=0 turns it off): see autopilot.ts. */
  autopilot?: boolean;
  /** Where to serve /metrics and the web UI (default $TOPO_HTTP, else a free local port); false: nowhere. */
  http?: HttpListen | false;
}

export interface RunningController {
  readonly natsUrl: string;
  readonly settings: Readonly<ControllerSettings>;
  /** http://host:port of /metrics and the web UI, when served. */
  readonly httpUrl: string | undefined;
  /** Current status, as `topo.api.status` answers it. */
  status(): StatusReply;
  /** Resolves once queued deploy/kill/re-placement work has finished. */
  idle(): Promise<void>;
  /**
   * Stops serving and drains the connection. Idempotent. With `stopWorkers`
   * (`topo down`: the controller process on SIGTERM/SIGINT) it first sends the
   * worker control `stop` to every live registered worker, so that workers
   * started elsewhere (native ones included) do not outlive the topology.
   */
  stop(opts?: { stopWorkers?: boolean }): Promise<void>;
}

/** How long `stop` waits for each worker to answer a control `stop` (all in parallel). */
export const STOP_WORKERS_TIMEOUT_MS = 2_000;

/** Sends `stop` to every live registered worker, in parallel, best effort; logs each outcome. */
async function stopLiveWorkers(ctx: ControllerContext): Promise<void> {
  const live = ctx.workers.alive();
  if (live.length === 0) return;
  ctx.log.info({ workers: live.map((w) => w.workerId) }, `sending stop to ${live.length} live worker(s)`);
  await Promise.all(live.map(async (w) => {
    try {
      await controlWorker(ctx, w.workerId, { op: 'stop' }, STOP_WORKERS_TIMEOUT_MS);
      ctx.log.info({ workerId: w.workerId }, `worker ${w.workerId} acknowledged stop`);
    } catch (err) {
      ctx.log.warn({ workerId: w.workerId, err: (err as Error).message }, `worker ${w.workerId} did not acknowledge stop: ${(err as Error).message}`);
    }
  }));
}

/** How much earlier than the upstream pauses (at worst) a swap lease runs out by default: the workers' time to pause them again. */
export const SWAP_LEASE_MARGIN_MS = 1_000;

/** The controller's settings from its options (defaults filled in, combinations checked). */
export function settingsFrom(o: ControllerOptions): ControllerSettings {
  const heartbeatMs = o.heartbeatMs ?? 1_000;
  const leaseMs = o.leaseMs ?? 5_000;
  if (!(heartbeatMs > 0) || !(leaseMs > heartbeatMs)) {
    throw new Error(`controller: leaseMs (${leaseMs}) must be greater than heartbeatMs (${heartbeatMs}) and both positive`);
  }
  const swapStepTimeoutMs = o.swapStepTimeoutMs ?? 5_000;
  const pauseLeaseMs = o.pauseLeaseMs ?? 5_000;
  const pauseRenewMs = o.pauseRenewMs ?? 1_500;
  if (!(swapStepTimeoutMs > 0) || !(pauseRenewMs > 0) || !(pauseLeaseMs > pauseRenewMs)) {
    throw new Error(`controller: pauseLeaseMs (${pauseLeaseMs}) must be greater than pauseRenewMs (${pauseRenewMs}), and swapStepTimeoutMs positive`);
  }
  // A controller that dies may have renewed the swap lease just before, and the pauses up to pauseRenewMs
  // before that: the pauses then hold for pauseLeaseMs - pauseRenewMs at least. The swap lease runs out a
  // margin earlier, so the workers pause the upstreams again before a pause can end (PROTOCOL.md, Swap leases).
  const pausesHoldMs = pauseLeaseMs - pauseRenewMs;
  const swapLeaseMs = o.swapLeaseMs ?? Math.max(pausesHoldMs - Math.min(SWAP_LEASE_MARGIN_MS, Math.floor(pausesHoldMs / 3)), pauseRenewMs / 2 + 1);
  if (!(swapLeaseMs > pauseRenewMs / 2) || !(swapLeaseMs < pausesHoldMs)) {
    throw new Error(
      `controller: swapLeaseMs (${swapLeaseMs}) must be shorter than pauseLeaseMs - pauseRenewMs (${pausesHoldMs}: how long the upstream pauses hold ` +
        `after the last renewal of a controller that died) and longer than pauseRenewMs / 2`,
    );
  }
  const drainBudgetMs = o.drainBudgetMs ?? 30_000;
  if (!(drainBudgetMs > 0)) throw new Error(`controller: drainBudgetMs must be positive, got ${drainBudgetMs}`);
  return {
    heartbeatMs,
    leaseMs,
    assignTimeoutMs: o.assignTimeoutMs ?? 20_000,
    controlTimeoutMs: o.controlTimeoutMs ?? 10_000,
    reconcileGraceMs: o.reconcileGraceMs ?? 3 * heartbeatMs,
    forgetDeadAfterMs: o.forgetDeadAfterMs ?? 600_000,
    swapStepTimeoutMs,
    pauseLeaseMs,
    pauseRenewMs,
    swapLeaseMs,
    drainBudgetMs,
  };
}

export async function startController(opts: ControllerOptions): Promise<RunningController> {
  const settings = settingsFrom(opts);
  const log = opts.logger ?? processLogger('topo-controller');
  const nc: NatsConnection = await connectNats(opts.natsUrl, {
    name: 'topo-controller',
    timeoutMs: 15_000,
    creds: opts.creds,
    tls: opts.tls,
    onAsyncError: (err) => log.error({ err }, `NATS refused: ${err.message}`),
  });
  let ctx: ControllerContext;
  try {
    const stores = await openControlPlane(nc);
    // Invalid entries (comp.*, swap.*, history) are skipped, each with an error in the log.
    const store = new StateStore(stores.state, stores.history, (key, problem) =>
      log.error({ key: key.slice(0, 200) }, `KV ${key.slice(0, 200)} is not valid (${problem.slice(0, 500)}); skipping it`));
    await store.load();
    ctx = {
      nc, natsUrl: opts.natsUrl, log, settings, store, workers: new WorkerTable(settings.leaseMs), artifacts: stores.artifacts, checkpoints: stores.checkpoints,
      queue: new SerialQueue(), inFlight: new Set(), swapping: new Set(), startedAt: Date.now(),
      ...instanceCredentialsFor(opts, log, stores.state),
    };
    await ctx.credentials?.load();
    await seedWorkers(ctx, stores.workers);
    // Swaps the previous controller left half done: reconciliation leaves them alone until recovered.
    const journals = await store.swapJournals();
    for (const j of journals) for (const m of membersOf(j)) ctx.swapping.add(m.name);
    // Producers and consumers outside the controller: registration, leases, consumer groups in topo_state.
    const bridges = await startBridges(ctx, stores.state);
    const listen = opts.http === false ? undefined : opts.http ?? httpListenFrom(process.env.TOPO_HTTP);
    const http = listen ? await startControllerHttp(ctx, listen) : undefined;
    ctx.httpUrl = http?.url;
    return run(ctx, stores.workers, journals, opts.rebalance ?? process.env.TOPO_REBALANCE !== '0', opts.autopilot ?? process.env.TOPO_AUTOPILOT !== '0', bridges, http);
  } catch (err) {
    await nc.close().catch(() => {});
    throw err;
  }
}

/**
 * Instance credentials when the account's key sits beside this controller's creds (the auth folder `topo up`
 * makes); else (a server with other auth, or none) instances use their worker's connection.
 */
function instanceCredentialsFor(opts: ControllerOptions, log: Logger, stateKv: KV): { credentials?: InstanceCredentials } {
  const creds = opts.creds ?? (process.env.TOPO_NATS_CREDS || undefined);
  if (!creds || process.env.TOPO_INSTANCE_CREDENTIALS === '0') return {};
  const dir = dirname(creds);
  const signer = accountSigner(dir);
  if (!signer) return {};
  log.info('each instance gets a NATS user of its own (its streams only), revoked once the instance has ended');
  const connectSystem = (credential: UserCredential) => connectNats(opts.natsUrl, { name: 'topo-controller revocations', credential, tls: opts.tls, timeoutMs: 15_000 });
  return { credentials: new InstanceCredentials(signer, AccountRevocations.of(dir), connectSystem, log, new IssuedLedger(stateKv, log)) };
}

/** Every instance that still exists: placed in desired state, reported by a live worker, or being assigned. */
function liveInstances(ctx: ControllerContext): Set<string> {
  const live = new Set<string>(ctx.inFlight);
  for (const rec of ctx.store.all()) for (const p of rec.placements) live.add(p.instanceId);
  for (const w of ctx.workers.alive()) for (const id of w.reported.keys()) live.add(id);
  return live;
}

async function seedWorkers(ctx: ControllerContext, workersKv: Awaited<ReturnType<typeof openControlPlane>>['workers']): Promise<void> {
  const keys: string[] = [];
  for await (const k of await workersKv.keys()) keys.push(k);
  for (const k of keys) {
    const e = await workersKv.get(k);
    if (!e || e.operation !== 'PUT') continue;
    // An unreadable mirror entry is only a hint; the worker's next heartbeat replaces it.
    let problem: string;
    try {
      const r = checkMessage(schemas.workerStatus, e.json(), 'WorkerStatus');
      if (r.ok && r.value.workerId === k && ctx.workers.seed(r.value, ctx.startedAt)) continue;
      problem = r.ok ? `its workerId is ${JSON.stringify(r.value.workerId)}` : r.message;
    } catch (err) {
      problem = `not JSON: ${(err as Error).message}`;
    }
    ctx.log.error({ key: k }, `KV ${k} in topo_workers is not a valid WorkerStatus (${problem}); ignoring it`);
    // Deleted, so it is not read (and listed) again by every later controller.
    await workersKv.delete(k).catch(() => undefined);
  }
}

const apiSchema = (verb: keyof typeof schemas.api) => ({ schema: schemas.api[verb], what: `${verb} request` });

function run(
  ctx: ControllerContext, workersKv: Awaited<ReturnType<typeof openControlPlane>>['workers'], journals: SwapJournal[], rebalance: boolean, autopilotOn: boolean,
  bridges: Awaited<ReturnType<typeof startBridges>>, http: HttpServer | undefined,
): RunningController {
  const { nc, log, settings, workers, store, queue } = ctx;
  const reconciler = new Reconciler(ctx);
  const rebalancer = new Rebalancer(ctx, rebalance);
  const stuckReports = watchStuckReports(ctx);

  /** A worker that registered as a new process: when its previous one was last heard from. */
  const restartedLastSeen = new Map<string, number>();
  const onWorkerChange = (w: WorkerEntry, change: WorkerChange, how: string): void => {
    if (change === 'seen') return;
    const what = { new: 'registered', revived: 'is back after its lease expired', restarted: 'restarted' }[change];
    log.info({ workerId: w.workerId, host: w.host, pid: w.pid, lang: w.lang }, `worker ${w.workerId} (${w.lang}, ${w.host} pid ${w.pid}) ${what} (${how})`);
    if (change === 'restarted') {
      reconciler.onWorkerRestarted(w.workerId, Date.now(), restartedLastSeen.get(w.workerId));
      restartedLastSeen.delete(w.workerId);
    }
    else reconciler.forgetWorker(w.workerId);
    // A worker that can take work: place anything waiting for one, then even the load out once it heartbeats.
    reconciler.requestOrphanPlacement();
    rebalancer.onWorkerJoined(w.workerId, Date.now());
  };

  /** What a dead worker's instances had processed since their last checkpoint, on at-most-once input: counted and reported. */
  const noteLost = (workerId: string, reports: Iterable<InstanceReport>): void => {
    const lost = incidentsOf(ctx).noteWorkerLost(reports);
    if (lost) log.warn({ workerId, lostSinceCheckpoint: lost }, `worker ${workerId} died with ${lost} record(s) processed since its instances' last checkpoints on at-most-once input: their effect on state is lost`);
  };

  const api: { unsubscribe(): void }[] = [];
  api.push(
    serve<RegisterRequest, RegisterReply>(nc, subjects.register, (req) => {
      const before = workers.get(req.workerId);
      const lastReports = before?.alive ? [...before.reported.values()] : [];
      const change = workers.register(req, Date.now());
      if (change === 'restarted') noteLost(req.workerId, lastReports);
      if (change === 'restarted') restartedLastSeen.set(req.workerId, before?.lastSeen ?? Date.now());
      const w = workers.get(req.workerId)!;
      if (change === 'seen') {
        log.info({ workerId: w.workerId }, `worker ${w.workerId} registered again (same process)`);
        reconciler.requestOrphanPlacement();
      } else {
        onWorkerChange(w, change, 'register');
      }
      return { heartbeatMs: settings.heartbeatMs, leaseMs: settings.leaseMs };
    }, { schema: schemas.registerRequest, what: 'register request' }),
    // Every request is validated by its schema (protocol/schemas.ts) before its handler runs.
    serve<DeployRequest, object>(nc, subjects.api('deploy'), (req) => queue.run(() => deploy(ctx, req)), apiSchema('deploy')),
    serve<KillRequest, object>(nc, subjects.api('kill'), (req) => queue.run(() => kill(ctx, req)), apiSchema('kill')),
    // A dry run changes nothing, so it need not wait behind a running swap.
    serve<SwapRequest, SwapReply>(nc, subjects.api('swap'), (req) => (req.dryRun === true ? swap(ctx, req) : queue.run(() => swap(ctx, req))), apiSchema('swap')),
    serve<RollbackRequest, SwapReply>(nc, subjects.api('rollback'), (req) => queue.run(() => rollback(ctx, req)), apiSchema('rollback')),
    serve<PromoteRequest, SwapReply>(nc, subjects.api('promote'), (req) => queue.run(() => promote(ctx, req)), apiSchema('promote')),
    serve<ScaleRequest, ScaleReply>(nc, subjects.api('scale'), (req) => queue.run(() => scale(ctx, req)), apiSchema('scale')),
    serve<FuseRequest, FusionReply>(nc, subjects.api('fuse'), (req) => queue.run(() => fuse(ctx, req)), apiSchema('fuse')),
    serve<SplitRequest, FusionReply>(nc, subjects.api('split'), (req) => queue.run(() => split(ctx, req)), apiSchema('split')),
    serve<HistoryRequest, HistoryReply>(nc, subjects.api('history'), (req) => history(ctx, req), apiSchema('history')),
    serve<object, StatusReply>(nc, subjects.api('status'), () => status(ctx), apiSchema('status')),
    serve<object, { workers: WorkerStatus[] }>(nc, subjects.api('workers'), () => ({ workers: workerStatuses(ctx) }), apiSchema('workers')),
  );

  // Bad heartbeats are logged once per subject for a few subjects, then counted and summed up every
  // 10 s: a flood on made-up subjects must grow neither this set nor the log.
  const badHeartbeatLogged = new Set<string>();
  let badHeartbeatsUnlogged = 0;
  let badHeartbeatSummaryAt = 0;
  const heartbeats: Subscription = nc.subscribe(subjects.heartbeatAll, {
    callback: (err, msg: Msg) => {
      if (err) return;
      let hb: Heartbeat | undefined;
      let problem: string | undefined;
      try {
        const r = checkMessage(schemas.heartbeat, decodeJson(msg.data), 'heartbeat');
        if (r.ok) hb = r.value;
        else problem = r.message;
      } catch (e) {
        problem = `not JSON: ${(e as Error).message}`;
      }
      if (!hb) {
        // Once per subject, so a broken worker cannot flood the log.
        if (badHeartbeatLogged.has(msg.subject)) return;
        if (badHeartbeatLogged.size < 64) {
          badHeartbeatLogged.add(msg.subject);
          log.warn({ subject: msg.subject.slice(0, 200) }, `ignoring heartbeat on ${msg.subject.slice(0, 200)}: ${problem?.slice(0, 500)}`);
          return;
        }
        badHeartbeatsUnlogged++;
        const at = Date.now();
        if (at - badHeartbeatSummaryAt >= 10_000) {
          log.warn({ ignored: badHeartbeatsUnlogged }, `ignored ${badHeartbeatsUnlogged} more bad heartbeat(s) on other subjects (last on ${msg.subject.slice(0, 200)}: ${problem?.slice(0, 500)})`);
          badHeartbeatSummaryAt = at;
          badHeartbeatsUnlogged = 0;
        }
        return;
      }
      const now = Date.now();
      const change = workers.heartbeat(hb, now);
      const w = workers.get(hb.workerId)!;
      onWorkerChange(w, change, 'heartbeat');
      reconciler.onHeartbeat(w, now);
      rebalancer.onHeartbeat(w, now);
    },
  });

  let mirroring = false;
  const mirrorWorkers = async (): Promise<void> => {
    if (mirroring) return;
    mirroring = true;
    try {
      const { put, remove } = workers.takeMirrorWork(Date.now());
      for (const s of put) await workersKv.put(s.workerId, JSON.stringify(s));
      for (const id of remove) await workersKv.delete(id);
      await store.flushUnsaved();
    } catch (err) {
      log.warn({ err }, `could not mirror worker leases to KV: ${(err as Error).message}`);
    } finally {
      mirroring = false;
    }
  };

  // A broker outage silences every worker at once, and the controller with them. Their leases must not
  // run out for it: the controller would mark every worker dead and re-place all instances onto whichever
  // worker reconnects first (fresh, without their state), while the others still run theirs. So leases
  // stand still while the controller is disconnected, and each live one starts afresh once it is back,
  // as after a controller restart.
  let brokerDownSince: number | undefined;
  followOutages(nc, {
    down: () => {
      brokerDownSince = Date.now();
      log.warn('lost the connection to NATS: worker leases are held until it is back');
    },
    up: () => {
      const now = Date.now();
      const renewed = workers.renewLeases(now);
      bridges.renewLeases(now);
      log.info({ outageMs: brokerDownSince === undefined ? undefined : now - brokerDownSince, workers: renewed },
        `reconnected to NATS: ${renewed} live worker(s) get a fresh lease of ${settings.leaseMs} ms to heartbeat again`);
      brokerDownSince = undefined;
    },
  });

  const tick = (): void => {
    // Nothing can be heard, placed or mirrored while the broker is gone.
    if (brokerDownSince !== undefined) return;
    const now = Date.now();
    for (const w of workers.expire(now)) {
      noteLost(w.workerId, (w.reportedAtDeath ?? new Map()).values());
      w.reportedAtDeath = undefined;
      const placed = store.placementsOn(w.workerId).length;
      log.warn({ workerId: w.workerId, lastSeen: w.lastSeen, instances: placed },
        `worker ${w.workerId} missed its lease (no heartbeat for ${now - w.lastSeen} ms): marked dead` +
          (placed ? `; re-placing its ${placed} instance(s)` : ''));
      reconciler.forgetWorker(w.workerId);
    }
    for (const id of workers.forgetDead(now, settings.forgetDeadAfterMs)) {
      log.info({ workerId: id }, `forgetting worker ${id} (dead for more than ${settings.forgetDeadAfterMs} ms)`);
      reconciler.forgetWorker(id);
    }
    reconciler.prune();
    bridges.tick(now);
    if (ctx.credentials) void ctx.credentials.sweep(liveInstances(ctx), ctx.swapping, now);
    if (reconciler.hasOrphans(now)) reconciler.requestOrphanPlacement();
    void mirrorWorkers();
  };
  if (journals.length) {
    log.warn({ swaps: journals.map((j) => j.swapId) }, `${journals.length} swap(s) were under way when the previous controller stopped; finishing them`);
    // First in the queue: nothing else touches these computations before.
    void queue.run(() => recoverInterruptedSwaps(ctx, journals)).catch((err: unknown) => log.error({ err }, `swap recovery failed: ${(err as Error).message}`));
  }

  // After a restart: once the workers have had a lease and a heartbeat to show up.
  rebalancer.startAfter(settings.leaseMs + 2 * settings.heartbeatMs);
  // At-least-once streams keep a message until every group reading its partition has acked it.
  const trimmer = new DataStreamTrimmer(nc, log, () => store.all().flatMap((r) => Object.keys(r.metadata.delivery ?? {})));
  trimmer.start();
  const autopilot = new Autopilot(ctx, autopilotOn);
  autopilot.start();

  const timer = setInterval(tick, Math.max(25, Math.min(settings.heartbeatMs, settings.leaseMs / 5)));
  timer.unref();

  log.info({ natsUrl: ctx.natsUrl, httpUrl: http?.url, computations: store.all().length, heartbeatMs: settings.heartbeatMs, leaseMs: settings.leaseMs },
    `topo controller serving on ${ctx.natsUrl} (${store.all().length} computation(s) in desired state)`);

  let stopping: Promise<void> | undefined;
  return {
    natsUrl: ctx.natsUrl,
    settings,
    httpUrl: http?.url,
    status: () => status(ctx),
    idle: () => queue.idle(),
    stop: (opts) =>
      (stopping ??= (async () => {
        clearInterval(timer);
        await http?.close();
        trimmer.stop();
        rebalancer.stop();
        autopilot.stop();
        for (const s of api) s.unsubscribe();
        heartbeats.unsubscribe();
        stuckReports.unsubscribe();
        await bridges.stop().catch(() => {});
        await queue.idle().catch(() => {});
        if (opts?.stopWorkers) await stopLiveWorkers(ctx);
        await mirrorWorkers();
        await ctx.credentials?.close();
        if (!nc.isClosed()) await nc.drain().catch(() => {});
        log.info('topo controller stopped');
      })()),
  };
}
