/**
 * The serial loop of an instance whose callbacks run behind a Runner: a
 * CPU-heavy one (hints.cpu 'heavy') in its own thread (runtime/runners/thread.ts),
 * or one in another language in an operator process (runtime/runners/process.ts).
 * The same Inlet, queue, Outlets, credit, dead letters and probation as the
 * inline loop in instance.ts. Queued batches go over encoded, several at a
 * time; the Completion's outputs are produced through the Outlets in order,
 * its failures dead-lettered (or fail the probation gate) exactly as inline,
 * credit is owed per batch, and a timer is armed at nextTimerAt. The
 * worker's event loop only moves bytes and outputs, so NATS (heartbeats,
 * credit, control) is served while a heavy callback runs.
 *
 * A callback that makes no progress for stuckAfterMs (during probation: its
 * callbackTimeoutMs) is ended by terminating the thread or process. It
 * is reported like a stuck callback (log, InstanceReport.stuck for a while,
 * a StuckReport on topo.worker.stuck.<worker> saying the worker keeps
 * running); on probation it fails the gate; otherwise the stuck record is
 * dead-lettered, the thread's keyed state and timers are lost (counted and
 * logged), a fresh thread runs init, and the rest of that activation's input
 * is processed again there (its output had not been produced yet). A process
 * that crashes is handled the same way: the record it was at (when it wrote
 * its progress) is dead-lettered, else its batches are redone one at a time
 * and a batch that takes two down is dead-lettered whole.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { InputRecord } from '../../sdk/index.js';
import type { ExecutorSnapshot } from '../executor/executor.js';
import { decodeBatch, encodeBatch, subjects, TopoError, type InstanceReport, type StuckReport } from '../../protocol/index.js';
import { TerminatedError, type Completion, type Failure, type Progress, type WatchedRunner } from '../runners/runner.js';
import { CrashedError } from '../runners/process.js';
import type { Inbound } from './edges.js';
import type { ProbationGate } from './probation.js';

/** Batches handed to the thread in one activation, at most. */
const MAX_BATCHES = 16;
/** ... and at most this many bytes of them. */
const MAX_BYTES = 1 << 20;
/** After a thread was terminated, InstanceReport.stuck shows it this long (a few heartbeats). */
const STUCK_SHOWN_MS = 10_000;

/** What the thread loop needs of its Instance (closures over its private parts). */
export interface ThreadHost {
  readonly computation: string;
  readonly instanceId: string;
  /** `"counter" v3`, for messages. */
  readonly what: string;
  readonly workerId: string;
  readonly nc: NatsConnection;
  readonly log: Logger;
  readonly stuckAfterMs: number;
  probation(): ProbationGate<Inbound> | undefined;
  discarded(): boolean;
  canRun(): boolean;
  /** Next queued item (recorded in the probation log), or undefined. */
  take(): Inbound | undefined;
  /** True when another item is queued. */
  hasQueued(): boolean;
  /** `traceId`: the trace of the input it was produced for (undefined: a source may start one). */
  produce(stream: string, key: string, value: unknown, traceId: string | undefined): void;
  /** Input records the runner handed over untraced, their trace item not a well-formed id. */
  badTraces(n: number): void;
  /** A callback threw: dead letter / probation, as the inline path does. */
  failed(where: 'processRecord' | 'processTimer', err: Error, rec?: InputRecord): void;
  /** One record handled without error (probation counts it). */
  passed(): void;
  owe(producer: string, stream: string, n: number): void;
  /** An input item is processed (at-least-once input: its position moves on). */
  processed(item: Inbound): void;
  /** A checkpoint is due, and cutting one (state from the runner, between activations). */
  checkpointDue(): boolean;
  checkpoint(): Promise<void>;
  flushCredit(): void;
  malformed(item: Inbound, err: Error): void;
  /** The stuck record of a terminated thread, to the dead-letter stream. */
  deadLetter(stream: string, error: string, record: { key: string; value: unknown; ts: number; seq: number }, reason?: string): void;
  ran(ms: number, records: number): void;
  countIn(records: number): void;
  /** An error that is not a record's: counted, lastError. */
  noteError(message: string): void;
  /** The instance cannot go on (a fresh thread failed its init). */
  broken(message: string): void;
  schedulePump(): void;
}

