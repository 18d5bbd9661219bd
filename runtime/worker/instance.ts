/**
 * One running instance of a computation inside a worker: its context, keyed
 * state, timers, input queue and producers. Callbacks run strictly one at a
 * time, in a single serial loop (pump) that takes due timers first, then input
 * batches. Input stops being taken while any producer is blocked or the
 * instance is paused, and the queue is bounded by the producers' credit windows.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Computation, Context, InputRecord } from '../../sdk/computation.js';
import { MemoryState, TimerTable } from '../../sdk/state.js';
import {
  decodeBatch, packr, partitionsOwnedBy, subjects, InitFailedError,
  type Assignment, type Credit, type DeadLetter, type InstanceMetrics, type InstanceReport, type InstanceState, type WireRecord,
} from '../../sdk/protocol/index.js';
import { StreamProducer } from './producer.js';
import { groupIdOf, type TopologyView } from './topology.js';

/** Credit is returned at least this often (records per producer), and whenever the queue runs dry. */
const CREDIT_EVERY = 4096;
/** Give the event loop a turn after this long in the pump, so sockets and timers are served. */
const PUMP_SLICE_MS = 8;
const INIT_TIMEOUT_MS = 10_000;

interface Inbound {
  data: Uint8Array;
  stream: string;
}

export interface InstanceDeps {
  nc: NatsConnection;
  view: TopologyView;
  log: Logger;
  workerId: string;
  window?: number;
}

export class Instance {
  readonly assignment: Assignment;
  readonly id: string;
  state: InstanceState = 'starting';
  readonly metrics: InstanceMetrics = { recordsIn: 0, recordsOut: 0, errors: 0, deadLetters: 0, malformed: 0 };
  lastError: string | undefined;

  private readonly nc: NatsConnection;
  private readonly comp: Computation;
  private readonly log: Logger;
  private readonly keyed = new MemoryState();
  private readonly timers = new TimerTable();
  private readonly producers = new Map<string, StreamProducer>();
  private readonly producerId: string;
  private readonly subs: Subscription[] = [];
  private creditSub: Subscription | undefined;
  private readonly queue: Inbound[] = [];
  private queueHead = 0;
  /** Credit owed back, per producer and consumer group: key `${producer} ${group}`. */
  private readonly owedCredit = new Map<string, { producer: string; group: string; n: number }>();
  private readonly groupOf = new Map<string, string>();
  private readonly ctx: Context;
  private timerHandle: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private timersDue = false;
  private pumping = false;
  private pumpScheduled = false;
  private paused = false;
  private drainWaiters: (() => void)[] = [];
  private errorLogAt = 0;
  private errorsSinceLog = 0;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(assignment: Assignment, comp: Computation, deps: InstanceDeps) {
    this.assignment = assignment;
    this.id = assignment.instanceId;
    this.nc = deps.nc;
    this.comp = comp;
    this.log = deps.log;
    // Subject-safe and unique per incarnation: credits come back on topo.fc.<producerId>.
    this.producerId = assignment.instanceId;
    for (const stream of assignment.metadata.ostreams) {
      this.producers.set(
        stream,
        new StreamProducer({
          nc: deps.nc,
          stream,
          producerId: this.producerId,
          view: deps.view,
          ...(deps.window !== undefined ? { window: deps.window } : {}),
          onUnblocked: () => this.schedulePump(),
          onStallReset: (group, owed) =>
            this.log.warn({ stream, group, owed }, `consumer group "${group}" of stream "${stream}" gave no credit for 5 s; presuming it gone`),
        }),
      );
    }
    for (const { stream, grouping } of assignment.metadata.istreams) {
      this.groupOf.set(stream, groupIdOf(assignment.computation, grouping, assignment.index));
    }
    this.ctx = this.makeContext();
  }

