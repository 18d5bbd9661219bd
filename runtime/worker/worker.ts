/**
 * A worker process hosts computation instances. It registers with the
 * controller, renews its lease with heartbeats that carry per-instance
 * metrics, and obeys WorkerControl requests on topo.worker.ctl.<id>.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { Logger } from 'pino';
import {
  buckets, subjects, NotFoundError, BadRequestError,
  type Assignment, type Heartbeat, type RegisterReply, type RegisterRequest, type WorkerControl,
} from '../../sdk/protocol/index.js';
import { call, encodeJson, serve } from '../transport/rpc.js';
import { ArtifactCache, checkMetadata } from './artifacts.js';
import { Instance } from './instance.js';
import { instanceLogger } from './logs.js';
import { TopologyView } from './topology.js';

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
      case 'pause':
        this.instance(req.instanceId).pause();
        return {};
      case 'resume':
        this.instance(req.instanceId).resume();
        return {};
      case 'drain':
        return this.instance(req.instanceId).drain(req.timeoutMs);
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