interface Inflight {
  /** The stall allowance of this call. */
  limitMs: number;
  tick: number;
  movedAt: number;
  /** Set once terminated for a stall: what it was doing and for how long. */
  stuck?: { progress: Progress; forMs: number };
}

export class RunnerPump {
  private from: ExecutorSnapshot | undefined;
  private timerHandle: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private nextTimerAt: number | undefined;
  /** Input of a terminated activation, processed again first (already in the probation log). */
  private retry: Inbound[] = [];
  /** The fault of the lost activation was not located: its batches are redone one per activation, to find it. */
  private retryOneByOne = false;
  /** Batches already redone once after a thread failed on them (not a stall): failing again, they are dead-lettered. */
  private readonly retried = new WeakSet<Inbound>();
  private inflight: Inflight | undefined;
  /** The call the watch terminated for making no progress (read once by whoever catches its rejection). */
  private stalled: { progress: Progress; forMs: number } | undefined;
  private watch: NodeJS.Timeout | undefined;
  private stuckCount = 0;
  private lastStuck: { callback: string; forMs: number; at: number } | undefined;
  private stateKeys = 0;
  private timers = 0;
  private dead = false;
  /** init succeeded once: from then on a runner that is not alive is restarted. */
  private started = false;

  constructor(
    private readonly host: ThreadHost,
    readonly runner: WatchedRunner,
  ) {}

  restore(s: ExecutorSnapshot): void {
    this.from = { state: s.state, timers: s.timers };
  }

  /** Starts the thread from the restored snapshot (else empty) and runs init (unless runInit is false: a move of a running instance); throws what init threw or a hang. */
  async start(initTimeoutMs: number, opts: { runInit?: boolean } = {}): Promise<void> {
    const from = this.from;
    this.from = undefined;
    const c = await this.guard(this.runner.init(from, opts), initTimeoutMs).catch((err: unknown) => {
      throw this.inflightStuckError(err, 'init', initTimeoutMs);
    });
    for (const line of c.logs ?? []) relog(this.host.log, line);
    const f = c.failures.find((x) => x.where === 'init');
    this.absorb(c);
    if (f) {
      await this.runner.terminate();
      throw new Error(f.error);
    }
    this.started = true;
  }

  /**
   * Due timers, then queued batches, until empty or blocked; each activation is awaited, so the event loop stays free.
   * A runner with a pipeline (an operator process) gets the next activation while it works on one: completions
   * are applied in order, and when one fails, the input of every activation under way is handled as lost.
   * On probation and while redoing lost input, one activation at a time.
   */
  async pump(): Promise<void> {
    const h = this.host;
    const inflight: { items: Inbound[]; done: Promise<Completion>; limitMs: number }[] = [];
    for (;;) {
      // Between activations (none in flight) the runner's state matches the positions: a checkpoint may be cut.
      if (inflight.length === 0 && h.checkpointDue()) await h.checkpoint();
      while (!this.dead && h.canRun()) {
        // A process that died between activations: start a new one first (its state is gone; nothing of its input was lost).
        if (!this.runner.alive && this.started) {
          if (inflight.length) break;
          await this.lost(new CrashedError(`${this.runner.kind} of ${h.what} ended between activations`), [], h.stuckAfterMs);
          continue;
        }
        const gate = h.probation();
        const onProbation = gate?.open === true;
        const depth = onProbation || this.retry.length ? 1 : (this.runner.pipelineDepth ?? 1);
        if (inflight.length >= depth) break;
        // A checkpoint is due: let what is in flight complete first, then cut it (top of the loop).
        if (inflight.length > 0 && h.checkpointDue()) break;
        const items = this.takeItems();
        const now = Date.now();
        const timersDue = this.nextTimerAt !== undefined && this.nextTimerAt <= now;
        if (items.length === 0 && !timersDue) break;
        const limitMs = onProbation ? Math.min(gate.cfg.callbackTimeoutMs, h.stuckAfterMs) : h.stuckAfterMs;
        // A thread takes copies (transferred): the items themselves stay intact (probation log, a redo after a stall, a malformed batch's raw bytes).
        const copy = this.runner.transfersBatches === true;
        const batches = items.map((it) => ({ data: it.data ? (copy ? new Uint8Array(it.data) : it.data) : encodeBatch(it.batch!), stream: it.stream }));
        const done = this.runner.activate({ batches, now, ...(onProbation ? { stopOnFailure: true } : {}) });
        // Its timers were fired by this activation: the next one fires them again only when a completion says so.
        if (timersDue) this.nextTimerAt = undefined;
        done.catch(() => undefined);
        inflight.push({ items, done, limitMs });
      }
      const head = inflight.shift();
      if (!head) break;
      let c: Completion;
      try {
        c = await this.guard(head.done, head.limitMs);
      } catch (err) {
        if (h.discarded()) return;
        const rest = inflight.splice(0);
        await this.lost(err, [head.items, ...rest.map((r) => r.items)].flat(), head.limitMs);
        continue;
      }
      if (h.discarded()) return;
      this.apply(c, head.items);
    }
    // A timer that fired a hair early (not yet due by Date.now()) is armed again.
    this.armTimer();
  }