  private makeContext(): Context {
    const self = this;
    const a = this.assignment;
    const ostreams = a.metadata.ostreams;
    return {
      name: a.computation,
      instance: Object.freeze({ index: a.index, count: a.count, id: a.instanceId }),
      produceRecord(stream: string, key: string, value: unknown): void {
        const p = self.producers.get(stream);
        if (!p) throw new Error(`produceRecord: "${stream}" is not an ostream of "${a.computation}" (declared: ${ostreams.join(', ') || 'none'})`);
        if (typeof key !== 'string') throw new TypeError(`produceRecord("${stream}"): key must be a string, got ${typeof key}`);
        p.produce(key, value);
        self.metrics.recordsOut++;
      },
      setTimer(key: string, atMs: number): void {
        self.timers.set(key, atMs);
        self.armTimer();
      },
      state: this.keyed,
      log: this.log,
    };
  }

  /** Subscribes inputs, runs init, and starts processing. Throws InitFailedError. */
  async start(): Promise<void> {
    this.creditSub = this.nc.subscribe(subjects.credit(this.producerId), {
      callback: (err, msg) => {
        if (err) return;
        try {
          const c = packr.unpack(msg.data) as Credit;
          if (typeof c?.g === 'string' && typeof c.n === 'number') {
            for (const p of this.producers.values()) p.credit(c.g, c.n);
          }
        } catch {
          /* ignore garbage on the credit subject */
        }
      },
    });
    this.subscribeInputs();
    this.stallTimer = setInterval(() => {
      const now = Date.now();
      for (const p of this.producers.values()) p.checkStall(now);
    }, 1_000);
    try {
      const r = this.comp.init?.(this.ctx);
      if (r && typeof (r as Promise<void>).then === 'function') {
        await withTimeout(r as Promise<void>, INIT_TIMEOUT_MS, `init of "${this.assignment.computation}" did not finish within ${INIT_TIMEOUT_MS} ms`);
      }
    } catch (err) {
      await this.teardown();
      this.state = 'failed';
      throw new InitFailedError(`init of "${this.assignment.computation}" threw: ${errMessage(err)}`, { cause: err });
    }
    this.state = 'running';
    this.schedulePump();
  }

  private subscribeInputs(): void {
    const a = this.assignment;
    for (const { stream, grouping } of a.metadata.istreams) {
      const onMsg = (err: Error | null, msg: { data: Uint8Array }) => {
        if (err) return;
        this.queue.push({ data: msg.data, stream });
        this.schedulePump();
      };
      if (grouping === 'key') {
        for (const p of partitionsOwnedBy(a.index, a.count)) this.subs.push(this.nc.subscribe(subjects.data(stream, p), { callback: onMsg }));
      } else if (grouping === 'broadcast') {
        this.subs.push(this.nc.subscribe(subjects.dataAll(stream), { callback: onMsg }));
      } else {
        this.subs.push(this.nc.subscribe(subjects.dataAll(stream), { queue: a.computation, callback: onMsg }));
      }
    }
  }

  private schedulePump(): void {
    if (this.pumping || this.pumpScheduled || this.state === 'starting') return;
    this.pumpScheduled = true;
    setImmediate(this.runPump);
  }

  private readonly runPump = (): void => {
    this.pumpScheduled = false;
    void this.pump();
  };

  private outputBlocked(): boolean {
    for (const p of this.producers.values()) if (p.isBlocked()) return true;
    return false;
  }

