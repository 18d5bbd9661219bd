/**
 * The seam between an instance's serial loop and where its callbacks run.
 * Inline, the loop calls the Executor directly (runtime/worker/instance.ts,
 * no Runner in between, so the light path pays nothing). A CPU-heavy
 * computation runs behind a Runner instead: ThreadRunner (./thread.ts) keeps
 * the Executor, keyed state and timers of one instance in its own thread and
 * is fed whole encoded batches.
 *
 * Everything here is plain data that crosses a thread boundary (structured
 * clone), with the batch bytes transferred.
 */
import type { ExecutorSnapshot } from '../executor/executor.js';

/** One unit of work: encoded batches (msgpack envelopes, as on the wire) and the clock for due timers. */
export interface Activation {
  /** Encoded batches, in order. Their buffers are transferred: the caller must not use them afterwards. */
  batches: { data: Uint8Array; stream: string }[];
  /** Timers due by `now` fire first (earliest first), then the batches are processed. */
  now: number;
  /** Stop at the first failing callback (an instance on probation: a throw fails its gate). */
  stopOnFailure?: boolean;
  /** Fire timers due by `now` (default true). */
  timers?: boolean;
}

/** `type`: a record of a typed stream that does not decode as its type (not handed to processRecord: dead-lettered as a type mismatch). */
export type FailureWhere = 'processRecord' | 'processTimer' | 'init' | 'destroy' | 'decode' | 'type';

export interface Failure {
  where: FailureWhere;
  /** Index of the batch in the Activation (processRecord, decode). */
  batch?: number;
  /** Index of the record in its batch (processRecord). */
  index?: number;
  error: string;
  /** The record whose callback threw (processRecord), for the dead letter. */
  record?: { key: string; value: unknown; ts: number; seq: number };
  /** processTimer: the timer key. */
  timer?: string;
}

export interface Completion {
  /** Records produced, in produce order, each with the trace of the record being processed when it was produced (PROTOCOL.md, Traces). */
  outputs: [stream: string, key: string, value: unknown, trace?: string | null][];
  /** Records handed to processRecord. */
  records: number;
  /** Per batch of the Activation, in order: its producer and how many records it held (credit is owed per producer). Absent for a batch that did not decode. */
  batches: ({ src: string; records: number } | null)[];
  failures: Failure[];
  /** Earliest pending timer after this activation. */
  nextTimerAt?: number;
  /** Callback time inside the runner, ms. */
  busyMs: number;
  /** Keys in the keyed state and pending timers after this activation (what a terminated thread loses). */
  stateKeys: number;
  timers: number;
  /** Lines the computation logged (pino JSON), for the host to write. */
  logs?: string[];
  /** With stopOnFailure: the activation stopped early at its first failure. */
  stopped?: boolean;
  /** Input records whose trace item was not a well-formed trace id: handed over untraced. */
  badTraces?: number;
}

export interface Runner {
  /** Loads the computation, restores `from` (else empty state) and runs init (unless runInit is false: a restart that must not redo it). */
  init(from?: ExecutorSnapshot, opts?: { runInit?: boolean }): Promise<Completion>;
  activate(a: Activation): Promise<Completion>;
  /** State and timers, all or only those of `partitions`. */
  snapshot(partitions?: number[]): Promise<ExecutorSnapshot>;
  /** Runs destroy and releases the runner's resources. */
  destroy(): Promise<Completion>;
  /** Ends the runner now, even inside a synchronous loop; its state is lost. init() starts it again. */
  terminate(): Promise<void>;
}

/** What the runner was doing, read from shared memory while it runs (and after terminate). */
export interface Progress {
  phase: (typeof PHASES)[number];
  /** processRecord: batch and record index within the Activation (-1 otherwise). */
  batch: number;
  index: number;
  /** Bumped before every callback: unchanged between two looks means the same callback is still running. */
  tick: number;
}

export const PHASES = ['idle', 'init', 'processTimer', 'processRecord', 'destroy'] as const;

/** Layout of the shared progress buffer: Int32 [0] phase, [1] batch, [2] record index, [3] tick. */
export const PROGRESS_BYTES = 16;

/** The runner was terminated while a call was under way: that call's work and the runner's state are gone. */
export class TerminatedError extends Error {
  override name = 'TerminatedError';
}

/** A Runner the instance's pump can watch (runtime/worker/runnerPump.ts): its progress, and terminate to end a hung call. */
export interface WatchedRunner extends Runner {
  /** For messages: "thread", "python process", … */
  readonly kind: string;
  /** True while it has a thread or process (between init and terminate/destroy or a crash). */
  readonly alive: boolean;
  progress(): Progress;
  /** Where the call that the runner's last crash ended was, when known (a process that wrote its progress). */
  failedAt?(): Progress | undefined;
  /** Activations that may be under way at once (default 1); the runner answers them in order. */
  readonly pipelineDepth?: number;
  /** Its outputs on typed streams are encoded by the same code in this process (a thread): the host need not check them again. */
  readonly encodesTypes?: boolean;
  /** Activation batches are transferred (their buffers detached): the pump hands over copies. */
  readonly transfersBatches?: boolean;
  /** Ends for good (teardown); terminate() alone allows init() again. */
  close?(): Promise<void>;
}
