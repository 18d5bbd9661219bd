/**
 * The code a ThreadRunner's thread runs (bundled by bin/build.mjs into
 * dist/threadMain.mjs, a piscina task module). One thread hosts one instance:
 * the Executor, keyed state and timers live in this module until the thread
 * ends. Tasks are handled one at a time, so callbacks stay serial.
 *
 * Progress is written to shared memory before every callback (phase, batch,
 * record index and a tick), so the host can see a callback that does not
 * return and name the record it is stuck on, even after terminating us.
 */
import { Received } from '../executor/received.js';
import { pino, type Logger } from 'pino';
import { pathToFileURL } from 'node:url';
import { Executor, isPromise, type ExecutorSnapshot } from '../executor/executor.js';
import { decodeBatch, packr, validateMetadata } from '../../protocol/index.js';
import { StreamTypes } from '../../protocol/types.js';
import { isComputation } from '../../sdk/index.js';
import { PHASES, type Activation, type Completion, type Failure } from './runner.js';

export type ThreadTask =
  | {
      op: 'init';
      file: string;
      instance: { index: number; count: number; id: string };
      from?: ExecutorSnapshot;
      runInit: boolean;
      progress: SharedArrayBuffer;
      logLevel: string;
    }
  | ({ op: 'activate' } & Activation)
  | { op: 'snapshot'; partitions?: number[] }
  | { op: 'destroy' };

let exec: Executor | undefined;
/** Typed streams of the computation (protocol/types.ts): decoded before processRecord, encoded at produceRecord, as inline. */
let types: StreamTypes | undefined;
let outputs: [string, string, unknown, string?][] = [];
/** Input records with a malformed trace item in this activation (their trace was dropped). */
const counts: { badTraces?: number } = {};
let logs: string[] = [];
let ctl: Int32Array | undefined;

const phase = (p: (typeof PHASES)[number]): number => PHASES.indexOf(p);
const P_IDLE = phase('idle');
const P_INIT = phase('init');
const P_TIMER = phase('processTimer');
const P_RECORD = phase('processRecord');
const P_DESTROY = phase('destroy');

function note(p: number, batch: number, index: number): void {
  const c = ctl!;
  Atomics.store(c, 1, batch);
  Atomics.store(c, 2, index);
  Atomics.store(c, 0, p);
  Atomics.add(c, 3, 1);
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}


/**
 * What a task returns: a Completion whose outputs travel msgpack-encoded in
 * `packed` (the encoding the worker's producers use anyway, so a value crosses
 * the thread boundary exactly as it would go on the wire: no structured-clone
 * failure can take the thread and its state down).
 */
export type PackedCompletion = Omit<Completion, 'outputs'> & { outputs: []; packed: Uint8Array };

function completion(failures: Failure[], records: number, batches: Completion['batches'], busyMs: number, stopped = false): PackedCompletion {
  const e = exec!;
  const next = e.timers.next();
  const c: PackedCompletion = {
    outputs: [], packed: packr.pack(outputs), records, batches, failures, busyMs, stateKeys: e.state.size, timers: e.timers.size,
    ...(next !== undefined ? { nextTimerAt: next } : {}),
    ...(logs.length ? { logs } : {}),
    ...(stopped ? { stopped } : {}),
    ...(counts.badTraces ? { badTraces: counts.badTraces } : {}),
  };
  outputs = [];
  counts.badTraces = 0;
  logs = [];
  return c;
}

function need(): Executor {
  if (!exec) throw new Error('this thread holds no instance (it was restarted): init it first');
  return exec;
}