  /** The serial loop: due timers, then queued batches, until empty, paused, blocked or out of time slice. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    const sliceEnd = Date.now() + PUMP_SLICE_MS;
    try {
      while (!this.paused && (this.state === 'running' || this.state === 'stopping')) {
        if (this.outputBlocked()) break;
        if (this.timersDue) {
          await this.fireDueTimers();
          continue;
        }
        if (this.queueHead >= this.queue.length) break;
        const item = this.queue[this.queueHead]!;
        this.queue[this.queueHead++] = undefined as unknown as Inbound;
        if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
          this.queue.splice(0, this.queueHead);
          this.queueHead = 0;
        }
        const pending = this.processBatch(item);
        if (pending) await pending;
        if (Date.now() > sliceEnd) {
          this.pumping = false;
          this.flushCredit();
          this.schedulePump();
          return;
        }
      }
    } finally {
      this.pumping = false;
    }
    this.flushCredit();
    if (this.queueHead >= this.queue.length && !this.timersDue) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Runs processRecord over one batch. Stays synchronous (returns undefined)
   * while the computation does; only a returned promise makes it async.
   */
  private processBatch(item: Inbound): Promise<void> | undefined {
    let batch;
    try {
      batch = decodeBatch(item.data);
    } catch (err) {
      this.metrics.malformed++;
      this.deadLetter({ stream: item.stream, reason: 'malformed batch', error: errMessage(err), raw: item.data });
      return undefined;
    }
    return this.processRecords(batch.recs, 0, batch.src, item.stream);
  }

  private processRecords(recs: WireRecord[], from: number, producer: string, stream: string): Promise<void> | undefined {
    for (let i = from; i < recs.length; i++) {
      const rec = new Received(stream, recs[i]!, producer);
      this.metrics.recordsIn++;
      let res: unknown;
      try {
        res = this.comp.processRecord(this.ctx, rec);
      } catch (err) {
        this.onCallbackError('processRecord', err, rec);
        continue;
      }
      if (res && typeof (res as Promise<void>).then === 'function') {
        return (res as Promise<void>).then(
          () => this.processRecords(recs, i + 1, producer, stream),
          (err: unknown) => {
            this.onCallbackError('processRecord', err, rec);
            return this.processRecords(recs, i + 1, producer, stream);
          },
        );
      }
    }
    this.owe(producer, stream, recs.length);
    return undefined;
  }

  private owe(producer: string, stream: string, n: number): void {
    const group = this.groupOf.get(stream) ?? this.assignment.computation;
    const k = `${producer} ${group}`;
    let owed = this.owedCredit.get(k);
    if (!owed) this.owedCredit.set(k, (owed = { producer, group, n: 0 }));
    owed.n += n;
    if (owed.n >= CREDIT_EVERY) {
      this.owedCredit.delete(k);
      this.sendCredit(owed.producer, owed.group, owed.n);
    }
  }

  private onCallbackError(where: 'processRecord' | 'processTimer', err: unknown, rec?: InputRecord): void {
    this.metrics.errors++;
    const message = errMessage(err);
    this.lastError = `${where}: ${message}`;
    if (rec) {
      this.deadLetter({
        stream: rec.stream,
        reason: `${where} threw`,
        error: message,
        record: { key: rec.key, value: rec.value, ts: rec.timestamp, seq: rec.seq },
      });
    }
    // Log at most once a second so a computation failing on every record cannot flood the logs.
    const now = Date.now();
    this.errorsSinceLog++;
    if (now - this.errorLogAt >= 1_000) {
      this.log.error({ err, where, failures: this.errorsSinceLog }, `${where} threw: ${message}`);
      this.errorLogAt = now;
      this.errorsSinceLog = 0;
    }
  }

  private deadLetter(d: Omit<DeadLetter, 'computation' | 'instanceId' | 'at'>): void {
    this.metrics.deadLetters++;
    const letter: DeadLetter = { computation: this.assignment.computation, instanceId: this.id, at: Date.now(), ...d };
    try {
      this.nc.publish(subjects.deadLetter(this.assignment.computation), packr.pack(letter));
    } catch (err) {
      // The value itself may not be encodable; keep the reason at least.
      delete letter.record;
      this.nc.publish(subjects.deadLetter(this.assignment.computation), packr.pack({ ...letter, error: `${letter.error} (record not encodable: ${errMessage(err)})` }));
    }
  }

  private sendCredit(producer: string, group: string, n: number): void {
    const credit: Credit = { g: group, n };
    this.nc.publish(subjects.credit(producer), packr.pack(credit));
  }

