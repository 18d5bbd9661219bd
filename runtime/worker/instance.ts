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
import { Received } from '../executor/received.js';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Computation, InputRecord, NatsPublisher } from '../../sdk/index.js';
import { Executor, isPromise, type ExecutorSnapshot } from '../executor/executor.js';
import {
  decodeBatch, encodeBatch, partitionsOwnedBy, truncateError, InitFailedError, TimeoutError, TopoError,
  type Assignment, type Batch, type InstanceMetrics, type InstanceReport, type InstanceState, type Probation, type ProducerFence,
} from '../../protocol/index.js';
import { natsEdges, portable, type EdgeFactory, type Inbound, type Inlet, type Outlet } from './edges.js';
import { CreditBook } from './creditBook.js';
import { InputQueue } from './inputQueue.js';
import { CallbackWatch } from './callbackWatch.js';
import { DeadLetters, errMessage } from './deadLetters.js';
import { Observed } from './observed.js';
import { ProbationGate, withTimeout } from './probation.js';
import { groupIdOf, type TopologyView } from './topology.js';
import { noteCallback, noteIdle } from './watchdog.js';
import { HeavyMeter, RunnerPump, type ThreadHost } from './runnerPump.js';
import { ThreadRunner } from '../runners/thread.js';
import type { WatchedRunner } from '../runners/runner.js';
import { HEAVY_CPU_MICROS } from '../oracle/limits.js';
import { StreamTypes, TYPE_MISMATCH, type StreamType } from '../../protocol/types.js';
import type { CheckpointStore, WrittenCache } from '../state/checkpointStore.js';
import type { DeliveryCounters } from './jetstream.js';
import { sampleTrace, sourceTraceSample } from './tracing.js';

export type { Inbound } from './edges.js';

/** What admitToRunner notes on an at-least-once item for the runner path: its batch's producer and last sequence. */
type RunnerJs = NonNullable<Inbound['js']> & { src?: string; last?: number; n?: number };

/** A fenced record published up to this long after the subscriptions were confirmed is still presumed to have missed them (clocks compared through ages). */
const FENCE_MARGIN_MS = 50;
/** Give the event loop a turn after this long in the pump, so sockets and timers are served. */
const PUMP_SLICE_MS = 8;
const INIT_TIMEOUT_MS = 10_000;
/** An async callback that has not settled for this long is reported stuck (TOPO_STUCK_AFTER_MS overrides it per worker). */
export const DEFAULT_STUCK_AFTER_MS = 10_000;
/** How often a release checks its drain for progress, a stuck callback, its budget and cancellation. */
const RELEASE_CHECK_MS = 100;

/** Keyed state and pending timers of an instance, as handed over by a swap. */
export interface InstanceSnapshot extends ExecutorSnapshot {
  /**
   * The last producer sequence processed per `${producer} ${stream} ${partition}`: it travels with the
   * partition, so the next version's release knows what was already consumed when it checks fences.
   */
  seen?: [string, number][];
  /**
   * Input a released instance could not process because a callback was stuck
   * (the stuck record first): the adopting instance processes it before anything new.
   */
  pending?: Inbound[];
  /**
   * At-least-once input: the JetStream stream sequence of the last message processed per
   * `${stream} ${partition}`. What the next owner's consumer delivers again up to it is skipped.
   */
  pos?: [string, number][];
  /**
   * Its output position: an adopter that replaces it one for one (a move, a swap of the same instance count)
   * continues it. Restarted from a checkpoint, an instance makes again, under the same producer id and
   * numbers, what its dead predecessor published after that checkpoint; a successor under another id would
   * make the rest of it again as new records, and consumers would count them twice.
   */
  output?: OutputPosition;
}

/** The output an instance continues: the producer id it publishes under, and the sequence of the last record produced per ostream. */
export interface OutputPosition {
  producer: string;
  seqs: [string, number][];
}

/** How often an instance checkpoints by default (TOPO_CHECKPOINT_MS on the worker; 0 turns checkpoints off). */
export const DEFAULT_CHECKPOINT_MS = 1_000;

export interface InstanceDeps {
  /** The instance's data plane: its own connection (ownConnection) or its worker's. */
  nc: NatsConnection;
  /** The worker's connection, for what is the worker's (stuck reports); default nc. */
  workerNc?: NatsConnection;
  /** A connection opened for this instance alone (its own NATS user): Context.nats, closed when the instance ends. */
  ownConnection?: NatsConnection;
  view: TopologyView;
  log: Logger;
  workerId: string;
  window?: number;
  /** See DEFAULT_STUCK_AFTER_MS. */
  stuckAfterMs?: number;
  /** Where input comes from and output goes (default: core NATS). */
  edges?: EdgeFactory;
  /** The artifact file on disk: a CPU-heavy computation's thread imports it (runtime/worker/runnerPump.ts). Without it everything runs inline. */
  artifactFile?: string;
  /**
   * A computation in another language: its callbacks run behind this runner (an operator
   * process, runtime/runners/process.ts), called with what reports its crashes and cool-downs.
   */
  hosted?: (note: (message: string) => void) => WatchedRunner;
  /** Where checkpoints go (runtime/state/checkpointStore.ts); without it the instance keeps none. */
  checkpoints?: CheckpointStore;
  checkpointMs?: number;
  /**
   * The output this instance continues (same producer id, next sequence): its dead predecessor's, from the
   * checkpoint it starts from, or that of the instance it replaces one for one in a swap (InstanceSnapshot.output).
   */
  continues?: OutputPosition;
  /** Counters of the at-least-once edges (runtime/worker/jetstream.ts), shared with the edge factory. */
  delivery?: DeliveryCounters;
  /** The worker's TOPO_TRACE_SAMPLE: a source's share of records that start a trace, unless its hints.traceSample says otherwise. */
  traceSample?: number;
}