  private takeItems(): Inbound[] {
    if (this.retry.length) {
      if (this.retryOneByOne) return [this.retry.shift()!];
      const r = this.retry;
      this.retry = [];
      return r;
    }
    this.retryOneByOne = false;
    const h = this.host;
    const items: Inbound[] = [];
    let bytes = 0;
    while (items.length < MAX_BATCHES && bytes < MAX_BYTES) {
      const it = h.take();
      if (!it) break;
      items.push(it);
      bytes += it.data?.byteLength ?? 0;
    }
    return items;
  }

  /** Produces, dead-letters and credits what one activation did, in the inline path's order. */
  private apply(c: Completion, items: Inbound[]): void {
    const h = this.host;
    for (const line of c.logs ?? []) relog(h.log, line);
    for (const [stream, key, value, trace] of c.outputs) h.produce(stream, key, value, trace ?? undefined);
    if (c.badTraces) h.badTraces(c.badTraces);
    h.countIn(c.records);
    const gate = h.probation();
    let fi = 0;
    const failures = c.failures;
    for (; fi < failures.length && failures[fi]!.batch === undefined; fi++) {
      const f = failures[fi]!;
      if (f.where === 'processTimer') h.failed('processTimer', new Error(f.error));
    }
    for (let b = 0; b < c.batches.length; b++) {
      const item = items[b]!;
      const info = c.batches[b];
      let done = 0;
      for (; fi < failures.length && failures[fi]!.batch === b; fi++) {
        const f = failures[fi]!;
        if (f.where === 'decode') {
          h.malformed(item, new Error(f.error));
          continue;
        }
        if (gate) for (; done < f.index!; done++) h.passed();
        done = f.index! + 1;
        if (f.where === 'type') {
          // Not the computation's failure: dead-lettered, and it does not fail a probation.
          if (gate) h.passed();
          const r = f.record;
          h.deadLetter(item.stream, f.error, r ?? { key: '', value: null, ts: 0, seq: 0 }, 'type mismatch');
          continue;
        }
        h.failed('processRecord', new Error(f.error), failedRecord(item.stream, f));
      }
      if (!info) continue;
      if (gate) for (; done < info.records; done++) h.passed();
      // In-process input is handed over by direct calls: no credit window to refill.
      if (item.data) h.owe(info.src, item.stream, info.records);
      h.processed(item);
    }
    h.flushCredit();
    h.ran(c.busyMs, c.records);
    this.absorb(c);
  }

  private absorb(c: Completion): void {
    this.stateKeys = c.stateKeys;
    this.timers = c.timers;
    this.nextTimerAt = c.nextTimerAt;
    if (c.nextTimerAt !== undefined) this.armAt(c.nextTimerAt);
  }

