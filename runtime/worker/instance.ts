/**
 * One instance of a computation inside a worker: its context, keyed state,
 * timers, input queue and producers. Callbacks run strictly one at a time, in
 * a single serial loop (pump) that takes due timers first, then input
 * batches. Input stops being taken while a producer is blocked (credit window,
 * or a pause whose bounded buffer is full), and the queue is bounded by the
 * upstream producers' credit windows.
 *
 * Hot swap adds three things here (PROTOCOL.md, "Hot swap"):
 * - release(): drain everything received, snapshot state and timers, and wait
 *   on standby, able to resume with its own state if the swap is rolled back;
 * - probation: a swapped-in instance holds its output and keeps every input
 *   batch it took, until the swap commits (output published) or aborts
 *   (output dropped, input handed back to the standby instance, in order);
 * - restore(): start from a snapshot.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Computation, Context, InputRecord } from '../../sdk/computation.js';
import { MemoryState, TimerTable, type StateSnapshot } from '../executor/state.js';
import {
  decodeBatch, encodeBatch, packr, partitionsOwnedBy, schemas, subjects, truncateError, InitFailedError, TimeoutError, TopoError,
  type Assignment, type Batch, type Credit, type DeadLetter, type InstanceMetrics, type InstanceReport, type InstanceState,
  type Probation, type WireRecord,
} from '../../protocol/index.js';
import { StreamProducer } from './producer.js';
import { groupIdOf, type TopologyView } from './topology.js';
import { noteCallback, noteIdle } from './watchdog.js';

/** Credit is returned at least this often (records per producer), and whenever the queue runs dry. */
const CREDIT_EVERY = 4096;
/** Give the event loop a turn after this long in the pump, so sockets and timers are served. */
const PUMP_SLICE_MS = 8;
const INIT_TIMEOUT_MS = 10_000;
/** An async callback that has not settled for this long is reported stuck (TOPO_STUCK_AFTER_MS overrides it per worker). */
export const DEFAULT_STUCK_AFTER_MS = 10_000;
/** Dead letters of malformed input per instance and second, and how much of the raw bytes each keeps. */
const MALFORMED_LETTERS_PER_SEC = 5;
const MAX_RAW_BYTES = 1_024;
/** How often a release checks its drain for progress, a stuck callback, its budget and cancellation. */
const RELEASE_CHECK_MS = 100;

/** One message taken from an input subscription. */
export interface Inbound {
  data: Uint8Array;
  stream: string;
  /** Partition of the subject it came on (routes replayed input after a rollback). */
  partition: number;
}

/** Keyed state and pending timers of an instance, as handed over by a swap. */
export interface InstanceSnapshot {
  state: StateSnapshot;
  timers: [string, number][];
  /**
   * Input a released instance could not process because a callback was stuck
   * (the stuck record first): the adopting instance processes it before anything new.
   */
  pending?: Inbound[];
}

/** The async callback running now: where it is, so a stuck one can be reported and its input handed over. */
interface InFlight {
  where: 'processRecord' | 'processTimer';
  since: number;
  /** processRecord: the batch, the index of the record running, and how it arrived. */
  batch?: Batch;
  index?: number;
  item?: Inbound;
  /** processTimer: the firing, put back for the next version when handed over. */
  timer?: [string, number];
}

export interface InstanceDeps {
  nc: NatsConnection;
  view: TopologyView;
  log: Logger;
  workerId: string;
  window?: number;
  /** See DEFAULT_STUCK_AFTER_MS. */
  stuckAfterMs?: number;
}

