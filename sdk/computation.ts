/**
 * The computation contract. A computation is a small named unit that reads
 * `istreams`, writes `ostreams` and keeps keyed state. The runtime calls the
 * callbacks below, one at a time per instance: never two concurrently.
 */
import type { Logger } from 'pino';
import type { Grouping } from '../protocol/metadata.js';
import { validateMetadata } from '../protocol/metadata.js';
import type { TypeDecl } from '../protocol/typeLimits.js';

/** An input stream: a bare name means shuffle grouping. */
export type IStream<S extends string = string> = S | { readonly stream: S; readonly grouping?: Grouping };

/** One record as handed to processRecord. */
export interface InputRecord<S extends string = string> {
  /** The stream it arrived on (one of the computation's istreams). */
  readonly stream: S;
  readonly key: string;
  /** Any msgpack-encodable value, as the producer gave it. */
  readonly value: unknown;
  /** Milliseconds since the epoch, set by the producer. */
  readonly timestamp: number;
  /** Producer sequence on that stream (1, 2, 3, ... per producer instance). */
  readonly seq: number;
  /** The producer instance, as a subject-safe id. */
  readonly producer: string;
  /**
   * The trace this record belongs to (32 lowercase hex digits, a W3C trace-id), when its source
   * sampled it (hints.traceSample, TOPO_TRACE_SAMPLE). Every record produced while processing it
   * carries the same id, so `topo tap --trace <id>` follows it across streams. Records produced
   * from a timer, init or destroy carry none.
   */
  readonly traceId?: string;
}

/**
 * Keyed state of one instance. Values must be msgpack-encodable: state is
 * snapshotted and handed to the next version on a hot swap. Under key
 * grouping an instance only ever sees its own keys.
 */
export interface KeyedState {
  get<T = unknown>(key: string): T | undefined;
  set(key: string, value: unknown): void;
  /** Returns true when the key existed. */
  delete(key: string): boolean;
  has(key: string): boolean;
  keys(): IterableIterator<string>;
  readonly size: number;
}

/** What a computation can do. `O` is the union of its declared ostreams. */
export interface Context<O extends string = string> {
  /** The computation name. */
  readonly name: string;
  /** This instance: its index among `count` instances, and its unique id. */
  readonly instance: { readonly index: number; readonly count: number; readonly id: string };
  /**
   * Emits a record on one of the declared ostreams. Never blocks: output is
   * batched and sent within about a millisecond. Producing to a stream that is
   * not in `ostreams` is a compile error (and a runtime error from plain JS).
   */
  produceRecord(stream: O, key: string, value: unknown): void;
  /**
   * Asks for processTimer(ctx, key, atMs) at or after `atMs` (ms since epoch).
   * One timer per key: setting a key again replaces its pending timer.
   */
  setTimer(key: string, atMs: number): void;
  /** Keyed state of this instance. */
  readonly state: KeyedState;
  /** Structured logger bound to the computation and instance; `topo logs` shows it. */
  readonly log: Logger;
  /**
   * This instance's own NATS connection, as the NATS user the controller minted for it: the server lets
   * it publish only on its ostreams' subjects (and its logs, dead letters and credits). Anything else is
   * refused by the server, and the refusal is logged and counted (`permissionDenied` in `topo status`).
   * Undefined when the instance has no user of its own (a server whose auth topo does not manage, or
   * `topo up --no-auth`), and in a thread (`cpu: 'heavy'`). Records go through `produceRecord`; this is
   * for what the runtime does not model.
   */
  readonly nats?: NatsPublisher;
}

/** Raw publishing on the instance's own NATS connection (see Context.nats). */
export interface NatsPublisher {
  publish(subject: string, data?: Uint8Array | string): void;
}

type MaybePromise = void | Promise<void>;