  /**
   * The activation did not complete: its thread was terminated as stuck (or
   * died). Report, then go on with a fresh thread, its input processed again
   * except the stuck record (dead-lettered).
   */
  private async lost(err: unknown, items: Inbound[], limitMs: number): Promise<void> {
    const h = this.host;
    const r = this.runner;
    const stuck = this.inflightStuck(err);
    // A crashed process that wrote its progress says where it was.
    const crashedAt = stuck ? undefined : r.failedAt?.();
    await r.terminate().catch(() => undefined);
    const where = stuck ? stuck.progress.phase : 'processRecord';
    const forMs = stuck?.forMs ?? 0;
    const lostState = `${this.stateKeys} key(s) of keyed state and ${this.timers} timer(s)`;
    const message = (err as Error)?.message ?? String(err);
    const why = stuck
      ? `${where} of ${h.what} made no progress for ${forMs} ms (limit ${limitMs} ms): its ${r.kind} was terminated; the worker (pid ${process.pid}) keeps running`
      : `the ${r.kind} of ${h.what} failed: ${message}`;
    if (stuck) {
      this.stuckCount++;
      this.lastStuck = { callback: where, forMs, at: Date.now() };
      this.publishStuck(where, forMs, limitMs);
    }
    h.noteError(`${why}; lost ${lostState}`);
    const gate = h.probation();
    if (gate?.open) {
      // On probation a hang or crash fails the gate: the swap rolls back and the old version processes this input again.
      gate.fail(new TopoError(stuck ? `${where} of ${h.what} hung: did not return within ${limitMs} ms (its ${r.kind} was terminated)` : why));
      return;
    }
    // Everything of this activation is redone on the fresh runner (its output was never produced), but the record at fault.
    // When that record is not known, the batches are redone one at a time, and one that fails again is dead-lettered whole.
    const p = stuck ? stuck.progress : crashedAt;
    const located = p !== undefined && p.phase === 'processRecord' && p.batch >= 0;
    const blameUnknown = !located && (!stuck || stuck.progress.phase === 'processRecord');
    const redo: Inbound[] = [];
    let deadLettered = 0;
    for (let b = 0; b < items.length; b++) {
      const item = items[b]!;
      if (located && p.batch === b) {
        try {
          const batch = item.batch ?? decodeBatch(item.data!);
          const rec = batch.recs[p.index];
          if (rec) {
            const error = stuck ? `processRecord made no progress for ${forMs} ms: its ${r.kind} was terminated` : `the ${r.kind} crashed processing this record: ${message}`;
            h.deadLetter(item.stream, error, { key: rec[0], value: rec[1], ts: rec[2], seq: rec[3] }, stuck ? 'processRecord stuck' : `${r.kind} crashed`);
            deadLettered++;
            h.countIn(1);
            // Its credit is ours to give now; the others' when they are processed again.
            if (item.data) h.owe(batch.src, item.stream, 1);
          }
          const rest = { ...batch, recs: batch.recs.filter((_, i) => i !== p.index) };
          if (rest.recs.length) redo.push(item.data ? { ...item, data: encodeBatch(rest) } : { ...item, batch: rest });
        } catch {
          redo.push(item);
        }
        continue;
      }
      if (blameUnknown && this.retried.has(item)) {
        this.deadLetterBatch(item, `the ${r.kind} failed on this batch twice: ${message}`);
        deadLettered++;
        continue;
      }
      if (blameUnknown) this.retried.add(item);
      redo.push(item);
    }
    this.retry = redo;
    this.retryOneByOne = blameUnknown && redo.length > 1;
    h.log.error({ stuck: this.stuckCount, lostKeys: this.stateKeys, lostTimers: this.timers, redoBatches: redo.length, deadLettered },
      `${why}; lost ${lostState}${located ? `; the record at fault was dead-lettered` : ''}; a fresh ${r.kind} runs init and processes the rest`);
    this.stateKeys = 0;
    this.timers = 0;
    this.nextTimerAt = undefined;
    if (this.timerHandle) clearTimeout(this.timerHandle);
    this.timerHandle = undefined;
    this.timerAt = Infinity;
    for (;;) {
      try {
        const c = await this.guard(r.init(), limitMs);
        for (const line of c.logs ?? []) relog(h.log, line);
        const f = c.failures.find((x) => x.where === 'init');
        this.absorb(c);
        if (f) throw new Error(`init threw: ${f.error}`);
        return;
      } catch (e) {
        // A process that dies while starting is started again (init backs off, then cools down): nothing is lost meanwhile.
        if (e instanceof CrashedError && !this.dead && !h.discarded()) {
          h.noteError(`a fresh ${r.kind} for ${h.what} could not start: ${e.message}`);
          continue;
        }
        this.dead = true;
        await r.terminate().catch(() => undefined);
        h.broken(`a fresh ${r.kind} for ${h.what} could not start: ${(e as Error).message}`);
        return;
      }
    }
  }

