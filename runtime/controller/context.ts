/** What the controller's parts share: connection, stores, tables, queue and settings. */
import type { NatsConnection } from '@nats-io/transport-node';
import type { ObjectStore } from '@nats-io/obj';
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { subjects, TimeoutError, type HistoryEntry, type WorkerControl } from '../../protocol/index.js';
import { call } from '../transport/rpc.js';
import type { SerialQueue } from './serialQueue.js';
import type { StateStore } from './stateStore.js';
import type { WorkerTable } from './workerTable.js';
import type { InstanceCredentials } from './instanceCredentials.js';

export interface ControllerSettings {
  heartbeatMs: number;
  leaseMs: number;
  /** How long an assign (artifact fetch + import + init on the worker) may take. */
  assignTimeoutMs: number;
  /** How long unassign and other control requests may take. */
  controlTimeoutMs: number;
  /** An instance missing from (or unexpected in) a live worker's heartbeats for this long is corrected. */
  reconcileGraceMs: number;
  /** Dead workers are dropped from the table (and KV) after this long. */
  forgetDeadAfterMs: number;
  /** Timeout of one swap step request (pause, release, resume, commit, abort); adopt adds the probation's callback timeout. */
  swapStepTimeoutMs: number;
  /** Lease of a swap's pause on an upstream: without renewal the worker resumes it by itself after this long. */
  pauseLeaseMs: number;
  /** How often a swap renews the pauses it holds. */
  pauseRenewMs: number;
  /**
   * Lease of a swap on the workers running its old and new instances: without renewal they roll it back by
   * themselves. Shorter than pauseLeaseMs, so they do so while the upstreams are still paused.
   */
  swapLeaseMs: number;
  /** How long a release may drain before the swap is rolled back (a release that makes progress is otherwise alive). */
  drainBudgetMs: number;
}

export interface ControllerContext {
  nc: NatsConnection;
  natsUrl: string;
  log: Logger;
  settings: ControllerSettings;
  store: StateStore;
  workers: WorkerTable;
  artifacts: ObjectStore;
  /** State checkpoints (runtime/state/checkpointStore.ts): a kill removes the computation's. */
  checkpoints?: KV;
  queue: SerialQueue;
  /**
   * Instances with an assign or unassign under way, or assigned but not yet
   * in KV. Reconciliation leaves them alone.
   */
  inFlight: Set<string>;
  /**
   * Computations with a swap, canary, promote or rollback under way. Workers
   * report the new instance ids before KV lists them, so reconciliation
   * leaves these computations alone until KV is updated.
   */
  swapping: Set<string>;
  /** When this controller started (workers get one lease to show up after a restart). */
  startedAt: number;
  /** Mints each new instance its own NATS user, when this controller holds the account key (`topo up`). */
  credentials?: InstanceCredentials;
  /** Where /metrics and the web UI are served, if anywhere. */
  httpUrl?: string | undefined;
  /** Told of every history entry recorded (the metrics' pause histograms). */
  observeHistory?: (entry: HistoryEntry) => void;
}

/** Sends a WorkerControl request; the worker's error comes back rebuilt (InitFailedError, ...). */
export async function controlWorker(ctx: ControllerContext, workerId: string, ctl: WorkerControl, timeoutMs?: number): Promise<object> {
  const timeout = timeoutMs ?? (ctl.op === 'assign' ? ctx.settings.assignTimeoutMs : ctx.settings.controlTimeoutMs);
  // A worker whose lease expires mid-request will never answer: fail then, not at the timeout.
  let watch: NodeJS.Timeout | undefined;
  const leaseLost = new Promise<never>((_, reject) => {
    watch = setInterval(() => {
      if (!ctx.workers.isAlive(workerId)) reject(new TimeoutError(`worker ${workerId} died (its lease expired) during ${ctl.op}`));
    }, 250);
  });
  leaseLost.catch(() => undefined);
  // A new instance gets its own NATS user, in this request only (an adopt's came with its swap's preload).
  if (ctx.credentials && ctl.op === 'assign') ctl = { ...ctl, credential: await ctx.credentials.mint(ctl.assignment) };
  try {
    return await Promise.race([call<object>(ctx.nc, subjects.workerControl(workerId), ctl, timeout), leaseLost]);
  } catch (err) {
    // rpc's own wording points at the controller; here the silent party is a worker.
    if (err instanceof TimeoutError && (err.cause !== undefined)) {
      const silent = /nobody answers/.test(err.message) ? 'is not listening (not running?)' : `did not answer within ${timeout} ms`;
      throw new TimeoutError(`worker ${workerId} ${silent} (${ctl.op})`, { cause: err });
    }
    throw err;
  } finally {
    clearInterval(watch);
  }
}