/** The health gate of a swapped-in instance. */
interface ProbationRun {
  cfg: Probation;
  /** Input batches taken while on probation, in order: replayed to the old version on abort. */
  log: Inbound[];
  /** Dead letters of records that failed after the gate passed: published on commit, dropped on abort (the old version redoes them). */
  deadLetters: DeadLetter[];
  processed: number;
  /** Set by health(): the gate's clock starts once upstreams resume. */
  startedAt: number | undefined;
  verdict: 'passed' | Error | undefined;
  waiters: (() => void)[];
  deadline: NodeJS.Timeout | undefined;
  /** A callback is still running: the deadline alone cannot pass the gate. */
  inCallback: boolean;
  deadlineReached: boolean;
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
  private queue: Inbound[] = [];
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
  /** Set by release and stop: process everything queued, ignoring pauses and credit windows. */
  private draining = false;
  /** Abandoned (rolled-back probation): a late callback must not touch anything. */
  private discarded = false;
  private idleWaiters: (() => void)[] = [];
  private errorLogAt = 0;
  private errorsSinceLog = 0;
  private stallTimer: NodeJS.Timeout | undefined;
  private pauseLease: NodeJS.Timeout | undefined;
  private probation: ProbationRun | undefined;
  private readonly stuckAfterMs: number;
  private inflight: InFlight | undefined;
  /** Bumped when a stuck callback is abandoned: its late continuation then does nothing. */
  private callbackGen = 0;
  /** Lets the serial loop stop awaiting an abandoned callback. */
  private unstick: (() => void) | undefined;
  private stuckReported = false;
  private stuckCount = 0;
  /** Set by reinstate(): a release still draining gives up and leaves the instance running. */
  private releaseCancelled = false;
  private malformedWindowAt = 0;
  private malformedLetters = 0;
  private malformedSuppressed = 0;