  private deadLetterBatch(item: Inbound, error: string): void {
    const h = this.host;
    try {
      const batch = item.batch ?? decodeBatch(item.data!);
      for (const r of batch.recs) h.deadLetter(item.stream, error, { key: r[0], value: r[1], ts: r[2], seq: r[3] }, `${this.runner.kind} failed`);
      h.countIn(batch.recs.length);
      if (item.data) h.owe(batch.src, item.stream, batch.recs.length);
      h.processed(item);
    } catch (e) {
      h.malformed(item, e as Error);
    }
  }

  private publishStuck(callback: string, forMs: number, thresholdMs: number): void {
    const h = this.host;
    const r: StuckReport = {
      workerId: h.workerId, pid: process.pid, computation: h.computation, instanceId: h.instanceId, callback, forMs, thresholdMs, at: Date.now(),
      action: `terminated the instance's ${this.runner.kind}: the worker keeps running; that instance's keyed state and timers are lost and it starts again empty`,
    };
    try {
      h.nc.publish(subjects.stuck(h.workerId), JSON.stringify(r));
    } catch {
      /* connection closing: the log has it */
    }
  }

  /** Awaits a runner call, terminating the thread when its callback makes no progress for limitMs. */
  private guard<T>(p: Promise<T>, limitMs: number): Promise<T> {
    const f: Inflight = { limitMs, tick: this.runner.progress().tick, movedAt: Date.now() };
    this.inflight = f;
    if (!this.watch) {
      this.watch = setInterval(() => this.check(), Math.max(10, Math.min(250, Math.floor(Math.min(limitMs, this.host.stuckAfterMs) / 10))));
      this.watch.unref();
    }
    return p.finally(() => {
      if (this.inflight === f) this.inflight = undefined;
    });
  }

  private check(): void {
    const f = this.inflight;
    if (!f || f.stuck) return;
    const pr = this.runner.progress();
    const now = Date.now();
    if (pr.tick !== f.tick || pr.phase === 'idle') {
      f.tick = pr.tick;
      f.movedAt = now;
      return;
    }
    if (now - f.movedAt < f.limitMs) return;
    f.stuck = { progress: pr, forMs: now - f.movedAt };
    this.stalled = f.stuck;
    void this.runner.terminate();
  }

  private inflightStuck(err: unknown): { progress: Progress; forMs: number } | undefined {
    const s = this.stalled;
    this.stalled = undefined;
    return err instanceof TerminatedError ? s : undefined;
  }

  private inflightStuckError(err: unknown, where: string, limitMs: number): Error {
    const s = this.inflightStuck(err);
    if (!s) return err as Error;
    return new Error(`${where} did not return within ${limitMs} ms: its ${this.runner.kind} was terminated`);
  }

  private armAt(next: number): void {
    if (next >= this.timerAt) return;
    if (this.timerHandle) clearTimeout(this.timerHandle);
    this.timerAt = next;
    this.timerHandle = setTimeout(() => {
      this.timerHandle = undefined;
      this.timerAt = Infinity;
      this.host.schedulePump();
    }, Math.max(0, next - Date.now()));
  }

  /** Re-arms the timer for what the thread last said is pending (reinstate). */
  armTimer(): void {
    if (this.nextTimerAt !== undefined) this.armAt(this.nextTimerAt);
  }

