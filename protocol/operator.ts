/**
 * The operator protocol v1 (PROTOCOL.md, "Hosted operators"): the frames a
 * worker exchanges with an operator process that runs one instance's
 * callbacks in another language. A frame is a 4-byte big-endian length and
 * one msgpack map; requests go on the operator's fd 3, the hello and the
 * replies come back on its fd 4.
 *
 * The zod schemas here are what the worker checks every frame from an
 * operator against (an operator is user code: a frame that does not fit is a
 * protocol error and the process is treated as crashed).
 */
import { z } from 'zod';
import { packr } from './envelope.js';

export const OPERATOR_PROTOCOL = 1;
/** Largest frame either side accepts (a snapshot of a large state is one frame). */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024;
/** Failure messages in a completion are cut to this (the operator should cut them itself). */
export const MAX_FAILURE_ERROR = 4096;

export const PROGRESS_PHASES = ['idle', 'init', 'processTimer', 'processRecord', 'destroy'] as const;

// ---- worker -> operator ---------------------------------------------------------

export interface InitFrame {
  op: 'init';
  id: number;
  instance: { index: number; count: number; id: string };
  state: [string, unknown][];
  timers: [string, number][];
  runInit: boolean;
}

export interface ActivateFrame {
  op: 'activate';
  id: number;
  now: number;
  timers: boolean;
  batches: { stream: string; data: Uint8Array }[];
  stopOnFailure?: boolean;
}

export interface SnapshotFrame {
  op: 'snapshot';
  id: number;
  partitions?: number[];
}

export interface DestroyFrame {
  op: 'destroy';
  id: number;
}

export type OperatorRequest = InitFrame | ActivateFrame | SnapshotFrame | DestroyFrame;

// ---- operator -> worker ---------------------------------------------------------

const text = z.string();
const uint = z.int().nonnegative();
const key = z.string();

const streamEntry = z.union([z.string(), z.looseObject({ stream: z.string(), grouping: z.string().optional() })]);

export const helloFrame = z.looseObject({
  op: z.literal('hello'),
  protocol: z.literal(OPERATOR_PROTOCOL, { error: `must be ${OPERATOR_PROTOCOL} (this worker speaks operator protocol v${OPERATOR_PROTOCOL})` }),
  metadata: z.looseObject({
    name: text,
    istreams: z.array(streamEntry).max(256),
    ostreams: z.array(z.string()).max(256),
    hints: z.unknown().optional(),
  }),
  sdk: z.string().max(256).optional(),
});

const failure = z.looseObject({
  where: z.enum(['processRecord', 'processTimer', 'init', 'destroy', 'decode', 'type']),
  error: z.string(),
  batch: uint.optional(),
  index: uint.optional(),
  timer: z.string().optional(),
});

const logLine = z.tuple([z.enum(['debug', 'info', 'warn', 'error']), z.string()], z.unknown());

export const completionFrame = z.looseObject({
  op: z.literal('completion'),
  id: uint,
  // [stream, key, value] or [stream, key, value, trace]: the trace of the record being processed (PROTOCOL.md, Traces).
  outputs: z.array(z.union([z.tuple([z.string(), key, z.unknown()]), z.tuple([z.string(), key, z.unknown(), z.string().nullable()])])),
  records: uint,
  batches: z.array(z.union([z.tuple([z.string(), uint]), z.null()])),
  failures: z.array(failure),
  nextTimerAt: z.number().nullable().optional(),
  stateKeys: uint,
  timers: uint,
  busyMs: z.number().nonnegative(),
  logs: z.array(logLine).optional(),
  stopped: z.boolean().optional(),
  badTraces: uint.optional(),
});

export const snapshotReplyFrame = z.looseObject({
  op: z.literal('snapshot'),
  id: uint,
  state: z.array(z.tuple([key, z.unknown()])),
  timers: z.array(z.tuple([key, z.number()])),
});