/** Runs in a thread: hints.cpu 'heavy' in the assigned metadata, else in the artifact's own (TOPO_THREADS=0 turns threads off). */
export function runsInThread(assignment: Assignment, comp: Computation): boolean {
  if (process.env.TOPO_THREADS === '0') return false;
  return (assignment.metadata.hints?.cpu ?? comp.hints?.cpu) === 'heavy';
}

export class Instance {
  readonly assignment: Assignment;
  readonly id: string;
  state: InstanceState = 'starting';
  readonly observed = new Observed();
  readonly metrics: InstanceMetrics = this.observed.metrics;
  lastError: string | undefined;

  private readonly nc: NatsConnection;
  private readonly workerNc: NatsConnection;
  private readonly ownConnection: NatsConnection | undefined;
  private readonly edges: EdgeFactory;
  private readonly exec: Executor;
  private readonly log: Logger;
  private readonly producers = new Map<string, Outlet>();
  /** The batch `src` and credit subject of its output: its own id, or its dead predecessor's (from a checkpoint), whose sequence it continues. */
  readonly producerId: string;
  private readonly inlet: Inlet;
  private inletOpen = false;
  private credits: { close(): void } | undefined;
  private readonly deadLetters: DeadLetters;
  private readonly queue = new InputQueue();
  /** Last producer sequence processed per `${producer} ${stream} ${partition}` (the fences of a release are checked against it). */
  private readonly seen = new Map<string, number>();
  /** When the inputs were last subscribed: a fence published before that is not this instance's to wait for. */
  private subscribedAt = Date.now();
  private readonly credit: CreditBook;
  private readonly groupOf = new Map<string, string>();
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
  private probation: ProbationGate<Inbound> | undefined;
  private readonly stuckAfterMs: number;
  private readonly watch: CallbackWatch;
  /** Set by reinstate(): a release still draining gives up and leaves the instance running. */
  private releaseCancelled = false;
  /**
   * Callbacks that run behind a Runner, fed by this loop (exec is then unused): a CPU-heavy
   * instance's own thread (set at start, or when it measures as heavy), or a hosted operator process.
   */
  private threaded: RunnerPump | undefined;
  private readonly workerId: string;
  /** Inline but able to move to a thread (an artifact file): measures its CPU per record once a second. */
  private readonly meter: { heavy: HeavyMeter; file: string } | undefined;
  /** Measured as heavy: the pump moves it to a thread before its next batch. */
  private moveToThread = false;
  /** Typed streams (protocol/types.ts); undefined when none is typed, so the untyped path is untouched. */
  private readonly types: StreamTypes | undefined;
  /** At-least-once input through a runner: the last producer sequence handed to it per seen-key (admitToRunner). */
  private readonly admitted = new Map<string, number>();
  /** At-least-once input: JetStream stream sequence of the last message processed per `${stream} ${partition}`. */
  private readonly pos = new Map<string, number>();
  /** ...and its ack (policy "all": it acknowledges everything before it too), acked once a checkpoint holds it. */
  private readonly unacked = new Map<string, () => void>();
  private readonly checkpoints: CheckpointStore | undefined;
  private readonly checkpointMs: number;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointDue = false;
  private checkpointing = false;
  private lastCheckpointAt = 0;
  private sinceCheckpoint = 0;
  private refusedLogAt = 0;
  /** What this instance last wrote per checkpoint key (entries of another writer are never taken for its own). */
  private readonly written: WrittenCache = new Map();
  private readonly delivery: DeliveryCounters;
  /** A source's share of produced records that start a trace (0 for any other computation). */
  private readonly traceSample: number;

  constructor(assignment: Assignment, comp: Computation, deps: InstanceDeps) {
    this.assignment = assignment;
    this.id = assignment.instanceId;
    this.nc = deps.nc;
    this.workerNc = deps.workerNc ?? deps.nc;
    this.ownConnection = deps.ownConnection;
    this.edges = deps.edges ?? natsEdges(deps.nc, deps.view);
    this.log = deps.log;
    this.stuckAfterMs = deps.stuckAfterMs ?? DEFAULT_STUCK_AFTER_MS;
    this.watch = new CallbackWatch(this.stuckAfterMs, deps.log, `"${assignment.computation}" v${assignment.version}`);
    // Subject-safe: credits come back on topo.fc.<producerId>. An instance that continues another's output (in the
    // place of a dead one, from its checkpoint; or replacing one one for one in a swap) publishes under that one's
    // id with the next sequence, so what it produces again while a replay lasts is recognized downstream as what it is.
    this.producerId = deps.continues?.producer ?? assignment.instanceId;
    this.checkpoints = deps.checkpoints;
    this.checkpointMs = deps.checkpointMs ?? DEFAULT_CHECKPOINT_MS;
    this.delivery = deps.delivery ?? { publishRetries: 0 };
    for (const stream of assignment.metadata.ostreams) {
      this.producers.set(stream, this.edges.outlet(stream, {
        producerId: this.producerId,
        ...(deps.window !== undefined ? { window: deps.window } : {}),
        onUnblocked: () => this.schedulePump(),
        onStallReset: (group, owed) =>
          this.log.warn({ stream, group, owed }, `consumer group "${group}" of stream "${stream}" gave no credit for 5 s; presuming it gone`),
      }));
    }
    for (const { stream, grouping } of assignment.metadata.istreams) {
      this.groupOf.set(stream, groupIdOf(assignment.computation, grouping, assignment.index));
    }
    this.credit = new CreditBook((stream) => this.groupOf.get(stream) ?? assignment.computation, (producer, group, n) => this.edges.sendCredit(producer, group, n));
    for (const [stream, seq] of deps.continues?.seqs ?? []) this.producers.get(stream)?.restoreSeq(seq);
    const producers = this.producers;
    const observed = this.observed;
    const types = (this.types = StreamTypes.of(assignment.metadata));
    const sample = (this.traceSample = sourceTraceSample(assignment.metadata, deps.traceSample));
    this.exec = new Executor({
      comp,
      instance: { index: assignment.index, count: assignment.count, id: assignment.instanceId },
      log: this.log,
      sink: {
        produce(stream, key, value, traceId) {
          // A typed value that does not fit throws here, inside produceRecord.
          producers.get(stream)!.produce(key, types === undefined ? value : types.encode(stream, value), traceId ?? (sample > 0 ? sampleTrace(sample) : undefined));
          observed.metrics.recordsOut++;
        },
      },
      onTimerSet: () => this.armTimer(),
      ...(deps.ownConnection ? { nats: natsPublisher(deps.ownConnection) } : {}),
    });
    this.inlet = this.edges.inlet(assignment, this.partitions, (item) => {
      this.queue.push(item);
      this.schedulePump();
    });
    this.deadLetters = new DeadLetters(assignment.computation, this.id, (subject, bytes) => this.nc.publish(subject, bytes), this.observed, this.log,
      () => this.probation?.deadLetters);
    this.workerId = deps.workerId;
    const instance = { index: assignment.index, count: assignment.count, id: assignment.instanceId };
    if (deps.hosted) {
      this.threaded = new RunnerPump(this.threadHost(), deps.hosted((message) => {
        this.lastError = message;
        this.log.warn(message);
      }));
    } else if (deps.artifactFile && runsInThread(assignment, comp)) {
      this.threaded = new RunnerPump(this.threadHost(), new ThreadRunner({ file: deps.artifactFile, instance }));
    }
    this.meter = deps.artifactFile && !this.threaded && !deps.hosted && process.env.TOPO_THREADS !== '0' && (assignment.metadata.hints?.cpu ?? comp.hints?.cpu) !== 'light'
      ? { heavy: new HeavyMeter(HEAVY_CPU_MICROS), file: deps.artifactFile }
      : undefined;
  }

