/**
 * The topo test kit: unit-test a computation in-process, without NATS, a
 * controller or a worker (in the spirit of Temporal's MockActivityEnvironment).
 *
 *   import { createTestContext } from 'topo-runtime/testing';
 *
 *   const t = createTestContext(counter, { now: 0 });
 *   await t.send('events', 'user-1', { n: 1 });
 *   await t.advanceBy(60_000);            // fires due timers through processTimer
 *   expect(t.takeOutputs()).toEqual([{ stream: 'counts', key: 'user-1', value: 1 }]);
 *
 * It runs the computation on the runtime's own Executor (runtime/executor):
 * the same Context, keyed state and timer table (one per key, fired earliest
 * first; a throwing timer does not stop the rest of its round), callbacks
 * never run concurrently, init runs before anything else, values cross a
 * msgpack round trip as they would on the wire, and producing to an
 * undeclared stream throws. Differences, on purpose:
 *  - time is a fake clock that only moves with advanceTo/advanceBy;
 *  - an error thrown by processRecord / processTimer / init / destroy is
 *    re-thrown to the caller of send() / advanceTo() / init() / destroy()
 *    (the runtime dead-letters or logs it and keeps going), so a test sees it;
 *    a processTimer error is thrown once its round has fired.
 */
import { pino, type LevelWithSilent, type Logger } from 'pino';
import { isComputation, type Computation, type Context, type InputRecord } from '../computation.js';
import { packr } from '../../protocol/envelope.js';
import { validateMetadata } from '../../protocol/metadata.js';
import { StreamTypes } from '../../protocol/types.js';
import { Executor } from '../../runtime/executor/executor.js';
import type { MemoryState } from '../../runtime/executor/state.js';

export type { MemoryState } from '../../runtime/executor/state.js';

export interface TestContextOptions {
  /** This instance's index among `count` instances (default 0). */
  index?: number;
  /** How many instances the computation runs with (default 1). */
  count?: number;
  /** Start of the fake clock, ms since the epoch (default 0). */
  now?: number;
  /** `ctx.instance.id` (default `<name>-<index>-test`). */
  instanceId?: string;
  /** Lowest level captured in `logs` (default 'trace': everything). */
  logLevel?: LevelWithSilent;
}

export interface SendOptions {
  /** Record timestamp, ms since the epoch (default: the fake clock's now). */
  timestamp?: number;
  /** Producer id seen as `record.producer` (default 'test-producer'). */
  producer?: string;
  traceId?: string;
}

/** One produceRecord call, as a consumer would receive it. */
export interface OutputRecord<O extends string = string> {
  stream: O;
  key: string;
  value: unknown;
  /** The trace of the record being processed when it was produced (send's `traceId`), as the runtime passes it on. */
  traceId?: string;
}

export interface PendingTimer {
  key: string;
  atMs: number;
}

/** One captured pino log line, parsed. */
export interface LogEntry {
  /** pino numeric level: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal. */
  level: number;
  /** The fake clock when the line was logged. */
  time: number;
  msg?: string;
  computation: string;
  /** The instance index. */
  instance: number;
  instanceId: string;
  [field: string]: unknown;
}