export const errorFrame = z.looseObject({ op: z.literal('error'), id: uint, error: z.string() });

export const operatorReply = z.discriminatedUnion('op', [completionFrame, snapshotReplyFrame, errorFrame]);

export type HelloFrame = z.output<typeof helloFrame>;
export type CompletionFrame = z.output<typeof completionFrame>;
export type SnapshotReplyFrame = z.output<typeof snapshotReplyFrame>;
export type OperatorReply = z.output<typeof operatorReply>;

/** Request schemas too, for other languages (JSON Schema) and for the tests of this worker's own frames. */
const requestSchemas = {
  init: z.looseObject({
    op: z.literal('init'), id: uint,
    instance: z.looseObject({ index: uint, count: z.int().positive(), id: z.string() }),
    state: z.array(z.tuple([key, z.unknown()])),
    timers: z.array(z.tuple([key, z.number()])),
    runInit: z.boolean(),
  }),
  activate: z.looseObject({
    op: z.literal('activate'), id: uint, now: z.number(), timers: z.boolean(),
    batches: z.array(z.looseObject({ stream: z.string(), data: z.custom<Uint8Array>((v) => v instanceof Uint8Array).meta({ description: 'msgpack bin' }) })),
    stopOnFailure: z.boolean().optional(),
  }),
  snapshot: z.looseObject({ op: z.literal('snapshot'), id: uint, partitions: z.array(z.int().min(0).max(31)).optional() }),
  destroy: z.looseObject({ op: z.literal('destroy'), id: uint }),
};

/** File name -> schema, for protocol/schemas/operator-*.json. */
export const operatorSchemas: Record<string, z.ZodType> = {
  'operator-hello': helloFrame,
  'operator-init': requestSchemas.init,
  'operator-activate': requestSchemas.activate,
  'operator-snapshot': requestSchemas.snapshot,
  'operator-destroy': requestSchemas.destroy,
  'operator-completion': completionFrame,
  'operator-snapshot-reply': snapshotReplyFrame,
  'operator-error': errorFrame,
};

// ---- framing --------------------------------------------------------------------

export class FrameError extends Error {
  override name = 'FrameError';
}

/** One frame: the length prefix and the msgpack map. */
export function encodeFrame(frame: object): Buffer {
  const body = packr.pack(frame) as Buffer;
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/**
 * Cuts a byte stream into frames. push() returns the frames completed by a
 * chunk, decoded; it throws FrameError on a bad length or a body that is not
 * one msgpack map with a str `op` (the caller ends the stream then).
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Record<string, unknown>[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Record<string, unknown>[] = [];
    while (this.buffered >= 4) {
      const head = this.peek(4);
      const n = head.readUInt32BE(0);
      if (n === 0 || n > MAX_FRAME_BYTES) throw new FrameError(`frame length ${n} is out of range (1..${MAX_FRAME_BYTES})`);
      if (this.buffered < 4 + n) break;
      const whole = this.take(4 + n);
      out.push(decodeFrameBody(whole.subarray(4)));
    }
    return out;
  }

  /** Bytes of a frame begun but not finished (at end of stream: a truncated frame). */
  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const whole = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return whole;
  }
}

/** One frame body: exactly one msgpack map whose `op` is a str (plain msgpack: an extension type is refused). */
export function decodeFrameBody(body: Uint8Array): Record<string, unknown> {
  let values: unknown[];
  try {
    values = packr.unpackMultiple(body) as unknown[];
  } catch (err) {
    throw new FrameError(`frame is not msgpack: ${(err as Error).message}`);
  }
  if (values.length !== 1) throw new FrameError(`a frame must hold exactly one msgpack value, got ${values.length}`);
  const v = values[0];
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new FrameError('a frame must be a msgpack map');
  const op = (v as { op?: unknown }).op;
  if (typeof op !== 'string') throw new FrameError('a frame must have a str "op"');
  return v as Record<string, unknown>;
}