  /** Once a second: an inline instance that measures as CPU-heavy moves to its own thread (at the pump's next turn). */
  private measureHeavy(): void {
    const m = this.meter;
    if (!m || this.threaded || this.moveToThread || this.state !== 'running') return;
    if (!m.heavy.sample(this.observed.busyRatio, this.metrics.recordsIn)) return;
    this.moveToThread = true;
    this.schedulePump();
  }

  /** Moves a running inline instance into its own thread, its state and timers with it (init does not run again). */
  private async intoThread(): Promise<void> {
    this.moveToThread = false;
    const m = this.meter!;
    const tp = new RunnerPump(this.threadHost(), new ThreadRunner({ file: m.file, instance: { index: this.assignment.index, count: this.assignment.count, id: this.id } }));
    tp.restore(this.exec.snapshot());
    try {
      await tp.start(INIT_TIMEOUT_MS, { runInit: false });
    } catch (err) {
      this.log.warn({ err: errMessage(err) }, `measured ${m.heavy.measuredUs} µs/record but could not move to a thread: ${errMessage(err)}; staying inline`);
      m.heavy.us = 0;
      return;
    }
    if (this.discarded || this.state === 'stopping') {
      await tp.close();
      return;
    }
    if (this.timerHandle) clearTimeout(this.timerHandle);
    this.timerHandle = undefined;
    this.timerAt = Infinity;
    this.timersDue = false;
    this.threaded = tp;
    this.log.info({ cpuMicrosPerRecord: m.heavy.measuredUs, thresholdMicros: m.heavy.us },
      `measured ${m.heavy.measuredUs} µs of CPU per record (>= ${m.heavy.us}): moved to its own thread, with its keyed state and timers`);
  }

  /** What the runner loop (runnerPump.ts) may do to this instance: the inline loop's own steps, as closures. */
  private threadHost(): ThreadHost {
    return {
      computation: this.assignment.computation, instanceId: this.id, what: this.what, workerId: this.workerId, nc: this.workerNc, log: this.log,
      stuckAfterMs: this.stuckAfterMs,
      probation: () => this.probation,
      discarded: () => this.discarded,
      canRun: () => this.canRun(),
      take: () => {
        for (;;) {
          const item = this.queue.take();
          if (!item) return undefined;
          // At-least-once input: what was processed already (redelivered, or produced again) does not reach the runner.
          if (item.js && !this.admitToRunner(item)) continue;
          this.probation?.log.push(item);
          return item;
        }
      },
      hasQueued: () => !this.queue.empty,
      produce: (stream, key, value, traceId) => {
        let v = value;
        // A hosted operator's output is checked (its SDK should have encoded it: the bytes must decode); a thread's was encoded by our own code.
        if (this.types !== undefined && this.threaded?.runner.encodesTypes !== true) {
          try {
            v = this.types.encode(stream, value);
          } catch (err) {
            this.metrics.errors++;
            this.lastError = errMessage(err);
            this.log.error({ err: errMessage(err), stream }, `output dropped: ${errMessage(err)}`);
            return;
          }
        }
        this.producers.get(stream)!.produce(key, v, traceId ?? (this.traceSample > 0 ? sampleTrace(this.traceSample) : undefined));
        this.metrics.recordsOut++;
      },
      badTraces: (n) => {
        this.metrics.badTraces = (this.metrics.badTraces ?? 0) + n;
      },
      failed: (where, err, rec) => this.onCallbackError(where, err, rec),
      passed: () => this.recordPassed(),
      owe: (producer, stream, n) => this.credit.owe(producer, stream, n),
      checkpointDue: () => this.checkpointDue,
      checkpoint: () => this.cutCheckpoint(),
      processed: (item) => {
        this.moved(item);
        const j = item.js as RunnerJs | undefined;
        if (j?.src !== undefined) {
          const k = `${j.src} ${item.stream} ${item.partition}`;
          this.seen.set(k, Math.max(j.last!, this.seen.get(k) ?? 0));
        }
        // Replayed from the checkpoint if the worker dies: not a loss (countIn counted it).
        if (j?.n !== undefined) this.sinceCheckpoint -= j.n;
      },
      flushCredit: () => this.credit.flush(),
      malformed: (item, err) => this.deadLetters.malformed(item, err),
      deadLetter: (stream, error, record, reason = 'processRecord stuck') => this.deadLetters.send({ stream, reason, error, record }),
      ran: (ms, records) => this.observed.ran(ms, records),
      countIn: (n) => {
        this.metrics.recordsIn += n;
        this.sinceCheckpoint += n;
      },
      noteError: (message) => {
        this.metrics.errors++;
        this.lastError = message;
      },
      broken: (message) => {
        this.lastError = message;
        this.state = 'failed';
        this.log.error(message);
      },
      schedulePump: () => this.schedulePump(),
    };
  }