export interface TestContext<I extends string = string, O extends string = string> {
  /** The Context handed to the computation's callbacks. */
  readonly context: Context<O>;
  /** The fake clock, ms since the epoch. */
  readonly now: number;
  /** Everything produced since the last takeOutputs(), in order. */
  readonly outputs: readonly OutputRecord<O>[];
  /** The instance's keyed state (the runtime's MemoryState; snapshot()/restore() work). */
  readonly state: MemoryState;
  /** Pending timers, earliest first. */
  readonly timers: PendingTimer[];
  /** Captured log lines, oldest first. */
  readonly logs: readonly LogEntry[];
  /**
   * Runs the computation's init. Optional: send/advanceTo/advanceBy run it on
   * first use. Throws if init already ran or throws itself.
   */
  init(): Promise<void>;
  /**
   * Hands one record to processRecord and waits for it (and then for timers
   * already due at `now`). processRecord's error is thrown here.
   */
  send(stream: I, key: string, value: unknown, options?: SendOptions): Promise<void>;
  /**
   * Moves the fake clock to `ms`, firing every timer due by then through
   * processTimer in time order; timers set by those callbacks fire too when
   * due. Returns how many timers fired. A processTimer error is thrown here
   * with the clock left at that timer's time.
   */
  advanceTo(ms: number): Promise<number>;
  /** advanceTo(now + ms). */
  advanceBy(ms: number): Promise<number>;
  /** Returns the outputs so far and clears them. */
  takeOutputs(): OutputRecord<O>[];
  /** Runs destroy (when init ran). Idempotent; the context is unusable afterwards. */
  destroy(): Promise<void>;
}

const DEFAULT_PRODUCER = 'test-producer';

/** A copy of `value` as it would arrive after a msgpack round trip through the batch codec. */
function overTheWire(value: unknown, what: string): unknown {
  try {
    return packr.unpack(packr.pack(value));
  } catch (err) {
    throw new TypeError(`${what}: value is not msgpack-encodable: ${(err as Error).message}`, { cause: err });
  }
}