const WHERE = new Set(['processRecord', 'processTimer', 'init', 'destroy', 'decode', 'type']);
const LEVELS = new Set(['debug', 'info', 'warn', 'error']);
const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/**
 * Checks a completion frame as `completionFrame` does, by hand: a completion
 * carries every output of an activation, and zod would spend more on it than
 * the rest of the worker's path (test/operator.test.ts runs both on the same
 * frames). Returns what is wrong, or undefined.
 */
export function completionProblem(f: Record<string, unknown>): string | undefined {
  if (f.op !== 'completion') return 'op: must be "completion"';
  if (!isUint(f.id)) return 'id: must be an unsigned integer';
  const outputs = f.outputs;
  if (!Array.isArray(outputs)) return 'outputs: must be an array';
  for (let i = 0; i < outputs.length; i++) {
    const o = outputs[i] as unknown;
    if (!Array.isArray(o) || o.length < 3 || o.length > 4) return `outputs.${i}: must be [stream, key, value] or [stream, key, value, trace]`;
    if (typeof o[0] !== 'string') return `outputs.${i}.0: must be a str`;
    if (typeof o[1] !== 'string') return `outputs.${i}.1: must be a str`;
    if (o.length === 4 && o[3] !== null && typeof o[3] !== 'string') return `outputs.${i}.3: must be a str or nil`;
  }
  if (!isUint(f.records)) return 'records: must be an unsigned integer';
  const batches = f.batches;
  if (!Array.isArray(batches)) return 'batches: must be an array';
  for (let i = 0; i < batches.length; i++) {
    const b = batches[i] as unknown;
    if (b === null) continue;
    if (!Array.isArray(b) || b.length !== 2 || typeof b[0] !== 'string' || !isUint(b[1])) return `batches.${i}: must be [src, records] or nil`;
  }
  const failures = f.failures;
  if (!Array.isArray(failures)) return 'failures: must be an array';
  for (let i = 0; i < failures.length; i++) {
    const x = failures[i] as Record<string, unknown> | null;
    if (x === null || typeof x !== 'object' || Array.isArray(x)) return `failures.${i}: must be a map`;
    if (typeof x.where !== 'string' || !WHERE.has(x.where)) return `failures.${i}.where: must be one of ${[...WHERE].join(', ')}`;
    if (typeof x.error !== 'string') return `failures.${i}.error: must be a str`;
    if (x.batch !== undefined && !isUint(x.batch)) return `failures.${i}.batch: must be an unsigned integer`;
    if (x.index !== undefined && !isUint(x.index)) return `failures.${i}.index: must be an unsigned integer`;
    if (x.timer !== undefined && typeof x.timer !== 'string') return `failures.${i}.timer: must be a str`;
  }
  if (f.nextTimerAt !== undefined && f.nextTimerAt !== null && typeof f.nextTimerAt !== 'number') return 'nextTimerAt: must be a number or nil';
  if (!isUint(f.stateKeys)) return 'stateKeys: must be an unsigned integer';
  if (!isUint(f.timers)) return 'timers: must be an unsigned integer';
  if (typeof f.busyMs !== 'number' || !(f.busyMs >= 0)) return 'busyMs: must be a number >= 0';
  if (f.logs !== undefined) {
    if (!Array.isArray(f.logs)) return 'logs: must be an array';
    for (let i = 0; i < f.logs.length; i++) {
      const l = f.logs[i] as unknown;
      if (!Array.isArray(l) || l.length < 2 || typeof l[0] !== 'string' || !LEVELS.has(l[0]) || typeof l[1] !== 'string') {
        return `logs.${i}: must be [level, msg, fields?] with level one of ${[...LEVELS].join(', ')}`;
      }
    }
  }
  if (f.stopped !== undefined && typeof f.stopped !== 'boolean') return 'stopped: must be a bool';
  if (f.badTraces !== undefined && !isUint(f.badTraces)) return 'badTraces: must be an unsigned integer';
  return undefined;
}