  /** True when a pending timer is due (release fires those before its snapshot). */
  timersDue(now: number): boolean {
    return this.nextTimerAt !== undefined && this.nextTimerAt <= now;
  }

  /** True while there is input or timer work the pump has not taken yet. */
  get hasWork(): boolean {
    return this.retry.length > 0 || this.timersDue(Date.now());
  }

  snapshot(partitions?: number[]): Promise<ExecutorSnapshot> {
    return this.runner.snapshot(partitions);
  }

  /** Runs destroy in the thread (bounded) and ends it. */
  async stop(timeoutMs: number): Promise<void> {
    if (!this.runner.alive) return this.close();
    try {
      const c = await this.guard(this.runner.destroy(), timeoutMs);
      for (const line of c.logs ?? []) relog(this.host.log, line);
      const f = c.failures.find((x) => x.where === 'destroy');
      if (f) this.host.log.error({ where: 'destroy' }, `destroy threw: ${f.error}`);
    } catch (err) {
      this.host.log.error({ err }, `destroy of ${this.host.what} did not finish: ${(err as Error).message}`);
    }
    await this.close();
  }

  /** Ends the thread and the timers (teardown, abandon). */
  async close(): Promise<void> {
    this.dead = true;
    if (this.timerHandle) clearTimeout(this.timerHandle);
    if (this.watch) clearInterval(this.watch);
    this.timerHandle = undefined;
    this.watch = undefined;
    const r = this.runner;
    await (r.close ? r.close() : r.terminate()).catch(() => undefined);
  }

  /** InstanceReport.stuck for a while after a thread was terminated as stuck. */
  stuckReport(now: number): Pick<InstanceReport, 'stuck'> | undefined {
    const s = this.lastStuck;
    if (!s || now - s.at > STUCK_SHOWN_MS) return undefined;
    return { stuck: { callback: s.callback, forMs: s.forMs, count: this.stuckCount } };
  }
}

/**
 * Tells when an inline instance measures as CPU-heavy: at least `us` µs of
 * callback time per record (the oracle's HEAVY_CPU_MICROS), while busy for at
 * least half of the second, `seconds` seconds in a row. Sampled once a
 * second, off the record path. TOPO_HEAVY_US sets the threshold, 0 turns it off.
 */
export class HeavyMeter {
  private lastIn = 0;
  private heavyFor = 0;
  /** µs per record from which it is heavy (0: never). */
  us: number;
  /** The figure that last crossed the threshold. */
  measuredUs = 0;

  constructor(defaultUs: number, private readonly seconds = 3, env: NodeJS.ProcessEnv = process.env) {
    const raw = env.TOPO_HEAVY_US;
    const n = raw === undefined || raw === '' ? defaultUs : Number(raw);
    this.us = Number.isFinite(n) && n >= 0 ? n : defaultUs;
  }

  /** One sample: `busyRatio` of the last second and the records in counter; true once heavy long enough. */
  sample(busyRatio: number, recordsIn: number): boolean {
    const records = recordsIn - this.lastIn;
    this.lastIn = recordsIn;
    if (this.us <= 0) return false;
    const us = records > 0 ? (busyRatio * 1e6) / records : 0;
    if (records > 0 && busyRatio >= 0.5 && us >= this.us) {
      this.measuredUs = Math.round(us);
      this.heavyFor++;
    } else {
      this.heavyFor = 0;
    }
    return this.heavyFor >= this.seconds;
  }
}

function failedRecord(stream: string, f: Failure): InputRecord {
  const r = f.record!;
  return { stream, key: r.key, value: r.value, timestamp: r.ts, seq: r.seq, producer: '' };
}

const LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** Writes a line the computation logged in its thread through the instance's logger (its bindings added). */
function relog(log: Logger, line: string): void {
  try {
    const { level, msg, time: _t, ...fields } = JSON.parse(line) as { level: number; msg?: string; time?: number } & Record<string, unknown>;
    log[LEVELS[level] ?? 'info'](fields, msg ?? '');
  } catch {
    log.info(line);
  }
}