  constructor(assignment: Assignment, comp: Computation, deps: InstanceDeps) {
    this.assignment = assignment;
    this.id = assignment.instanceId;
    this.nc = deps.nc;
    this.comp = comp;
    this.log = deps.log;
    this.stuckAfterMs = deps.stuckAfterMs ?? DEFAULT_STUCK_AFTER_MS;
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

  // ---- lifecycle ---------------------------------------------------------------

  /** Starts from a snapshot instead of empty state (before start()). */
  restore(snapshot: InstanceSnapshot): void {
    this.keyed.restore(snapshot.state);
    this.timers.restore(snapshot.timers);
    if (snapshot.pending?.length) this.queue = [...snapshot.pending, ...this.queue.slice(this.queueHead)];
    this.queueHead = 0;
  }

  /**
   * Subscribes inputs, runs init, and starts processing. Throws
   * InitFailedError, leaving nothing subscribed. With `probation`, output is
   * held and input kept until commit() or abort().
   */
  async start(probation?: Probation): Promise<void> {
    this.creditSub = this.nc.subscribe(subjects.credit(this.producerId), {
      callback: (err, msg) => {
        if (err) return;
        // Garbage on the credit subject (not msgpack, NaN, negative or huge n) is counted and ignored:
        // it must never turn flow control off or stall a producer.
        let raw: unknown;
        try {
          raw = packr.unpack(msg.data);
        } catch {
          raw = undefined;
        }
        const r = schemas.credit.safeParse(raw);
        if (r.success) {
          for (const p of this.producers.values()) p.credit(r.data.g, r.data.n);
        } else if ((raw as { n?: unknown } | undefined)?.n !== 0) {
          // (n = 0 is what an empty batch is owed: pointless, not garbage.)
          this.metrics.malformedCredits = (this.metrics.malformedCredits ?? 0) + 1;
        }
      },
    });
    if (probation) {
      this.probation = { cfg: probation, log: [], deadLetters: [], processed: 0, startedAt: undefined, verdict: undefined, waiters: [], deadline: undefined, inCallback: false, deadlineReached: false };
      for (const p of this.producers.values()) p.hold();
    }
    this.subscribeInputs();
    this.stallTimer = setInterval(() => {
      const now = Date.now();
      for (const p of this.producers.values()) p.checkStall(now);
      this.checkStuck(now);
    }, 1_000);
    const initTimeout = probation?.callbackTimeoutMs ?? INIT_TIMEOUT_MS;
    try {
      const r = this.comp.init?.(this.ctx);
      if (r && typeof (r as Promise<void>).then === 'function') {
        await withTimeout(r as Promise<void>, initTimeout, `init of "${this.assignment.computation}" did not finish within ${initTimeout} ms`);
      }
    } catch (err) {
      this.discarded = true;
      await this.teardown();
      this.state = 'failed';
      throw new InitFailedError(`init of "${this.assignment.computation}" v${this.assignment.version} threw: ${errMessage(err)}`, { cause: err });
    }
    this.state = probation ? 'probation' : 'running';
    this.armTimer();
    this.schedulePump();
  }

  /** The partitions read on a partitioned istream: explicit (canary) or owned by index. */
  get partitions(): number[] {
    const a = this.assignment;
    return a.partitions ?? partitionsOwnedBy(a.index, a.count);
  }

  private subscribeInputs(): void {
    const a = this.assignment;
    for (const { stream, grouping } of a.metadata.istreams) {
      const onMsg = (err: Error | null, msg: { data: Uint8Array; subject: string }) => {
        if (err) return;
        const s = msg.subject;
        this.queue.push({ data: msg.data, stream, partition: Number(s.slice(s.lastIndexOf('.') + 1)) });
        this.schedulePump();
      };
      if (grouping === 'key') {
        for (const p of this.partitions) this.subs.push(this.nc.subscribe(subjects.data(stream, p), { callback: onMsg }));
      } else if (grouping === 'broadcast') {
        this.subs.push(this.nc.subscribe(subjects.dataAll(stream), { callback: onMsg }));
      } else if (a.partitions) {
        for (const p of a.partitions) this.subs.push(this.nc.subscribe(subjects.data(stream, p), { queue: a.computation, callback: onMsg }));
      } else {
        this.subs.push(this.nc.subscribe(subjects.dataAll(stream), { queue: a.computation, callback: onMsg }));
      }
    }
  }

  private unsubscribeInputs(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs.length = 0;
  }

  // ---- the serial loop ---------------------------------------------------------

  private schedulePump(): void {
    if (this.pumping || this.pumpScheduled || this.discarded) return;
    this.pumpScheduled = true;
    setImmediate(this.runPump);
  }

  private readonly runPump = (): void => {
    this.pumpScheduled = false;
    void this.pump();
  };

  private canRun(): boolean {
    if (this.discarded) return false;
    if (this.draining) return true;
    if (this.state !== 'running' && this.state !== 'probation') return false;
    if (this.probation?.verdict instanceof Error) return false;
    for (const p of this.producers.values()) if (p.isBlocked()) return false;
    return true;
  }

  /** The serial loop: due timers, then queued batches, until empty, blocked or out of its time slice. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    const sliceEnd = Date.now() + PUMP_SLICE_MS;
    try {
      while (this.canRun()) {
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
        this.probation?.log.push(item);
        noteCallback(this.assignment.computation, this.id, 'processRecord');
        const pending = this.processBatch(item);
        noteIdle();
        if (pending) await this.settledOrAbandoned(pending);
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
    if (this.discarded) return;
    this.flushCredit();
    if (this.queueHead >= this.queue.length && !this.timersDue) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
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
      this.deadLetterMalformed(item, err);
      return undefined;
    }
    return this.processRecords(batch, 0, item);
  }

  private processRecords(batch: Batch, from: number, item: Inbound): Promise<void> | undefined {
    const recs = batch.recs;
    for (let i = from; i < recs.length; i++) {
      if (this.discarded || this.probation?.verdict instanceof Error) return undefined;
      const rec = new Received(item.stream, recs[i]!, batch.src);
      this.metrics.recordsIn++;
      let res: unknown;
      try {
        res = this.comp.processRecord(this.ctx, rec);
      } catch (err) {
        this.onCallbackError('processRecord', err, rec);
        continue;
      }
      if (res && typeof (res as Promise<void>).then === 'function') {
        const gen = this.callbackGen;
        this.inflight = { where: 'processRecord', since: Date.now(), batch, index: i, item };
        return this.guard(res as Promise<void>, 'processRecord').then(
          () => {
            if (gen !== this.callbackGen) return undefined;
            this.settled();
            this.recordPassed();
            return this.processRecords(batch, i + 1, item);
          },
          (err: unknown) => {
            if (gen !== this.callbackGen) return undefined;
            this.settled();
            this.onCallbackError('processRecord', err, rec);
            return this.processRecords(batch, i + 1, item);
          },
        );
      }
      this.recordPassed();
    }
    this.owe(batch.src, item.stream, recs.length);
    return undefined;
  }

  // ---- stuck callbacks ---------------------------------------------------------

  /** Awaits a callback chain, unless it is abandoned as stuck first (abandonStuck). */
  private settledOrAbandoned(p: Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.unstick = resolve;
      p.then(resolve, reject);
    }).finally(() => {
      this.unstick = undefined;
    });
  }

  private settled(): void {
    const f = this.inflight;
    this.inflight = undefined;
    if (this.stuckReported && f) {
      this.stuckReported = false;
      this.log.warn({ callback: f.where, ms: Date.now() - f.since }, `${f.where} returned after ${Date.now() - f.since} ms; no longer stuck`);
    }
  }

  private isStuck(now: number): boolean {
    return this.inflight !== undefined && now - this.inflight.since >= this.stuckAfterMs;
  }

  /** Reports (once per callback) an async callback that has not settled within stuckAfterMs. */
  private checkStuck(now: number): void {
    if (!this.isStuck(now) || this.stuckReported) return;
    const f = this.inflight!;
    this.stuckReported = true;
    this.stuckCount++;
    this.log.error({ callback: f.where, ms: now - f.since, stuck: this.stuckCount },
      `${f.where} of "${this.assignment.computation}" v${this.assignment.version} has not returned for ${now - f.since} ms: stuck ` +
        '(`topo rollback` or `topo swap` hands its input and state to another version)');
  }

  /**
   * Gives up on the stuck callback: its late continuation will do nothing,
   * and the input it had not finished (its own record first) plus everything
   * queued is returned for the next version, in order.
   */
  private abandonStuck(): Inbound[] {
    const f = this.inflight!;
    this.callbackGen++;
    this.inflight = undefined;
    this.stuckReported = false;
    const out: Inbound[] = [];
    if (f.batch && f.item && f.index !== undefined) {
      out.push({ ...f.item, data: encodeBatch({ ...f.batch, recs: f.batch.recs.slice(f.index) }) });
      // The records before the stuck one were processed here: their credit is ours to give.
      if (f.index > 0) this.owe(f.batch.src, f.item.stream, f.index);
    }
    if (f.timer) this.timers.set(f.timer[0], f.timer[1]);
    out.push(...this.queue.slice(this.queueHead));
    this.queue = [];
    this.queueHead = 0;
    this.timersDue = false;
    this.unstick?.();
    return out;
  }

  /** On probation, a callback that does not settle within callbackTimeoutMs fails the gate. */
  private guard(p: Promise<void>, where: string): Promise<void> {
    const pr = this.probation;
    if (!pr || pr.verdict !== undefined) return p;
    const ms = pr.cfg.callbackTimeoutMs;
    pr.inCallback = true;
    return withTimeout(p, ms, `${where} did not return within ${ms} ms`).then(
      () => {
        pr.inCallback = false;
        if (pr.deadlineReached) this.passProbation();
      },
      (err: unknown) => {
        pr.inCallback = false;
        if (err instanceof HangError) this.failProbation(new TopoError(`${where} of "${this.assignment.computation}" v${this.assignment.version} hung: ${err.message}`));
        throw err;
      },
    );
  }

  private recordPassed(): void {
    const pr = this.probation;
    if (!pr || pr.verdict !== undefined) return;
    pr.processed++;
    if (pr.processed >= pr.cfg.records) this.passProbation();
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
    if (this.discarded) return;
    const message = errMessage(err);
    if (this.probation && this.probation.verdict === undefined) {
      // On probation a throw fails the health gate; the record is not dead-lettered
      // because the old version will process it again after the rollback.
      this.failProbation(new TopoError(`${where} of "${this.assignment.computation}" v${this.assignment.version} threw: ${message}`));
      return;
    }
    if (this.probation?.verdict instanceof Error) return;
    this.metrics.errors++;
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

  /**
   * Garbage on an input subject is counted (metrics.malformed) every time,
   * but dead-lettered at most MALFORMED_LETTERS_PER_SEC times a second with
   * its first MAX_RAW_BYTES bytes: a flood must not fill the dead-letter
   * stream at the sender's pace. What was not dead-lettered is logged as a count.
   */
  private deadLetterMalformed(item: Inbound, err: unknown): void {
    const now = Date.now();
    if (now - this.malformedWindowAt >= 1_000) {
      if (this.malformedSuppressed > 0) {
        this.log.warn({ suppressed: this.malformedSuppressed, stream: item.stream },
          `${this.malformedSuppressed} more malformed batch(es) on the input subjects in the last second: counted, not dead-lettered`);
      }
      this.malformedWindowAt = now;
      this.malformedLetters = 0;
      this.malformedSuppressed = 0;
    }
    if (this.malformedLetters >= MALFORMED_LETTERS_PER_SEC) {
      this.malformedSuppressed++;
      return;
    }
    this.malformedLetters++;
    const cut = item.data.length > MAX_RAW_BYTES;
    this.deadLetter({
      stream: item.stream, reason: 'malformed batch',
      error: `${errMessage(err)}${cut ? ` (raw: the first ${MAX_RAW_BYTES} of ${item.data.length} bytes)` : ''}`,
      raw: cut ? item.data.slice(0, MAX_RAW_BYTES) : item.data,
    });
  }

  private deadLetter(d: Omit<DeadLetter, 'computation' | 'instanceId' | 'at'>): void {
    this.metrics.deadLetters++;
    const letter: DeadLetter = { computation: this.assignment.computation, instanceId: this.id, at: Date.now(), ...d };
    if (this.probation) this.probation.deadLetters.push(letter);
    else this.publishDeadLetter(letter);
  }

  private publishDeadLetter(letter: DeadLetter): void {
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
      if (this.discarded) return;
      const gen = this.callbackGen;
      try {
        const res = this.comp.processTimer(this.ctx, key, at);
        if (res && typeof (res as Promise<void>).then === 'function') {
          this.inflight = { where: 'processTimer', since: Date.now(), timer: [key, at] };
          await this.settledOrAbandoned(this.guard(res as Promise<void>, 'processTimer'));
          if (gen !== this.callbackGen) return; // abandoned as stuck
          this.settled();
        }
      } catch (err) {
        if (gen !== this.callbackGen) return;
        this.settled();
        this.onCallbackError('processTimer', err);
      }
    }
    this.armTimer();
  }

  /** Resolves once the queue is empty and no callback runs. */
  private idle(timeoutMs: number): Promise<boolean> {
    const done = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.schedulePump();
    if (!this.pumping && !this.pumpScheduled && this.queueHead >= this.queue.length && !this.timersDue) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    return Promise.race([done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())]);
  }

  // ---- pause (upstream side of a swap) -----------------------------------------

  /**
   * Holds output on `streams` (default all) and returns the fences. The pause
   * is a lease: calling again renews it; at expiry output resumes by itself.
   */
  async pauseOutput(streams: string[] | undefined, leaseMs: number): Promise<Record<string, number>> {
    const held = streams ? streams.map((s) => this.producers.get(s)).filter((p): p is StreamProducer => p !== undefined) : [...this.producers.values()];
    for (const p of held) p.hold();
    if (this.state === 'running') this.state = 'paused';
    if (this.pauseLease) clearTimeout(this.pauseLease);
    this.pauseLease = setTimeout(() => {
      this.pauseLease = undefined;
      this.log.warn({ leaseMs }, `pause lease of ${leaseMs} ms expired without resume: resuming output by itself`);
      this.resumeOutput();
    }, leaseMs);
    // What was published before the fence must reach the server before we report it.
    await this.nc.flush();
    const fences: Record<string, number> = {};
    for (const p of held) fences[p.stream] = p.lastPublishedSeq;
    return fences;
  }

  resumeOutput(): void {
    if (this.pauseLease) clearTimeout(this.pauseLease);
    this.pauseLease = undefined;
    if (this.probation) return; // output of a probation is released by commit
    for (const p of this.producers.values()) p.release();
    if (this.state === 'paused') this.state = 'running';
    this.schedulePump();
  }

  // ---- release (the old version in a swap) -------------------------------------

  /**
   * Stops taking input, processes everything received up to the fences (a
   * round trip to the server first, so every fenced batch is in our queue),
   * flushes output, snapshots, and waits on standby.
   *
   * Draining is judged by progress, not by a fixed timeout: a callback that
   * has not returned for stuckAfterMs is abandoned and the input not yet
   * processed (its record first) goes into the snapshot for the next version;
   * a drain still running after `budgetMs` gives up with a TimeoutError.
   * Either way nothing here is discarded: after a failed or cancelled
   * release the instance still holds its state and queue, and reinstate()
   * brings it back.
   */
  async release(swapId: string, budgetMs: number): Promise<{ snapshot: InstanceSnapshot; drained: number; handedOver: number }> {
    this.releaseCancelled = false;
    const before = this.metrics.recordsIn;
    const startedAt = Date.now();
    await this.nc.flush();
    this.checkCancelled();
    this.unsubscribeInputs();
    this.draining = true;
    // Timers already due are pending work too: fire them before the snapshot.
    if (this.timers.next() !== undefined && this.timers.next()! <= Date.now()) this.timersDue = true;
    let pending: Inbound[] = [];
    try {
      for (;;) {
        if (await this.idle(RELEASE_CHECK_MS)) break;
        this.checkCancelled();
        const now = Date.now();
        if (this.isStuck(now)) {
          pending = this.abandonStuck();
          this.log.warn({ swapId, batches: pending.length }, `release: handing ${pending.length} unprocessed batch(es) of a stuck callback to the next version`);
          continue;
        }
        if (now - startedAt > budgetMs) {
          throw new TimeoutError(
            `instance ${this.id} did not drain within its budget of ${budgetMs} ms (${this.metrics.recordsIn - before} record(s) processed, ` +
              `${this.queue.length - this.queueHead} batch(es) still queued); it keeps its state and input`,
          );
        }
      }
    } finally {
      this.draining = false;
    }
    this.checkCancelled();
    for (const p of this.producers.values()) p.flush(true);
    this.flushCredit();
    if (this.timerHandle) clearTimeout(this.timerHandle);
    this.timerHandle = undefined;
    this.timerAt = Infinity;
    this.state = 'standby';
    const snapshot = this.snapshot();
    if (pending.length) snapshot.pending = pending;
    return { snapshot, drained: this.metrics.recordsIn - before, handedOver: countRecords(pending) };
  }

  private checkCancelled(): void {
    if (this.releaseCancelled) throw new TopoError(`release of ${this.id} was cancelled: its swap was rolled back`);
  }

  /**
   * Back from a rolled-back swap, whatever point its release had reached
   * (standby, still draining, or given up): `replay` is processed first, in
   * order, then what is still queued here.
   */
  reinstate(replay: Inbound[]): void {
    this.releaseCancelled = true;
    this.draining = false;
    this.queue = [...replay, ...this.queue.slice(this.queueHead)];
    this.queueHead = 0;
    this.unsubscribeInputs();
    this.subscribeInputs();
    this.state = 'running';
    for (const p of this.producers.values()) p.release();
    this.armTimer();
    this.timersDue = this.timers.next() !== undefined && this.timers.next()! <= Date.now();
    this.schedulePump();
  }

  snapshot(): InstanceSnapshot {
    return { state: this.keyed.snapshot(), timers: this.timers.snapshot() };
  }

  // ---- probation (the new version in a swap) -----------------------------------

  /** Waits for the health verdict; the gate's clock starts at the first call (upstreams resumed). */
  async health(timeoutMs: number): Promise<{ processed: number; ms: number }> {
    const pr = this.probation;
    if (!pr) return { processed: 0, ms: 0 };
    if (pr.startedAt === undefined) {
      pr.startedAt = Date.now();
      if (pr.verdict === undefined) {
        pr.deadline = setTimeout(() => {
          pr.deadlineReached = true;
          // A callback still running may be hung: its own timeout decides.
          if (!pr.inCallback) this.passProbation();
        }, pr.cfg.ms);
      }
    }
    if (pr.verdict === undefined) {
      const settled = new Promise<void>((r) => pr.waiters.push(r));
      const inTime = await Promise.race([settled.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())]);
      if (!inTime) this.failProbation(new TopoError(`no health verdict for "${this.assignment.computation}" v${this.assignment.version} within ${timeoutMs} ms (a callback is stuck?)`));
    }
    if (pr.verdict instanceof Error) throw pr.verdict;
    return { processed: pr.processed, ms: Date.now() - pr.startedAt };
  }

  private passProbation(): void {
    const pr = this.probation;
    if (!pr || pr.verdict !== undefined) return;
    pr.verdict = 'passed';
    this.settleProbation();
  }

  private failProbation(err: Error): void {
    const pr = this.probation;
    if (!pr || pr.verdict !== undefined) return;
    pr.verdict = err;
    this.lastError = err.message;
    this.log.error({ err: err.message }, `health gate failed: ${err.message}`);
    this.settleProbation();
  }

  private settleProbation(): void {
    const pr = this.probation!;
    if (pr.deadline) clearTimeout(pr.deadline);
    const waiters = pr.waiters;
    pr.waiters = [];
    for (const w of waiters) w();
  }

  /** The swap committed: publish held output and run normally. */
  commit(): void {
    const letters = this.probation?.deadLetters ?? [];
    this.probation = undefined;
    for (const l of letters) this.publishDeadLetter(l);
    this.state = 'running';
    for (const p of this.producers.values()) p.release();
    this.schedulePump();
  }

  /**
   * The swap is rolled back: stop, drop held output, and return every input
   * batch this instance took or holds, in arrival order, for the old version.
   */
  async abandon(): Promise<Inbound[]> {
    await this.nc.flush();
    this.unsubscribeInputs();
    this.discarded = true;
    const replay = [...(this.probation?.log ?? []), ...this.queue.slice(this.queueHead)];
    this.queue = [];
    this.queueHead = 0;
    for (const p of this.producers.values()) p.discard();
    if (this.probation) this.settleProbation();
    this.probation = undefined;
    this.state = 'stopping';
    await this.teardown();
    return replay;
  }

  // ---- reports and stop --------------------------------------------------------

  /** Resolves once everything received so far is processed and output flushed (or the timeout passes). */
  async drain(timeoutMs = 10_000): Promise<{ drained: boolean }> {
    const drained = await this.idle(timeoutMs);
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
      // Capped so that one huge error (a 180 KB key in it) cannot push the heartbeat over max_payload.
      ...(this.lastError ? { lastError: truncateError(this.lastError) } : {}),
      ...this.stuckReport(),
    };
  }

  /** State 'stuck' and which callback, while one has not returned for stuckAfterMs. */
  private stuckReport(): Partial<InstanceReport> {
    const now = Date.now();
    const queued = this.queue.length - this.queueHead;
    if (!this.isStuck(now)) return queued ? { queued } : {};
    const f = this.inflight!;
    return { state: 'stuck', stuck: { callback: f.where, forMs: now - f.since, count: Math.max(1, this.stuckCount) }, queued };
  }

  /** Stops input, processes what was already received, runs destroy, flushes output. */
  async stop(timeoutMs = 5_000): Promise<void> {
    if (this.state === 'stopping' || this.discarded) return;
    const wasStandby = this.state === 'standby';
    this.unsubscribeInputs();
    this.state = 'stopping';
    if (!wasStandby) {
      this.draining = true;
      await this.idle(timeoutMs);
      this.draining = false;
    }
    try {
      await this.comp.destroy?.(this.ctx);
    } catch (err) {
      this.log.error({ err }, `destroy threw: ${errMessage(err)}`);
    }
    for (const p of this.producers.values()) {
      p.release();
      p.flush(true);
    }
    await this.teardown();
  }

  private async teardown(): Promise<void> {
    this.unsubscribeInputs();
    if (this.timerHandle) clearTimeout(this.timerHandle);
    if (this.stallTimer) clearInterval(this.stallTimer);
    if (this.pauseLease) clearTimeout(this.pauseLease);
    for (const p of this.producers.values()) p.close();
    this.flushCredit();
    this.creditSub?.unsubscribe();
  }
}

/** Records in a list of raw batches (the handed-over input of a stuck instance). */
function countRecords(items: Inbound[]): number {
  let n = 0;
  for (const it of items) {
    try {
      n += decodeBatch(it.data).recs.length;
    } catch {
      /* a malformed batch is dead-lettered by whoever processes it */
    }
  }
  return n;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

class HangError extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new HangError(message)), ms)))]).finally(() => clearTimeout(t));
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