function checkInt(name: string, v: number, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`createTestContext: ${name} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

/** Creates an in-memory harness around one instance of `computation`. */
export function createTestContext<I extends string, O extends string>(
  computation: Computation<I, O>,
  options: TestContextOptions = {},
): TestContext<I, O> {
  if (!isComputation(computation)) {
    throw new TypeError('createTestContext: expected a computation made by defineComputation');
  }
  const metadata = validateMetadata(computation);
  const name = metadata.name;
  const count = checkInt('count', options.count ?? 1, 1);
  const index = checkInt('index', options.index ?? 0, 0);
  if (index >= count) throw new RangeError(`createTestContext: index ${index} must be below count ${count}`);
  let clock = options.now ?? 0;
  if (!Number.isFinite(clock)) throw new RangeError('createTestContext: now must be a finite number of ms since the epoch');
  const instanceId = options.instanceId ?? `${name}-${index}-test`;
  const istreams = new Set(metadata.istreams.map((s) => s.stream));
  // Typed streams: encoded at produceRecord and decoded before processRecord, as in production.
  const types = StreamTypes.of(metadata);

  let outputs: OutputRecord<O>[] = [];
  const logs: LogEntry[] = [];
  const seqs = new Map<string, number>();

  // A real pino logger whose "destination" is this array; `time` comes from the fake clock.
  const log: Logger = pino(
    {
      level: options.logLevel ?? 'trace',
      base: { computation: name, instance: index, instanceId },
      timestamp: () => `,"time":${clock}`,
    },
    { write: (line: string) => void logs.push(JSON.parse(line) as LogEntry) },
  );

  const executor = new Executor({
    comp: computation as unknown as Computation,
    instance: { index, count, id: instanceId },
    log,
    sink: {
      produce(stream, key, value, traceId) {
        const t = types?.get(stream);
        // A typed value that does not fit throws here, inside produceRecord, as in production.
        const out: OutputRecord<O> = { stream: stream as O, key, value: t ? t.decode(t.encode(value)) : overTheWire(value, `produceRecord("${stream}", "${key}")`) };
        if (traceId !== undefined) out.traceId = traceId;
        outputs.push(out);
      },
    },
  });
  const context = executor.ctx as Context<O>;
  const { state, timers } = executor;

  // Callbacks run one at a time, like the runtime's serial loop, even if a test forgets an await.
  let tail: Promise<unknown> = Promise.resolve();
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  }

  let initRan = false;
  let started = false;
  let destroyed = false;

  function checkUsable(op: string): void {
    if (destroyed) throw new Error(`${op}: the test context of "${name}" was destroyed`);
  }

  async function runInit(): Promise<void> {
    initRan = true;
    await executor.init();
    started = true;
    await fireDue(clock);
  }

  async function ensureInit(): Promise<void> {
    if (!initRan) await runInit();
    else if (!started) throw new Error(`"${name}" did not start: its init threw`);
  }

  /** Fires timers due at or before `target`, earliest first, moving the clock to each. */
  async function fireDue(target: number): Promise<number> {
    let fired = 0;
    for (;;) {
      const next = timers.next();
      if (next === undefined || next > target) break;
      if (next > clock) clock = next;
      let failure: { err: unknown } | undefined;
      for (const [key, atMs] of executor.takeDueTimers(next)) {
        try {
          const r = executor.fireTimer(key, atMs);
          if (r === 'skipped') continue;
          await r;
          fired++;
        } catch (err) {
          // As in the runtime: not retried, and the rest of the round still fires.
          failure ??= { err };
        }
      }
      if (failure) throw failure.err;
    }
    return fired;
  }

  /** The body of advanceTo; callers hold the serial turn. */
  async function moveClockTo(ms: number, op: string): Promise<number> {
    checkUsable(op);
    if (!Number.isFinite(ms)) throw new RangeError(`${op}: target time must be a finite number, got ${String(ms)}`);
    if (ms < clock) throw new RangeError(`${op}: the clock is at ${clock} and cannot go back to ${ms}`);
    await ensureInit();
    const fired = await fireDue(ms);
    clock = ms;
    return fired;
  }

  return {
    context,
    get now() {
      return clock;
    },
    get outputs() {
      return outputs;
    },
    state,
    get timers() {
      return timers
        .snapshot()
        .sort((a, b) => a[1] - b[1])
        .map(([key, atMs]) => ({ key, atMs }));
    },
    logs,

    init: () =>
      serial(async () => {
        checkUsable('init');
        if (initRan) throw new Error(`init of "${name}" already ran (send/advanceTo/advanceBy run it on first use)`);
        await runInit();
      }),

    send: (stream, key, value, opts = {}) =>
      serial(async () => {
        checkUsable('send');
        if (!istreams.has(stream)) {
          throw new TypeError(`send: "${String(stream)}" is not an istream of "${name}" (declared: ${[...istreams].join(', ') || 'none'})`);
        }
        if (typeof key !== 'string') throw new TypeError(`send("${stream}"): key must be a string, got ${typeof key}`);
        const timestamp = opts.timestamp ?? clock;
        if (!Number.isFinite(timestamp)) throw new RangeError(`send("${stream}"): timestamp must be a finite number`);
        await ensureInit();
        const t = types?.get(stream);
        // A typed istream: the value as the consumer would decode it (bytes are taken as its encoding); a type mismatch throws here.
        const received = t ? t.decode(t.encode(value, `send("${stream}", "${key}")`)) : overTheWire(value, `send("${stream}", "${key}")`);
        const seq = (seqs.get(stream) ?? 0) + 1;
        seqs.set(stream, seq);
        const record: InputRecord<I> = {
          stream,
          key,
          value: received,
          timestamp,
          seq,
          producer: opts.producer ?? DEFAULT_PRODUCER,
          ...(opts.traceId !== undefined ? { traceId: opts.traceId } : {}),
        };
        await executor.processRecord(record as InputRecord);
        await fireDue(clock);
      }),

    advanceTo: (ms) => serial(() => moveClockTo(ms, `advanceTo(${ms})`)),
    advanceBy: (ms) =>
      serial(() => {
        if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`advanceBy: ms must be a finite number >= 0, got ${String(ms)}`);
        // The clock is read when this step runs, so queued steps add up.
        return moveClockTo(clock + ms, `advanceBy(${ms})`);
      }),

    takeOutputs() {
      const taken = outputs;
      outputs = [];
      return taken;
    },

    destroy: () =>
      serial(async () => {
        if (destroyed) return;
        destroyed = true;
        if (started) await executor.destroy();
      }),
  };
}