  private get what(): string {
    return `"${this.assignment.computation}" v${this.assignment.version}`;
  }

  // ---- lifecycle ---------------------------------------------------------------

  /** Starts from a snapshot instead of empty state (before start()). */
  restore(snapshot: InstanceSnapshot): void {
    for (const [k, seq] of snapshot.seen ?? []) this.seen.set(k, Math.max(seq, this.seen.get(k) ?? 0));
    for (const [k, seq] of snapshot.pos ?? []) this.pos.set(k, Math.max(seq, this.pos.get(k) ?? 0));
    if (this.threaded) this.threaded.restore(snapshot);
    else this.exec.restore(snapshot);
    if (snapshot.pending?.length) this.queue.prepend(snapshot.pending);
  }

  /**
   * Subscribes inputs, runs init, and starts processing. Throws
   * InitFailedError, leaving nothing subscribed. With `probation`, output is
   * held and input kept until commit() or abort().
   */
  async start(probation?: Probation): Promise<void> {
    this.credits = this.edges.listenCredits(
      this.producerId,
      (c) => {
        for (const p of this.producers.values()) p.credit(c.g, c.n);
      },
      () => (this.metrics.malformedCredits = (this.metrics.malformedCredits ?? 0) + 1),
    );
    if (probation) {
      this.probation = new ProbationGate<Inbound>(probation, this.what, (err) => {
        this.lastError = err.message;
        this.log.error({ err: err.message }, `health gate failed: ${err.message}`);
      });
      for (const p of this.producers.values()) p.hold();
    }
    this.subscribeInputs();
    // At-least-once consumers exist before the instance counts as started: a new group reads from then on.
    await (this.inlet as { ready?: Promise<void> }).ready;
    this.stallTimer = setInterval(() => {
      const now = Date.now();
      for (const p of this.producers.values()) p.checkStall(now);
      this.watch.check(now);
      this.measureHeavy();
    }, 1_000);
    const initTimeout = probation?.callbackTimeoutMs ?? INIT_TIMEOUT_MS;
    try {
      if (this.threaded) {
        await this.threaded.start(initTimeout);
      } else {
        const r = this.exec.init();
        if (isPromise(r)) await withTimeout(r, initTimeout, `init of "${this.assignment.computation}" did not finish within ${initTimeout} ms`);
      }
    } catch (err) {
      this.discarded = true;
      await this.teardown();
      this.state = 'failed';
      throw new InitFailedError(`init of "${this.assignment.computation}" v${this.assignment.version} threw: ${errMessage(err)}`, { cause: err });
    }
    this.state = probation ? 'probation' : 'running';
    this.armTimer();
    if (this.checkpoints && this.checkpointMs > 0) {
      this.lastCheckpointAt = Date.now();
      this.checkpointTimer = setInterval(() => {
        this.checkpointDue = true;
        this.schedulePump();
      }, this.checkpointMs);
    }
    this.schedulePump();
  }

  /** The partitions read on a partitioned istream: explicit (canary) or owned by index. */
  get partitions(): number[] {
    const a = this.assignment;
    return a.partitions ?? partitionsOwnedBy(a.index, a.count);
  }

  private subscribeInputs(): void {
    if (this.inletOpen) return;
    this.inletOpen = true;
    this.subscribedAt = Date.now();
    this.inlet.open();
    // Once the server has the subscriptions, everything published from then on reaches us; on at-least-once
    // input, once its JetStream consumers exist (a new group's start with what is published after they do:
    // a fence published before then is not ours to wait for, or a swap's drain waits for it in vain).
    const ready = (this.inlet as { ready?: Promise<void> }).ready;
    Promise.all([this.nc.flush(), ready]).then(() => {
      if (this.inletOpen) this.subscribedAt = Date.now();
    }, () => undefined);
  }

  private unsubscribeInputs(): void {
    if (!this.inletOpen) return;
    this.inletOpen = false;
    this.inlet.close();
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
    if (this.probation?.failed) return false;
    for (const p of this.producers.values()) {
      if (p.isBlocked()) {
        if (!this.queue.empty) this.observed.blocked(true);
        return false;
      }
    }
    return true;
  }