async function init(t: Extract<ThreadTask, { op: 'init' }>): Promise<PackedCompletion> {
  ctl = new Int32Array(t.progress);
  const mod = (await import(pathToFileURL(t.file).href)) as { default?: unknown };
  const comp = mod.default;
  if (!isComputation(comp)) throw new Error(`${t.file} has no default export made by defineComputation`);
  const log: Logger = pino({ level: t.logLevel, base: {} }, { write: (line: string) => void logs.push(line) });
  const typed = (types = StreamTypes.of(validateMetadata(comp)));
  exec = new Executor({
    comp,
    instance: t.instance,
    log,
    // A value that does not fit its stream's type throws here, inside produceRecord.
    sink: {
      produce: (stream, key, value, trace) => {
        const v = typed ? typed.encode(stream, value) : value;
        outputs.push(trace === undefined ? [stream, key, v] : [stream, key, v, trace]);
      },
    },
  });
  if (t.from) exec.restore(t.from);
  const failures: Failure[] = [];
  const t0 = performance.now();
  if (t.runInit) {
    note(P_INIT, -1, -1);
    try {
      const r = exec.init();
      if (isPromise(r)) await r;
    } catch (err) {
      failures.push({ where: 'init', error: errMessage(err) });
    }
    note(P_IDLE, -1, -1);
  }
  return completion(failures, 0, [], performance.now() - t0);
}

async function activate(a: Activation): Promise<PackedCompletion> {
  const e = need();
  const failures: Failure[] = [];
  const batches: Completion['batches'] = [];
  let records = 0;
  const t0 = performance.now();
  const stop = a.stopOnFailure === true;
  if (a.timers !== false) {
    for (const [key, at] of e.takeDueTimers(a.now)) {
      note(P_TIMER, -1, -1);
      try {
        const r = e.fireTimer(key, at);
        if (isPromise(r)) await r;
      } catch (err) {
        failures.push({ where: 'processTimer', error: errMessage(err), timer: key });
        if (stop) return done(true);
      }
    }
  }
  for (let b = 0; b < a.batches.length; b++) {
    const { data, stream } = a.batches[b]!;
    let batch;
    try {
      batch = decodeBatch(data);
    } catch (err) {
      batches.push(null);
      failures.push({ where: 'decode', batch: b, error: errMessage(err) });
      continue;
    }
    const recs = batch.recs;
    batches.push({ src: batch.src, records: recs.length });
    const typed = types?.get(stream);
    for (let i = 0; i < recs.length; i++) {
      const rec = new Received(stream, recs[i]!, batch.src, counts);
      records++;
      if (typed !== undefined) {
        try {
          (rec as { value: unknown }).value = typed.decode(rec.value);
        } catch (err) {
          // Not the computation's failure: the host dead-letters it as a type mismatch.
          failures.push({ where: 'type', batch: b, index: i, error: errMessage(err), record: { key: rec.key, value: rec.value, ts: rec.timestamp, seq: rec.seq } });
          continue;
        }
      }
      note(P_RECORD, b, i);
      try {
        const r = e.processRecord(rec);
        if (isPromise(r)) await r;
      } catch (err) {
        failures.push({ where: 'processRecord', batch: b, index: i, error: errMessage(err), record: { key: rec.key, value: rec.value, ts: rec.timestamp, seq: rec.seq } });
        if (stop) {
          batches[b] = { src: batch.src, records: i + 1 };
          return done(true);
        }
      }
    }
  }
  return done(false);

  function done(stopped: boolean): PackedCompletion {
    note(P_IDLE, -1, -1);
    return completion(failures, records, batches, performance.now() - t0, stopped);
  }
}

async function destroy(): Promise<PackedCompletion> {
  const e = need();
  const failures: Failure[] = [];
  const t0 = performance.now();
  note(P_DESTROY, -1, -1);
  try {
    const r = e.destroy();
    if (isPromise(r)) await r;
  } catch (err) {
    failures.push({ where: 'destroy', error: errMessage(err) });
  }
  note(P_IDLE, -1, -1);
  const c = completion(failures, 0, [], performance.now() - t0);
  exec = undefined;
  return c;
}

export default function run(task: ThreadTask): Promise<PackedCompletion | Uint8Array> {
  switch (task.op) {
    case 'init':
      return init(task);
    case 'activate':
      return activate(task);
    case 'snapshot':
      // msgpack-encoded too: a snapshot goes to the next version (and the store) encoded this way anyway.
      return Promise.resolve(packr.pack(need().snapshot(task.partitions ? new Set(task.partitions) : undefined)) as Uint8Array);
    case 'destroy':
      return destroy();
  }
}