  /** Returns all owed credit (called when the queue runs dry, so producers are never left waiting on us). */
  private flushCredit(): void {
    if (this.owedCredit.size === 0) return;
    for (const o of this.owedCredit.values()) this.sendCredit(o.producer, o.group, o.n);
    this.owedCredit.clear();
  }

  private armTimer(): void {
    const next = this.timers.next();
    if (next === undefined || next >= this.timerAt) return;
    if (this.timerHandle) clearTimeout(this.timerHandle);
    this.timerAt = next;
    this.timerHandle = setTimeout(() => {
      this.timerHandle = undefined;
      this.timerAt = Infinity;
      this.timersDue = true;
      this.schedulePump();
    }, Math.max(0, next - Date.now()));
  }

  private async fireDueTimers(): Promise<void> {
    this.timersDue = false;
    const due = this.timers.takeDue(Date.now());
    for (const [key, at] of due) {
      // A callback earlier in this round set the key again: that replaces this firing.
      if (!this.comp.processTimer || this.timers.has(key)) continue;
      try {
        const res = this.comp.processTimer(this.ctx, key, at);
        if (res && typeof (res as Promise<void>).then === 'function') await res;
      } catch (err) {
        this.onCallbackError('processTimer', err);
      }
    }
    this.armTimer();
  }

  pause(): void {
    this.paused = true;
    for (const p of this.producers.values()) p.hold();
    if (this.state === 'running') this.state = 'paused';
  }

  resume(): void {
    this.paused = false;
    for (const p of this.producers.values()) p.release();
    if (this.state === 'paused') this.state = 'running';
    this.schedulePump();
  }

  /** Resolves once everything received so far is processed and output flushed (or the timeout passes). */
  async drain(timeoutMs = 10_000): Promise<{ drained: boolean }> {
    const done = new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    this.schedulePump();
    if (!this.pumping && this.queueHead >= this.queue.length) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
    const drained = await Promise.race([done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())]);
    for (const p of this.producers.values()) p.flush();
    return { drained };
  }

  report(): InstanceReport {
    const a = this.assignment;
    return {
      instanceId: this.id,
      computation: a.computation,
      version: a.version,
      index: a.index,
      count: a.count,
      state: this.state,
      metrics: { ...this.metrics },
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** Stops input, processes what was already received, runs destroy, flushes output. */
  async stop(timeoutMs = 5_000): Promise<void> {
    if (this.state === 'stopping') return;
    for (const s of this.subs) s.unsubscribe();
    this.subs.length = 0;
    this.paused = false;
    for (const p of this.producers.values()) p.release();
    this.state = 'stopping';
    await this.drain(timeoutMs);
    try {
      await this.comp.destroy?.(this.ctx);
    } catch (err) {
      this.log.error({ err }, `destroy threw: ${errMessage(err)}`);
    }
    await this.teardown();
  }

  private async teardown(): Promise<void> {
    for (const s of this.subs) s.unsubscribe();
    this.subs.length = 0;
    if (this.timerHandle) clearTimeout(this.timerHandle);
    if (this.stallTimer) clearInterval(this.stallTimer);
    for (const p of this.producers.values()) {
      p.release();
      p.close();
    }
    this.flushCredit();
    this.creditSub?.unsubscribe();
  }

  /** Keyed state and pending timers, for a hand-over (hot swap). */
  snapshot(): { state: ReturnType<MemoryState['snapshot']>; timers: [string, number][] } {
    return { state: this.keyed.snapshot(), timers: this.timers.snapshot() };
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(message)), ms)))]).finally(() => clearTimeout(t));
}

/** The record handed to processRecord; a class so every record has the same shape. */
class Received implements InputRecord {
  readonly key: string;
  readonly value: unknown;
  readonly timestamp: number;
  readonly seq: number;
  readonly traceId?: string;
  constructor(
    readonly stream: string,
    r: WireRecord,
    readonly producer: string,
  ) {
    this.key = r[0];
    this.value = r[1];
    this.timestamp = r[2];
    this.seq = r[3];
    if (typeof r[4] === 'string') this.traceId = r[4];
  }
}