  /** The serial loop: due timers, then queued batches, until empty, blocked or out of its time slice. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    const sliceEnd = Date.now() + PUMP_SLICE_MS;
    this.observed.blocked(false);
    this.observed.resumed();
    try {
      if (this.moveToThread) await this.intoThread();
      if (this.threaded) {
        await this.threaded.pump();
        // Between activations (none in flight): the thread's state matches the positions.
        if (this.checkpointDue) await this.cutCheckpoint();
      }
      else while (this.canRun()) {
        if (this.checkpointDue) {
          await this.cutCheckpoint();
          continue;
        }
        if (this.timersDue) {
          await this.fireDueTimers();
          continue;
        }
        const item = this.queue.take();
        if (!item) break;
        this.probation?.log.push(item);
        noteCallback(this.assignment.computation, this.id, 'processRecord');
        const t0 = performance.now();
        const before = this.metrics.recordsIn;
        const pending = this.processBatch(item);
        noteIdle();
        if (pending) await this.watch.await(pending);
        this.observed.ran(performance.now() - t0, this.metrics.recordsIn - before);
        if (Date.now() > sliceEnd) {
          this.pumping = false;
          this.credit.flush();
          // Work is waiting: the turn given to the event loop counts as busy, not idle.
          this.observed.yielded();
          this.schedulePump();
          return;
        }
      }
    } finally {
      this.pumping = false;
    }
    if (this.discarded) return;
    this.credit.flush();
    if (this.queue.empty && !this.timersDue && !this.threaded?.hasWork) {
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
    // At-least-once input delivered again (a new consumer starts after the last checkpoint): already in the state.
    if (item.js && item.js.seq <= (this.pos.get(`${item.stream} ${item.partition}`) ?? 0)) {
      this.metrics.duplicates = (this.metrics.duplicates ?? 0) + 1;
      return undefined;
    }
    let batch;
    try {
      batch = item.batch ?? decodeBatch(item.data!);
    } catch (err) {
      this.deadLetters.malformed(item, err);
      return undefined;
    }
    return this.processRecords(batch, 0, item);
  }

  private processRecords(batch: Batch, from: number, item: Inbound): Promise<void> | undefined {
    const recs = batch.recs;
    const typed = this.types?.get(item.stream);
    // At-least-once input: a record its producer made again (restarted from a checkpoint) has a sequence this partition already processed.
    const dupUpTo = item.js ? (this.seen.get(`${batch.src} ${item.stream} ${item.partition}`) ?? 0) : -1;
    for (let i = from; i < recs.length; i++) {
      if (this.discarded || this.probation?.failed) return undefined;
      if (recs[i]![3] <= dupUpTo) {
        this.metrics.duplicates = (this.metrics.duplicates ?? 0) + 1;
        continue;
      }
      // At-least-once input is replayed from the checkpoint; at-most-once input processed since then would be lost with the worker.
      if (!item.js) this.sinceCheckpoint++;
      const rec = new Received(item.stream, recs[i]!, batch.src, this.metrics);
      this.metrics.recordsIn++;
      if (typed !== undefined && !this.decodeTyped(typed, rec)) continue;
      let res: unknown;
      try {
        res = this.exec.processRecord(rec);
      } catch (err) {
        this.onCallbackError('processRecord', err, rec);
        continue;
      }
      if (isPromise(res)) {
        const gen = this.watch.generation;
        this.watch.begin({ where: 'processRecord', since: Date.now(), batch, index: i, item });
        return this.guard(res, 'processRecord').then(
          () => {
            if (gen !== this.watch.generation) return undefined;
            this.watch.settled();
            this.recordPassed();
            return this.processRecords(batch, i + 1, item);
          },
          (err: unknown) => {
            if (gen !== this.watch.generation) return undefined;
            this.watch.settled();
            this.onCallbackError('processRecord', err, rec);
            return this.processRecords(batch, i + 1, item);
          },
        );
      }
      this.recordPassed();
    }
    // In-process input is handed over by direct calls: no credit window to refill.
    if (item.data) {
      this.credit.owe(batch.src, item.stream, recs.length);
      // What each producer's fence is checked against (release).
      const k = `${batch.src} ${item.stream} ${item.partition}`;
      if (recs.length) this.seen.set(k, Math.max(recs[recs.length - 1]![3], this.seen.get(k) ?? 0));
      this.moved(item);
    }
    else item.done?.(recs.length);
    return undefined;
  }

  /** An at-least-once input message is processed: its partition's position moves on, acked by the next checkpoint. */
  private moved(item: Inbound): void {
    if (!item.js) return;
    const k = `${item.stream} ${item.partition}`;
    if (item.js.seq > (this.pos.get(k) ?? 0)) this.pos.set(k, item.js.seq);
    if (item.js.ack) this.unacked.set(k, item.js.ack);
  }

  /**
   * At-least-once input for a runner (a thread, an operator process), which gets whole batches: a
   * message at or before its partition's position is skipped whole, and records at or before the last
   * sequence processed from their producer on that partition are cut out of the batch (the batch is
   * re-encoded only then). Their credit is given here. False when nothing of it is left to run.
   */
  private admitToRunner(item: Inbound): boolean {
    const j = item.js as RunnerJs;
    if (j.seq <= (this.pos.get(`${item.stream} ${item.partition}`) ?? 0)) {
      this.metrics.duplicates = (this.metrics.duplicates ?? 0) + 1;
      return false;
    }
    let batch: Batch;
    try {
      batch = item.batch ?? decodeBatch(item.data!);
    } catch {
      return true; // the runner dead-letters it
    }
    const recs = batch.recs;
    if (!recs.length) return true;
    const k = `${batch.src} ${item.stream} ${item.partition}`;
    // A runner takes several batches at once: what is admitted and not yet processed counts as seen.
    const floor = Math.max(this.seen.get(k) ?? 0, this.admitted.get(k) ?? 0);
    this.admitted.set(k, Math.max(floor, recs[recs.length - 1]![3]));
    j.src = batch.src;
    j.last = recs[recs.length - 1]![3];
    j.n = recs.length;
    if (recs[0]![3] > floor) return true;
    const fresh = recs.filter((r) => r[3] > floor);
    const dropped = recs.length - fresh.length;
    this.metrics.duplicates = (this.metrics.duplicates ?? 0) + dropped;
    this.credit.owe(batch.src, item.stream, dropped);
    if (!fresh.length) {
      this.moved(item);
      return false;
    }
    item.data = encodeBatch({ ...batch, recs: fresh });
    j.n = fresh.length;
    return true;
  }

  // ---- checkpoints ---------------------------------------------------------------

