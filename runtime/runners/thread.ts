/**
 * ThreadRunner: one instance of a CPU-heavy computation in its own thread,
 * a piscina pool of exactly one thread (minThreads = maxThreads = 1, never
 * idled out). Pinning the instance to one thread keeps its callbacks serial
 * and its Executor, keyed state and timers in that thread's memory; two
 * heavy instances in one worker are two pools, so they run on two cores
 * while the worker's event loop stays free for NATS.
 *
 * Batches go over as the encoded bytes, transferred (not copied) when the
 * Uint8Array owns its whole buffer, and are decoded in the thread.
 *
 * terminate() destroys the pool, which ends the thread even inside
 * `while (true) {}` (worker.terminate() stops JavaScript wherever it is).
 * The state in that thread is lost; init(from) starts a new thread, from a
 * snapshot or empty.
 */
import { Piscina } from 'piscina';
import type { ExecutorSnapshot } from '../executor/executor.js';
import { distFile } from '../client/paths.js';
import { PHASES, PROGRESS_BYTES, TerminatedError, type Activation, type Completion, type Progress, type WatchedRunner } from './runner.js';
import type { PackedCompletion, ThreadTask } from './threadMain.js';
import { packr } from '../../protocol/index.js';

export interface ThreadRunnerOptions {
  /** The computation artifact: a bundled ESM file on disk (the worker's artifact cache). */
  file: string;
  instance: { index: number; count: number; id: string };
  /** pino level of ctx.log in the thread (default TOPO_LOG_LEVEL, else info). */
  logLevel?: string;
  /** The thread's task module (default dist/threadMain.mjs). */
  entry?: string;
}

export { TerminatedError } from './runner.js';

export class ThreadRunner implements WatchedRunner {
  readonly kind = 'thread';
  readonly transfersBatches = true;
  readonly encodesTypes = true;
  private pool: Piscina | undefined;
  private readonly progressBuf = new SharedArrayBuffer(PROGRESS_BYTES);
  private readonly ctl = new Int32Array(this.progressBuf);
  /** Times terminate() ended a thread. */
  terminations = 0;
  /** Bumped by terminate(): a call that was under way rejects with TerminatedError. */
  private generation = 0;

  constructor(private readonly o: ThreadRunnerOptions) {}

  /** True once init() has started a thread and until terminate() or destroy(). */
  get alive(): boolean {
    return this.pool !== undefined;
  }

  progress(): Progress {
    const c = this.ctl;
    return { phase: PHASES[Atomics.load(c, 0)] ?? 'idle', batch: Atomics.load(c, 1), index: Atomics.load(c, 2), tick: Atomics.load(c, 3) };
  }

  async init(from?: ExecutorSnapshot, opts: { runInit?: boolean } = {}): Promise<Completion> {
    if (this.pool) await this.terminate();
    Atomics.store(this.ctl, 0, 0);
    this.pool = new Piscina({
      filename: this.o.entry ?? distFile('threadMain'),
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      recordTiming: false,
    });
    const task: ThreadTask = {
      op: 'init', file: this.o.file, instance: this.o.instance, runInit: opts.runInit ?? true, progress: this.progressBuf,
      logLevel: this.o.logLevel ?? process.env.TOPO_LOG_LEVEL ?? 'info',
      ...(from ? { from } : {}),
    };
    return unpack(await this.call<PackedCompletion>(task));
  }

  async activate(a: Activation): Promise<Completion> {
    const transferList: ArrayBuffer[] = [];
    const batches = a.batches.map(({ data, stream }) => {
      // Transfer only a buffer the array owns whole (NATS hands out views into its read buffer: copy those).
      const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
      let bytes = data;
      if (!owned) {
        // (Not data.slice(): on a Buffer that is a view, not a copy.)
        bytes = new Uint8Array(data.byteLength);
        bytes.set(data);
      }
      transferList.push(bytes.buffer as ArrayBuffer);
      return { data: bytes, stream };
    });
    return unpack(await this.call<PackedCompletion>({ ...a, op: 'activate', batches }, transferList));
  }

  async snapshot(partitions?: number[]): Promise<ExecutorSnapshot> {
    return packr.unpack(await this.call<Uint8Array>({ op: 'snapshot', ...(partitions ? { partitions } : {}) })) as ExecutorSnapshot;
  }

  async destroy(): Promise<Completion> {
    try {
      return unpack(await this.call<PackedCompletion>({ op: 'destroy' }));
    } finally {
      await this.terminate();
    }
  }

  /** Ends the thread now (also inside a synchronous loop) and resolves once it is gone. */
  async terminate(): Promise<void> {
    const pool = this.pool;
    if (!pool) return;
    this.pool = undefined;
    this.generation++;
    this.terminations++;
    await pool.destroy();
  }

  private async call<T>(task: ThreadTask, transferList?: ArrayBuffer[]): Promise<T> {
    const pool = this.pool;
    if (!pool) throw new TerminatedError(`the thread of ${this.o.instance.id} is not running (terminated, or not initialized)`);
    const gen = this.generation;
    try {
      return (await pool.run(task, transferList?.length ? { transferList } : {})) as T;
    } catch (err) {
      if (gen !== this.generation) throw new TerminatedError(`the thread of ${this.o.instance.id} was terminated`, { cause: err });
      throw err;
    }
  }
}

function unpack(c: PackedCompletion): Completion {
  const { packed, ...rest } = c;
  return { ...rest, outputs: packr.unpack(packed) as Completion['outputs'] };
}