/** The definition a user writes. */
export interface ComputationSpec<I extends string, O extends string> {
  /** Unique name in the topology: letters, digits, "_" and "-". */
  readonly name: string;
  /** Streams this computation reads, each with a grouping (default shuffle). An empty list makes a source. */
  readonly istreams: readonly IStream<I>[];
  /** Streams this computation may produce to. */
  readonly ostreams: readonly O[];
  /**
   * Advice to the runtime (validated with the metadata; all optional):
   * - `cpu: 'heavy'`: each instance runs in its own thread inside its worker,
   *   fed whole batches, so a slow callback does not hold up the worker's
   *   event loop, and one stuck in a synchronous loop is ended by terminating
   *   its thread (its keyed state is lost) instead of restarting the worker.
   *   Callbacks stay one at a time per instance. Values in records, state and
   *   output cross threads (structured clone), and `ctx.log` lines are
   *   written by the worker after each batch.
   * - `fuse: false`: never fused with another computation.
   * - `autoscale: { min, max }`: the planner may change the instance count within these bounds.
   * - `traceSample`: a source (no istreams) starts a trace for this share (0 to 1) of the
   *   records it produces, instead of the worker's TOPO_TRACE_SAMPLE (default 0). See InputRecord.traceId.
   */
  readonly hints?: {
    readonly cpu?: 'heavy' | 'light';
    readonly fuse?: boolean;
    readonly autoscale?: { readonly min: number; readonly max: number };
    readonly traceSample?: number;
  };
  /**
   * Typed streams: a protobuf message type per stream (an istream or an
   * ostream), made by `protoType(protoText, 'pkg.Message')` of sdk/typed.ts.
   * Records on them travel protobuf-encoded: produceRecord encodes (and
   * throws when the value does not fit the type, naming the field),
   * processRecord gets the decoded message as a plain object. Streams not
   * listed stay schemaless msgpack. A deploy or swap whose type for a stream
   * differs from the running topology's is refused.
   */
  readonly types?: { readonly [S in I | O]?: TypeDecl };
  /**
   * Delivery per stream (an istream or an ostream): `'at-most-once'` (core NATS, the default) or
   * `'at-least-once'`: the stream is kept in JetStream, consumers ack a record only once what it
   * caused is in a state checkpoint, and an instance that dies restarts elsewhere from its last
   * checkpoint and replays its input from there, so keyed state comes out exactly once.
   * One computation saying at-least-once makes the stream at-least-once for all.
   */
  readonly delivery?: { readonly [S in I | O]?: 'at-least-once' | 'at-most-once' };
  /**
   * Called once before any record or timer. Set initial timers here. Throwing
   * (or rejecting) fails the deploy: the instance never starts and nothing
   * else in the topology is touched.
   */
  init?(ctx: Context<O>): MaybePromise;
  /**
   * Called for each input record, in arrival order per producer. Throwing
   * sends this record, with the error, to the dead-letter stream
   * `topo.dlq.<name>`; the computation keeps running and the error is counted.
   * Returning a promise holds the next record until it settles. Required
   * when there are istreams; a source (no istreams) may omit it.
   */
  processRecord?(ctx: Context<O>, record: InputRecord<I>): MaybePromise;
  /**
   * Called when a timer set with setTimer is due. Throwing is logged and
   * counted as an error; the timer is not retried.
   */
  processTimer?(ctx: Context<O>, key: string, atMs: number): MaybePromise;
  /** Called once when the instance is stopped (kill, down). Errors are logged. */
  destroy?(ctx: Context<O>): MaybePromise;
}

/** processRecord is required unless the computation reads no stream (I is never: `istreams: []`). */
type ProcessRecordUnlessSource<I extends string, O extends string> = [I] extends [never]
  ? unknown
  : { processRecord(ctx: Context<O>, record: InputRecord<I>): MaybePromise };

const BRAND: unique symbol = Symbol.for('topo.computation');

/** A validated computation definition, ready to deploy. */
export type Computation<I extends string = string, O extends string = string> = ComputationSpec<I, O> & {
  readonly [BRAND]: true;
};

/**
 * Defines a computation. Stream names keep their literal types, so
 * `ctx.produceRecord('tgas', ...)` does not compile when `ostreams` is
 * `['tags']`. Metadata is validated now; the error names the bad field.
 */
export function defineComputation<const I extends string = never, const O extends string = never>(
  spec: ComputationSpec<I, O> & ProcessRecordUnlessSource<I, O>,
): Computation<I, O> {
  validateMetadata(spec);
  // A source (no istreams) gets no records, so it may leave processRecord out.
  if (typeof spec.processRecord !== 'function' && (spec.processRecord !== undefined || spec.istreams.length > 0)) {
    throw new TypeError(`computation "${spec.name}": processRecord must be a function`);
  }
  for (const cb of ['init', 'processTimer', 'destroy'] as const) {
    if (spec[cb] !== undefined && typeof spec[cb] !== 'function') {
      throw new TypeError(`computation "${spec.name}": ${cb} must be a function when given`);
    }
  }
  return Object.freeze({ ...spec, [BRAND]: true as const });
}

/** True for values made by defineComputation (works across bundles: the brand is a registered symbol). */
export function isComputation(value: unknown): value is Computation {
  return value !== null && typeof value === 'object' && (value as Record<symbol, unknown>)[BRAND] === true;
}