  /**
   * Cuts a checkpoint between callbacks: state, timers, input positions and the output sequence
   * at one point of the loop. Storing it runs on while processing goes on: first every record
   * produced before the cut must be stored (at-least-once output), then the chunks are written,
   * then the input up to the cut is acked. A checkpoint is skipped while output is held (a pause,
   * a probation): held output is in nobody's store yet.
   */
  private async cutCheckpoint(): Promise<void> {
    this.checkpointDue = false;
    const store = this.checkpoints;
    if (!store || this.checkpointing || this.discarded) return;
    if (this.state !== 'running' && this.state !== 'paused') return;
    if (this.probation) return;
    for (const p of this.producers.values()) if (p.isHeld) return;
    this.checkpointing = true;
    const at = Date.now();
    let snap: ExecutorSnapshot;
    try {
      snap = this.threaded ? await this.threaded.snapshot() : this.exec.snapshot();
    } catch (err) {
      this.checkpointing = false;
      this.noteCheckpointFailure(err);
      return;
    }
    const a = this.assignment;
    const { seqs } = this.outputPosition();
    const acks = [...this.unacked];
    this.unacked.clear();
    const since = this.sinceCheckpoint;
    const cut = {
      ...snap, computation: a.computation, version: a.version, index: a.index, count: a.count, at, partitions: this.partitions,
      seen: [...this.seen], pos: [...this.pos], producer: this.producerId, seqs,
    };
    void (async () => {
      try {
        await Promise.all([...this.producers.values()].map((p) => p.durableUpTo(p.producedSeq)));
        const { bytes } = await store.write(cut, this.written);
        for (const [, ack] of acks) ack();
        this.lastCheckpointAt = at;
        this.sinceCheckpoint -= since;
        this.metrics.checkpointBytes = bytes;
      } catch (err) {
        // Not acked: the input stays with the server, and the next checkpoint acks it (or a later message of its partition).
        for (const [k, ack] of acks) if (!this.unacked.has(k)) this.unacked.set(k, ack);
        this.noteCheckpointFailure(err);
      } finally {
        this.checkpointing = false;
      }
    })();
  }

  private noteCheckpointFailure(err: unknown): void {
    this.metrics.checkpointFailures = (this.metrics.checkpointFailures ?? 0) + 1;
    const now = Date.now();
    if (now - this.errorLogAt >= 5_000) {
      this.errorLogAt = now;
      this.log.warn({ err: errMessage(err) }, `checkpoint not stored: ${errMessage(err)}; the next one will try again`);
    }
  }

  /** Replaces a typed record's value by its decoded message; one that does not decode is dead-lettered (false), nothing else changes. */
  private decodeTyped(typed: StreamType, rec: Received): boolean {
    try {
      (rec as { value: unknown }).value = typed.decode(rec.value);
      return true;
    } catch (err) {
      this.deadLetters.send({
        stream: rec.stream, reason: TYPE_MISMATCH, error: errMessage(err),
        record: { key: rec.key, value: rec.value, ts: rec.timestamp, seq: rec.seq },
      });
      return false;
    }
  }

  // ---- stuck callbacks ---------------------------------------------------------

  /**
   * Gives up on the stuck callback: its late continuation will do nothing,
   * and the input it had not finished (its own record first) plus everything
   * queued is returned for the next version, in order.
   */
  private abandonStuck(): Inbound[] {
    const f = this.watch.abandon();
    const out: Inbound[] = [];
    if (f.batch && f.item && f.index !== undefined) {
      const rest = { ...f.batch, recs: f.batch.recs.slice(f.index) };
      out.push(f.item.data ? { ...f.item, data: encodeBatch(rest) } : { ...f.item, batch: rest });
      // The records before the stuck one were processed here: their credit is ours to give.
      if (f.index > 0 && f.item.data) this.credit.owe(f.batch.src, f.item.stream, f.index);
      else if (f.index > 0) f.item.done?.(f.index);
    }
    if (f.timer) this.exec.timers.set(f.timer[0], f.timer[1]);
    out.push(...this.queue.drain());
    this.timersDue = false;
    return out;
  }

  /** On probation, a callback that does not settle within callbackTimeoutMs fails the gate. */
  private guard(p: Promise<void>, where: string): Promise<void> {
    return this.probation ? this.probation.guard(p, where) : p;
  }

  private recordPassed(): void {
    this.probation?.recordPassed();
  }



