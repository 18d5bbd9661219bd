/**
 * Runs one computation's callbacks with their context, keyed state and
 * timers, knowing nothing of transport: where records come from and where
 * produced records go is the host's business (a worker instance, a fused
 * group, a thread, or the test kit). There is one Context implementation,
 * this one, so the kit and the runtime cannot drift apart.
 *
 * State is partitioned: an entry belongs to the partition of its key
 * (protocol/hash.ts partitionOf), and so does a timer. When a computation is
 * scaled, each new instance takes the entries and timers of the partitions
 * it owns (snapshot(partitions)). A timer that is not about one key (a window
 * timer) is per instance in spirit: set it again in init, which every new
 * instance runs.
 */
import type { Logger } from 'pino';
import type { Computation, Context, InputRecord, NatsPublisher } from '../../sdk/index.js';
import { partitionOf } from '../../protocol/index.js';
import { MemoryState, TimerTable, type StateSnapshot } from './state.js';
import { otelEnabled, withSpan } from './otel.js';

/** Where produced records go, with the trace of the record being processed (undefined outside a traced processRecord). */
export interface OutputSink {
  produce(stream: string, key: string, value: unknown, traceId: string | undefined): void;
}

export interface ExecutorOptions {
  comp: Computation;
  instance: { index: number; count: number; id: string };
  log: Logger;
  sink: OutputSink;
  /** Called after setTimer, so the host can arm its clock. */
  onTimerSet?: () => void;
  /** The instance's own NATS connection (Context.nats), when it has one. */
  nats?: NatsPublisher;
}

/** Keyed state and pending timers, as a snapshot hands them over. */
export interface ExecutorSnapshot {
  state: StateSnapshot;
  timers: [string, number][];
}

export type MaybePromise = void | Promise<void>;

export class Executor {
  readonly comp: Computation;
  readonly ctx: Context;
  readonly state = new MemoryState();
  readonly timers = new TimerTable();
  /**
   * The trace of the record processRecord is handling (PROTOCOL.md, Traces): what it produces carries it.
   * Timers, init and destroy run untraced. An async processRecord keeps it until its promise settles.
   */
  private trace: string | undefined;
  /** Bumped per processRecord: a late-settling (abandoned) callback must not clear a later record's trace. */
  private call = 0;

  constructor(o: ExecutorOptions) {
    this.comp = o.comp;
    const name = o.comp.name;
    const ostreams = new Set<string>(o.comp.ostreams);
    const sink = o.sink;
    const onTimerSet = o.onTimerSet;
    const timers = this.timers;
    const self = this;
    this.ctx = Object.freeze({
      name,
      instance: Object.freeze({ ...o.instance }),
      produceRecord(stream: string, key: string, value: unknown): void {
        if (!ostreams.has(stream)) throw new Error(`produceRecord: "${stream}" is not an ostream of "${name}" (declared: ${[...ostreams].join(', ') || 'none'})`);
        if (typeof key !== 'string') throw new TypeError(`produceRecord("${stream}"): key must be a string, got ${typeof key}`);
        sink.produce(stream, key, value, self.trace);
      },
      setTimer(key: string, atMs: number): void {
        timers.set(key, atMs);
        onTimerSet?.();
      },
      state: this.state,
      log: o.log,
      ...(o.nats ? { nats: o.nats } : {}),
    }) as Context;
  }

  get name(): string {
    return this.comp.name;
  }

  init(): MaybePromise {
    return this.comp.init?.(this.ctx);
  }

  /** A source may have no processRecord: it gets no records, and a stray one is dropped. */
  processRecord(rec: InputRecord): MaybePromise {
    if (this.comp.processRecord === undefined) return undefined;
    const trace = (this.trace = rec.traceId);
    let r: MaybePromise;
    try {
      // TOPO_OTEL=1: a traced record's callback runs in an OpenTelemetry span of its trace (./otel.ts).
      if (trace !== undefined && otelEnabled) r = withSpan(this.comp.name, rec, trace, () => this.comp.processRecord!(this.ctx, rec));
      else r = this.comp.processRecord(this.ctx, rec);
    } catch (err) {
      this.trace = undefined;
      throw err;
    }
    if (trace === undefined || !isPromise(r)) {
      this.trace = undefined;
      return r;
    }
    const call = ++this.call;
    const clear = (): void => {
      if (this.call === call) this.trace = undefined;
    };
    r.then(clear, clear);
    return r;
  }

  /** Removes and returns the timers due at `now`, earliest first. */
  takeDueTimers(now: number): [string, number][] {
    return this.timers.takeDue(now);
  }

  /**
   * Fires one due timer, unless an earlier callback of the same round set
   * its key again (that replaces this firing) or there is no processTimer:
   * then returns 'skipped'. A throw is the caller's to report; the rest of
   * the round still fires (runtime and test kit alike).
   */
  fireTimer(key: string, atMs: number): MaybePromise | 'skipped' {
    if (!this.comp.processTimer || this.timers.has(key)) return 'skipped';
    return this.comp.processTimer(this.ctx, key, atMs);
  }

  destroy(): MaybePromise {
    return this.comp.destroy?.(this.ctx);
  }

  /** State and timers, all or only those of `partitions` (the instance adopting them owns those). */
  snapshot(partitions?: ReadonlySet<number>): ExecutorSnapshot {
    if (!partitions) return { state: this.state.snapshot(), timers: this.timers.snapshot() };
    return selectPartitions({ state: this.state.snapshot(), timers: this.timers.snapshot() }, partitions);
  }

  restore(s: ExecutorSnapshot): void {
    this.state.restore(s.state);
    this.timers.restore(s.timers);
  }
}

/** The entries and timers of a snapshot whose keys fall in `partitions`. */
export function selectPartitions(s: ExecutorSnapshot, partitions: ReadonlySet<number>): ExecutorSnapshot {
  return {
    state: { entries: s.state.entries.filter(([k]) => partitions.has(partitionOf(k))) },
    timers: s.timers.filter(([k]) => partitions.has(partitionOf(k))),
  };
}

/** Says whether a callback's result is a promise (an async callback). */
export function isPromise(r: unknown): r is Promise<void> {
  return r !== null && typeof r === 'object' && typeof (r as Promise<void>).then === 'function';
}