  private onCallbackError(where: 'processRecord' | 'processTimer', err: unknown, rec?: InputRecord): void {
    if (this.discarded) return;
    const message = errMessage(err);
    if (this.probation?.open) {
      // On probation a throw fails the health gate; the record is not dead-lettered
      // because the old version will process it again after the rollback.
      this.probation.fail(new TopoError(`${where} of ${this.what} threw: ${message}`));
      return;
    }
    if (this.probation?.failed) return;
    this.metrics.errors++;
    this.lastError = `${where}: ${message}`;
    if (rec) {
      this.deadLetters.send({
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





  private armTimer(): void {
    if (this.threaded) return this.threaded.armTimer();
    const next = this.exec.timers.next();
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
    const due = this.exec.takeDueTimers(Date.now());
    for (const [key, at] of due) {
      if (this.discarded) return;
      const gen = this.watch.generation;
      try {
        // 'skipped': a callback earlier in this round set the key again, which replaces this firing.
        const res = this.exec.fireTimer(key, at);
        if (isPromise(res)) {
          this.watch.begin({ where: 'processTimer', since: Date.now(), timer: [key, at] });
          await this.watch.await(this.guard(res, 'processTimer'));
          if (gen !== this.watch.generation) return; // abandoned as stuck
          this.watch.settled();
        }
      } catch (err) {
        if (gen !== this.watch.generation) return;
        this.watch.settled();
        this.onCallbackError('processTimer', err);
      }
    }
    this.armTimer();
  }

  /** Resolves once the queue is empty and no callback runs. */
  private idle(timeoutMs: number): Promise<boolean> {
    const done = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.schedulePump();
    if (!this.pumping && !this.pumpScheduled && this.queue.empty && !this.timersDue) {
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
  async pauseOutput(streams: string[] | undefined, leaseMs: number): Promise<{ fences: Record<string, number>; partitionFences: Record<string, Record<string, number>>; partitionAgesMs: Record<string, Record<string, number>> }> {
    const held = streams ? streams.map((s) => this.producers.get(s)).filter((p): p is Outlet => p !== undefined) : [...this.producers.values()];
    for (const p of held) p.hold();
    if (this.state === 'running') this.state = 'paused';
    if (this.pauseLease) clearTimeout(this.pauseLease);
    this.pauseLease = setTimeout(() => {
      this.pauseLease = undefined;
      this.log.warn({ leaseMs }, `pause lease of ${leaseMs} ms expired without resume: resuming output by itself`);
      this.resumeOutput();
    }, leaseMs);
    // What was published before the fence must reach the server (be stored, on an at-least-once stream) before we report it.
    await this.nc.flush();
    await Promise.all(held.map((p) => p.settle()));
    const fences: Record<string, number> = {};
    const partitionFences: Record<string, Record<string, number>> = {};
    const partitionAgesMs: Record<string, Record<string, number>> = {};
    for (const p of held) {
      fences[p.stream] = p.lastPublishedSeq;
      partitionFences[p.stream] = p.partitionFences;
      partitionAgesMs[p.stream] = p.partitionAgesMs;
    }
    return { fences, partitionFences, partitionAgesMs };
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
  async release(swapId: string, budgetMs: number, fences: readonly ProducerFence[] = []): Promise<{ snapshot: InstanceSnapshot; drained: number; handedOver: number; fencesMet: number; outputFences: ProducerFence[] }> {
    this.releaseCancelled = false;
    const before = this.metrics.recordsIn;
    const startedAt = Date.now();
    await this.nc.flush();
    this.checkCancelled();
    const awaited = this.visibleFences(fences);
    this.draining = true;
    // Timers already due are pending work too: fire them before the snapshot.
    const nextTimer = this.exec.timers.next();
    if (nextTimer !== undefined && nextTimer <= Date.now()) this.timersDue = true;
    let pending: Inbound[] = [];
    const unmet = () => awaited.filter(([k, seq]) => (this.seen.get(k) ?? 0) < seq);
    /** The checks of every wait: cancelled, a stuck callback (handed over), the budget. */
    const check = (what: () => string): void => {
      this.checkCancelled();
      const now = Date.now();
      if (this.watch.isStuck(now)) {
        pending = this.abandonStuck();
        this.log.warn({ swapId, batches: pending.length }, `release: handing ${pending.length} unprocessed batch(es) of a stuck callback to the next version`);
        return;
      }
      if (now - startedAt > budgetMs) {
        throw new TimeoutError(
          `instance ${this.id} did not drain within its budget of ${budgetMs} ms (${this.metrics.recordsIn - before} record(s) processed, ` +
            `${this.queue.length} batch(es) still queued${what()}); it keeps its state and input`,
        );
      }
    };
    try {
      // Subscribed until the last record each paused producer published reached us: on a NATS cluster
      // a round trip to our server does not prove that another server's messages arrived.
      while (unmet().length > 0 && pending.length === 0) {
        await this.idle(RELEASE_CHECK_MS);
        check(() => `, ${unmet().length} producer fence(s) not seen: ${unmet().slice(0, 3).map(([k, seq]) => `${k} #${seq} (seen #${this.seen.get(k) ?? 0})`).join(', ')}`);
      }
      this.unsubscribeInputs();
      for (;;) {
        if (await this.idle(RELEASE_CHECK_MS)) break;
        check(() => '');
      }
    } finally {
      this.draining = false;
    }
    this.checkCancelled();
    await Promise.all([...this.producers.values()].map((p) => p.settle()));
    this.credit.flush();
    if (this.timerHandle) clearTimeout(this.timerHandle);
    this.timerHandle = undefined;
    this.timerAt = Infinity;
    this.state = 'standby';
    const snapshot: InstanceSnapshot = this.threaded ? await this.threaded.snapshot() : this.snapshot();
    if (this.seen.size) snapshot.seen = [...this.seen];
    if (this.pos.size) snapshot.pos = [...this.pos];
    snapshot.output = this.outputPosition();
    if (pending.length) snapshot.pending = pending.map(portable);
    const outputFences: ProducerFence[] = [];
    for (const p of this.producers.values()) {
      const partitions = p.partitionFences;
      if (Object.keys(partitions).length) outputFences.push({ producer: this.producerId, stream: p.stream, partitions, agesMs: p.partitionAgesMs });
    }
    return { snapshot, drained: this.metrics.recordsIn - before, handedOver: countRecords(pending), fencesMet: awaited.length - unmet().length, outputFences };
  }

  /**
   * The fences this instance can see: producer, stream and partition subjects it reads alone (key-grouped on
   * its partitions, broadcast on all), as [seen-key, seq]. A queue-group (shuffle) member cannot tell its share,
   * in-process input needs none, and a thread-run instance does not track them: for those the round trip stands.
   */
  private visibleFences(fences: readonly ProducerFence[]): [string, number][] {
    if (this.threaded || fences.length === 0) return [];
    const local = new Set(this.assignment.fusion?.inputs ?? []);
    const mine = new Set(this.partitions);
    const out: [string, number][] = [];
    for (const f of fences) {
      const ist = this.assignment.metadata.istreams.find((i) => i.stream === f.stream);
      if (!ist || local.has(f.stream) || ist.grouping === 'shuffle') continue;
      for (const [p, seq] of Object.entries(f.partitions)) {
        if (ist.grouping === 'key' && !mine.has(Number(p))) continue;
        const k = `${f.producer} ${f.stream} ${p}`;
        // Published before the server had this instance's subscriptions: it went to a predecessor (whose
        // consumed-up-to marks came with the snapshot) or to nobody. Not ours to wait for.
        const age = f.agesMs?.[p];
        if (age !== undefined && (this.seen.get(k) ?? 0) < seq && age > Date.now() - this.subscribedAt - FENCE_MARGIN_MS) continue;
        out.push([k, seq]);
      }
    }
    return out;
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
    this.queue.prepend(replay);
    this.unsubscribeInputs();
    this.subscribeInputs();
    this.state = 'running';
    for (const p of this.producers.values()) p.release();
    this.armTimer();
    const nextTimer = this.exec.timers.next();
    this.timersDue = nextTimer !== undefined && nextTimer <= Date.now();
    this.schedulePump();
  }

  /** Input handed back from another worker after a rollback: processed after what it already holds. */
  replay(items: readonly Inbound[]): void {
    for (const item of items) this.queue.push(item);
    this.schedulePump();
  }

  snapshot(): InstanceSnapshot {
    return this.exec.snapshot();
  }

  /**
   * Stores this instance's output position before it produces anything (a fresh at-least-once producer, see
   * worker.ts assign): should it die before its first checkpoint, its successor continues its producer id from
   * the start and makes again what it had published under the same numbers, instead of making it all again as new.
   * Not stored (the store unreachable): the instance starts all the same, as before there was this step.
   */
  async claimOutput(): Promise<void> {
    const store = this.checkpoints;
    if (!store || this.checkpointMs <= 0) return;
    const a = this.assignment;
    try {
      await store.writeOutputPosition({ computation: a.computation, index: a.index, count: a.count, version: a.version, at: Date.now(), ...this.outputPosition() }, this.written);
    } catch (err) {
      this.noteCheckpointFailure(err);
    }
  }

  /** The producer id and the last sequence produced per ostream (what a checkpoint and a release hand on). */
  private outputPosition(): OutputPosition {
    return { producer: this.producerId, seqs: [...this.producers.values()].map((p) => [p.stream, p.producedSeq]) };
  }

  // ---- probation (the new version in a swap) -----------------------------------

  /** Waits for the health verdict; the gate's clock starts at the first call (upstreams resumed). */
  health(timeoutMs: number): Promise<{ processed: number; ms: number }> {
    return this.probation ? this.probation.health(timeoutMs) : Promise.resolve({ processed: 0, ms: 0 });
  }

  /** The swap committed: publish held output and run normally. */
  commit(): void {
    const letters = this.probation?.deadLetters ?? [];
    this.probation = undefined;
    for (const l of letters) this.deadLetters.publishNow(l);
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
    const replay = [...(this.probation?.log ?? []), ...this.queue.drain()];
    for (const p of this.producers.values()) p.discard();
    this.probation?.settle();
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
      metrics: this.metricsReport(),
      // Capped so that one huge error (a 180 KB key in it) cannot push the heartbeat over max_payload.
      ...(this.lastError ? { lastError: truncateError(this.lastError) } : {}),
      ...this.stuckReport(),
    };
  }

  private metricsReport(): InstanceMetrics {
    const m = this.observed.report(this.queue.length);
    if (this.checkpoints && this.checkpointMs > 0) {
      m.sinceCheckpoint = this.sinceCheckpoint;
      m.checkpointAgeMs = Math.max(0, Date.now() - this.lastCheckpointAt);
    }
    if (this.delivery.publishRetries) m.publishRetries = this.delivery.publishRetries;
    if (this.producers.size && this.observed.on) {
      m.outlets = [...this.producers.values()].map((o) => ({ stream: o.stream, records: o.produced, creditStallMs: Math.round(o.creditStallMs) }));
    }
    return m;
  }

  /** State 'stuck' and which callback, while one has not returned for stuckAfterMs. */
  private stuckReport(): Partial<InstanceReport> {
    const now = Date.now();
    const queued = this.queue.length;
    if (this.threaded) return { ...this.threaded.stuckReport(now), ...(queued ? { queued } : {}) };
    const stuck = this.watch.report(now);
    if (!stuck) return queued ? { queued } : {};
    return { state: 'stuck', stuck, queued };
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
    if (this.threaded) {
      await this.threaded.stop(timeoutMs);
    } else {
      try {
        await this.exec.destroy();
      } catch (err) {
        this.log.error({ err }, `destroy threw: ${errMessage(err)}`);
      }
    }
    for (const p of this.producers.values()) p.release();
    // Bounded: a JetStream that does not store (a server down) must not keep a stop from ending; what is left is logged.
    const out = Promise.all([...this.producers.values()].map((p) => p.settle()));
    if (!(await Promise.race([out.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())]))) {
      const pending = [...this.producers.values()].reduce((n, p) => n + p.pending, 0);
      this.log.error({ pending }, `stopped with ${pending} record(s) of output not yet stored after ${timeoutMs} ms: they are lost`);
    }
    await this.teardown();
  }

  private async teardown(): Promise<void> {
    this.unsubscribeInputs();
    if (this.timerHandle) clearTimeout(this.timerHandle);
    if (this.stallTimer) clearInterval(this.stallTimer);
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    if (this.pauseLease) clearTimeout(this.pauseLease);
    for (const p of this.producers.values()) p.close();
    this.credit.flush();
    this.credits?.close();
    await this.threaded?.close();
    // What it published is flushed to the server first; its user is of no use to anyone after this.
    if (this.ownConnection && !this.ownConnection.isClosed()) await this.ownConnection.drain().catch(() => undefined);
  }

  /** The server refused this instance's own user a publish or subscription (its permissions): logged, at most every 5 s, and counted. */
  noteRefused(err: Error): void {
    this.metrics.permissionDenied = (this.metrics.permissionDenied ?? 0) + 1;
    const now = Date.now();
    if (now - this.refusedLogAt < 5_000) return;
    this.refusedLogAt = now;
    this.log.error({ err: err.message, permissionDenied: this.metrics.permissionDenied }, `NATS refused: ${err.message} (the instance's user may use only its own streams)`);
  }
}

/** Context.nats: raw publishes on the instance's own connection; a closed one drops them (the instance is ending). */
function natsPublisher(nc: NatsConnection): NatsPublisher {
  return {
    publish(subject: string, data?: Uint8Array | string): void {
      if (typeof subject !== 'string') throw new TypeError(`ctx.nats.publish: subject must be a string, got ${typeof subject}`);
      if (nc.isClosed()) return;
      nc.publish(subject, data);
    },
  };
}

/** Records in a list of raw batches (the handed-over input of a stuck instance). */
function countRecords(items: Inbound[]): number {
  let n = 0;
  for (const it of items) {
    try {
      n += (it.batch ?? decodeBatch(it.data!)).recs.length;
    } catch {
      /* a malformed batch is dead-lettered by whoever processes it */
    }
  }
  return n;
}


