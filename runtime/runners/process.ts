/**
 * ProcessRunner: one instance's callbacks in an operator process of another
 * language (PROTOCOL.md, "Hosted operators"). The worker keeps the data plane;
 * the process gets frames on its fd 3 and answers on its fd 4, one request at
 * a time, so callbacks stay serial. Its stdout and stderr lines go to the
 * instance log.
 *
 * Every frame from the process is checked (protocol/operator.ts): one that
 * does not fit, an exit, or a closed pipe is a crash; the call under way
 * rejects with CrashedError and the process is gone with its state. init()
 * starts a new one, after a back-off that grows with recent crashes and,
 * after COOLDOWN_AFTER crashes within CRASH_WINDOW_MS, a cool-down.
 *
 * Progress: the process may write [phase, batch, index, tick] into a 16-byte
 * file before each callback; progress() reads it (and counts replies), so the
 * pump's stall watch and crash handling can name the record at fault.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { ExecutorSnapshot } from '../executor/executor.js';
import {
  completionProblem, encodeFrame, FrameReader, helloFrame, operatorReply, OPERATOR_PROTOCOL, PROGRESS_PHASES,
  type CompletionFrame, type OperatorRequest,
} from '../../protocol/operator.js';
import { decodeBatch, isId, truncateError, validateMetadata, type NormalizedMetadata } from '../../protocol/index.js';
import { isTraceId } from '../../protocol/trace.js';
import { PHASES, TerminatedError, type Activation, type Completion, type Failure, type Progress, type WatchedRunner } from './runner.js';

/** What to start: a command and its arguments (no shell unless the command is one). */
export interface ProcessLaunch {
  command: string;
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** For messages: "python", "command". */
  kind: string;
}

export interface ProcessRunnerOptions {
  launch: ProcessLaunch;
  computation: string;
  /** The instance it runs; absent for a warm process started ahead of a swap (see warm()), given by bind(). */
  instance?: { index: number; count: number; id: string };
  /** The assigned metadata: the process's hello must declare the same. */
  metadata: NormalizedMetadata;
  /** Where the process's stdout/stderr lines go. */
  log: Logger;
  /** The 16-byte progress file (created here, removed on close). */
  progressFile: string;
  /** The hello must arrive within this (default 30 s: an interpreter importing packages can be slow). */
  helloTimeoutMs?: number;
  /** Says what the runner is doing about crashes (back-off, cool-down), for lastError. */
  note?: (message: string) => void;
}

/** The process went away (exit, closed pipe, protocol error) while or before a call: its state is gone. */
export class CrashedError extends Error {
  override name = 'CrashedError';
}

export const CRASH_WINDOW_MS = 60_000;
export const COOLDOWN_AFTER = 5;
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 5_000;
const STDERR_TAIL = 20;
const LINE_MAX = 16 * 1024;

function cooldownMs(): number {
  const n = Number(process.env.TOPO_OPERATOR_COOLDOWN_MS);
  return Number.isFinite(n) && n >= 0 && process.env.TOPO_OPERATOR_COOLDOWN_MS !== '' ? n : 30_000;
}

interface Call {
  id: number;
  op: OperatorRequest['op'];
  resolve: (frame: Record<string, unknown>) => void;
  reject: (err: Error) => void;
  /** activate: the batches sent, to check the completion against and to find a failed record in. */
  batches?: { stream: string; data: Uint8Array }[];
}

export class ProcessRunner implements WatchedRunner {
  readonly kind: string;
  /** The next activation goes down the pipe while the operator works on the one before: its process and the worker overlap. */
  readonly pipelineDepth = 2;
  private child: ChildProcess | undefined;
  private toOperator: Writable | undefined;
  /** Requests sent and not answered yet, oldest first: the operator answers them in order. */
  private calls: Call[] = [];
  private nextId = 1;
  private replies = 0;
  private progressFd: number | undefined;
  private readonly progressBuf = Buffer.alloc(16);
  private readonly stderrTail: string[] = [];
  private crashes: number[] = [];
  private lastFailure: Progress | undefined;
  private closed = false;
  private sleeping: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  /** Processes started, and ended by a crash (counted for status and tests). */
  starts = 0;
  crashCount = 0;
  coolingDownUntil: number | undefined;
  /** Started by warm() and not initialized yet: the first init() uses this process. */
  private warmed = false;

  constructor(private readonly o: ProcessRunnerOptions) {
    this.kind = `${o.launch.kind} process`;
  }

  /**
   * Starts the process and checks its hello, without an instance yet: a swap's preload does this,
   * so the interpreter's start and imports are not paid inside the pause. bind() then gives it its
   * instance, and the first init() uses this process. Throws what start() throws.
   */
  async warm(): Promise<void> {
    await this.start();
    this.warmed = true;
  }

  /** Whether a warm process is still there to be taken. */
  get warmAndAlive(): boolean {
    return this.warmed && this.child !== undefined;
  }

  /** The instance a warm runner is taken for (its log, and what it reports on). */
  bind(b: { instance: { index: number; count: number; id: string }; log: Logger; note?: (message: string) => void }): void {
    this.o.instance = b.instance;
    this.o.log = b.log;
    this.o.note = b.note;
  }

  private get instance(): { index: number; count: number; id: string } {
    if (!this.o.instance) throw new Error(`the ${this.kind} of "${this.o.computation}" has no instance yet (bind it first)`);
    return this.o.instance;
  }

  get alive(): boolean {
    return this.child !== undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  progress(): Progress {
    const file = this.readProgress();
    const tick = this.replies + (file?.tick ?? 0);
    const c = this.calls[0];
    if (!c) return { phase: 'idle', batch: -1, index: -1, tick };
    if (file && file.phase !== 'idle') return { ...file, tick };
    return { phase: c.op === 'init' ? 'init' : c.op === 'destroy' ? 'destroy' : 'processRecord', batch: -1, index: -1, tick };
  }

  /** Where the call that the last crash ended was, when the process wrote its progress. */
  failedAt(): Progress | undefined {
    const f = this.lastFailure;
    this.lastFailure = undefined;
    return f;
  }

  async init(from?: ExecutorSnapshot, opts: { runInit?: boolean } = {}): Promise<Completion> {
    if (this.warmed && this.child) {
      this.warmed = false;
    } else {
      this.warmed = false;
      await this.terminate();
      await this.backoff();
      if (this.closed) throw new TerminatedError(`${this.what} is closed`);
      await this.start();
    }
    const reply = await this.request({
      op: 'init', id: 0,
      instance: this.instance,
      state: from?.state.entries ?? [],
      timers: from?.timers ?? [],
      runInit: opts.runInit ?? true,
    });
    return this.completion(reply, undefined);
  }

  async activate(a: Activation): Promise<Completion> {
    const reply = await this.request({ op: 'activate', id: 0, now: a.now, timers: a.timers !== false, batches: a.batches, ...(a.stopOnFailure ? { stopOnFailure: true } : {}) });
    return this.completion(reply, a.batches);
  }

  async snapshot(partitions?: number[]): Promise<ExecutorSnapshot> {
    const reply = await this.request({ op: 'snapshot', id: 0, ...(partitions ? { partitions } : {}) });
    if (reply.op !== 'snapshot') throw this.protocolError(`answered snapshot with "${String(reply.op)}"`);
    const r = reply as { state: [string, unknown][]; timers: [string, number][] };
    return { state: { entries: r.state }, timers: r.timers };
  }

  async destroy(): Promise<Completion> {
    try {
      const reply = await this.request({ op: 'destroy', id: 0 });
      return this.completion(reply, undefined);
    } finally {
      await this.end(2_000);
    }
  }

  /** Kills the process now (SIGKILL to its process group); a call under way rejects with TerminatedError. */
  async terminate(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.detach(child);
    // Ended while it ran (a hung call): it counts towards the back-off like a crash.
    this.crashes.push(Date.now());
    this.fail(new TerminatedError(`${this.what} was terminated`));
    await killAndWait(child, 0);
  }

  /** Ends for good: no restart, the progress file removed. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sleeping) this.sleeping.wake();
    await this.terminate();
    if (this.progressFd !== undefined) closeSync(this.progressFd);
    this.progressFd = undefined;
    rmSync(this.o.progressFile, { force: true });
  }

  private get what(): string {
    return `the ${this.kind} of "${this.o.computation}"${this.o.instance ? ` (${this.o.instance.id})` : ' (warm, no instance yet)'}`;
  }

  // ---- process ---------------------------------------------------------------------

  private async start(): Promise<void> {
    const l = this.o.launch;
    mkdirSync(dirname(this.o.progressFile), { recursive: true });
    writeFileSync(this.o.progressFile, Buffer.alloc(16));
    if (this.progressFd === undefined) this.progressFd = openSync(this.o.progressFile, 'r');
    this.stderrTail.length = 0;
    let child: ChildProcess;
    try {
      child = spawn(l.command, l.args, {
        cwd: l.cwd,
        // Its own process group: a shell's children die with it (terminate kills the group).
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
        env: {
          ...process.env, ...l.env,
          TOPO_OPERATOR_PROTOCOL: String(OPERATOR_PROTOCOL), TOPO_OPERATOR_IN: '3', TOPO_OPERATOR_OUT: '4',
          TOPO_COMPUTATION: this.o.computation, TOPO_PROGRESS_FILE: this.o.progressFile,
          // Known when it starts for its instance; a warm process learns it from init (which is what counts).
          ...(this.o.instance ? {
            TOPO_INSTANCE_ID: this.o.instance.id, TOPO_INSTANCE_INDEX: String(this.o.instance.index), TOPO_INSTANCE_COUNT: String(this.o.instance.count),
          } : {}),
        },
      });
    } catch (err) {
      throw new CrashedError(`could not start ${this.what} (${l.command}): ${(err as Error).message}`);
    }
    this.starts++;
    this.child = child;
    this.toOperator = child.stdio[3] as Writable;
    // A worker that stops must not wait for its operators (they exit on end-of-file of fd 3).
    child.unref();
    for (const s of [child.stdout, child.stderr, child.stdio[3], child.stdio[4]]) (s as { unref?: () => void } | null)?.unref?.();
    this.lines(child.stdout!, 'stdout');
    this.lines(child.stderr!, 'stderr');
    (child.stdio[3] as Writable).on('error', () => undefined);
    const hello = new Promise<Record<string, unknown>>((resolve, reject) => {
      this.calls = [{ id: 0, op: 'init', resolve, reject }];
    });
    const reader = new FrameReader();
    const fromOperator = child.stdio[4] as Readable;
    fromOperator.on('data', (chunk: Buffer) => {
      if (this.child !== child) return;
      let frames: Record<string, unknown>[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        return this.crashed(child, this.protocolError((err as Error).message));
      }
      for (const f of frames) this.onFrame(child, f);
    });
    fromOperator.on('error', () => undefined);
    // Its exit (with the code) usually follows at once and makes the better message.
    fromOperator.on('end', () => setTimeout(() => this.crashed(child, new CrashedError(`${this.what} closed its fd 4${this.tail()}`)), 200));
    child.on('error', (err) => this.crashed(child, new CrashedError(`${this.what} (${l.command}) failed: ${err.message}${this.tail()}`)));
    child.on('exit', (code, signal) => {
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      // Lines still in the pipes arrive after 'exit': give them a moment for the message.
      setTimeout(() => this.crashed(child, new CrashedError(`${this.what} ${how}${this.tail()}`)), 20);
    });
    const helloMs = this.o.helloTimeoutMs ?? 30_000;
    const timer = setTimeout(() => this.crashed(child, new CrashedError(`${this.what} sent no hello within ${helloMs} ms${this.tail()}`)), helloMs);
    let frame: Record<string, unknown>;
    try {
      frame = await hello;
    } finally {
      clearTimeout(timer);
    }
    this.checkHello(frame);
  }

  private checkHello(frame: Record<string, unknown>): void {
    const r = helloFrame.safeParse(frame);
    if (!r.success) {
      const err = this.protocolError(`sent an invalid hello: ${r.error.issues.map((i) => `${i.path.join('.') || 'frame'}: ${i.message}`).join('; ')}`);
      void this.terminate();
      throw err;
    }
    let declared: NormalizedMetadata;
    try {
      declared = validateMetadata(r.data.metadata);
    } catch (err) {
      void this.terminate();
      throw new CrashedError(`${this.what} declares invalid metadata: ${(err as Error).message}`);
    }
    const { hints: _h, ...actual } = declared;
    const { hints: _w, ...wanted } = this.o.metadata;
    if (JSON.stringify(actual) !== JSON.stringify(wanted)) {
      void this.terminate();
      throw new CrashedError(`${this.what} declares metadata ${JSON.stringify(actual)}, not the deployed ${JSON.stringify(wanted)}`);
    }
  }

  private lines(stream: Readable, which: 'stdout' | 'stderr'): void {
    const rl = createInterface({ input: stream, crlfDelay: Infinity });
    rl.on('line', (raw) => {
      const line = raw.length > LINE_MAX ? `${raw.slice(0, LINE_MAX)}… (${raw.length} characters)` : raw;
      if (which === 'stderr') {
        this.stderrTail.push(line);
        if (this.stderrTail.length > STDERR_TAIL) this.stderrTail.shift();
        this.o.log.warn({ stream: which }, line);
      } else {
        this.o.log.info({ stream: which }, line);
      }
    });
    rl.on('error', () => undefined);
  }

  private tail(): string {
    const t = this.stderrTail.slice(-5).join(' | ');
    return t ? `; its stderr ended: ${truncateError(t, 600)}` : '';
  }

  private onFrame(child: ChildProcess, frame: Record<string, unknown>): void {
    const c = this.calls[0];
    if (frame.op === 'hello') {
      if (c?.id !== 0) return this.crashed(child, this.protocolError('sent a second hello'));
      this.calls.shift();
      return c.resolve(frame);
    }
    // A completion carries a whole activation's output: checked by hand (completionProblem), the rare frames with zod.
    let problem: string | undefined;
    if (frame.op === 'completion') problem = completionProblem(frame);
    else {
      const r = operatorReply.safeParse(frame);
      if (!r.success) problem = r.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || 'frame'}: ${i.message}`).join('; ');
    }
    if (problem !== undefined) return this.crashed(child, this.protocolError(`sent an invalid "${String(frame.op)}" frame: ${problem}`));
    const id = frame.id as number;
    if (!c || c.id === 0 || id !== c.id) {
      return this.crashed(child, this.protocolError(`sent a reply with id ${id}, while ${c ? `request ${c.id} (${c.op})` : 'no request'} was open`));
    }
    this.calls.shift();
    this.replies++;
    if (frame.op === 'error') return c.reject(new CrashedError(`${this.what} could not handle ${c.op}: ${truncateError(String(frame.error), 1000)}`));
    c.resolve(frame);
  }

  private request(frame: OperatorRequest): Promise<Record<string, unknown>> {
    const child = this.child;
    const out = this.toOperator;
    if (!child || !out) return Promise.reject(new TerminatedError(`${this.what} is not running (it crashed or was terminated)`));
    if (this.calls.length >= this.pipelineDepth || (this.calls.length && frame.op !== 'activate')) {
      return Promise.reject(new Error(`${this.what}: ${this.calls.length} request(s) still under way (${this.calls.map((c) => c.op).join(', ')})`));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.push({ id, op: frame.op, resolve, reject, ...(frame.op === 'activate' ? { batches: frame.batches } : {}) });
      try {
        out.write(encodeFrame({ ...frame, id }));
      } catch (err) {
        this.crashed(child, new CrashedError(`could not write to ${this.what}: ${(err as Error).message}`));
      }
    });
  }

  /** The process is gone or broke the protocol: kill it, fail the call, count the crash. */
  private crashed(child: ChildProcess, err: Error): void {
    if (this.child !== child) return;
    this.lastFailure = this.calls.length ? this.readProgress() : undefined;
    if (this.lastFailure && (this.lastFailure.phase === 'idle' || this.lastFailure.batch < 0)) this.lastFailure = undefined;
    this.detach(child);
    this.crashCount++;
    this.crashes.push(Date.now());
    void killAndWait(child, 0);
    this.o.log.warn({ err: err.message, crashes: this.crashCount }, err.message);
    this.fail(err);
  }

  private detach(child: ChildProcess): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.toOperator = undefined;
    (child.stdio[3] as Writable | null)?.destroy();
  }

  private fail(err: Error): void {
    const calls = this.calls;
    this.calls = [];
    for (const c of calls) c.reject(err);
  }

  /** Ends after destroy: end-of-file on fd 3, then SIGKILL after graceMs. */
  private async end(graceMs: number): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.detach(child);
    await killAndWait(child, graceMs);
  }

  private protocolError(what: string): CrashedError {
    return new CrashedError(`${this.what} broke the operator protocol: ${what}`);
  }

  private async backoff(): Promise<void> {
    const now = Date.now();
    this.crashes = this.crashes.filter((t) => now - t < CRASH_WINDOW_MS);
    const n = this.crashes.length;
    if (n === 0) return;
    let delay: number;
    if (n >= COOLDOWN_AFTER) {
      delay = cooldownMs();
      this.crashes = [];
      this.coolingDownUntil = now + delay;
      this.o.note?.(`${this.what} crashed ${n} times within ${CRASH_WINDOW_MS / 1000} s: cooling down for ${delay} ms, until ${new Date(now + delay).toISOString()}; its input waits`);
    } else {
      delay = Math.min(BACKOFF_FIRST_MS * 2 ** (n - 1), BACKOFF_MAX_MS);
    }
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleeping = undefined;
        resolve();
      };
      const timer = setTimeout(wake, delay);
      this.sleeping = { timer, wake };
    });
    this.coolingDownUntil = undefined;
  }

  private readProgress(): Progress | undefined {
    if (this.progressFd === undefined) return undefined;
    try {
      if (readSync(this.progressFd, this.progressBuf, 0, 16, 0) < 16) return undefined;
    } catch {
      return undefined;
    }
    const b = this.progressBuf;
    const tick = b.readInt32LE(12);
    if (tick === 0) return undefined;
    const phase = PROGRESS_PHASES[b.readInt32LE(0)] ?? 'idle';
    return { phase: PHASES.includes(phase) ? phase : 'idle', batch: b.readInt32LE(4), index: b.readInt32LE(8), tick };
  }

  /** A completion frame as the Runner's Completion, checked against the request it answers. */
  private completion(reply: Record<string, unknown>, batches: { stream: string; data: Uint8Array }[] | undefined): Completion {
    if (reply.op !== 'completion') throw this.protocolError(`answered with "${String(reply.op)}" where a completion was due`);
    const c = reply as CompletionFrame;
    const sent = batches ?? [];
    const problem = this.checkCompletion(c, sent);
    if (problem) {
      const err = this.protocolError(problem);
      if (this.child) this.crashed(this.child, err);
      throw err;
    }
    const decoded = new Map<number, ReturnType<typeof decodeBatch> | null>();
    const batchOf = (i: number) => {
      if (!decoded.has(i)) {
        try {
          decoded.set(i, decodeBatch(sent[i]!.data));
        } catch {
          decoded.set(i, null);
        }
      }
      return decoded.get(i)!;
    };
    const failures: Failure[] = c.failures.map((f) => {
      const out: Failure = { where: f.where, error: truncateError(f.error, 4096), ...(f.batch !== undefined ? { batch: f.batch } : {}), ...(f.index !== undefined ? { index: f.index } : {}), ...(f.timer !== undefined ? { timer: f.timer } : {}) };
      if ((f.where === 'processRecord' || f.where === 'type') && f.batch !== undefined && f.index !== undefined) {
        const r = batchOf(f.batch)?.recs[f.index];
        if (r) out.record = { key: r[0], value: r[1], ts: r[2], seq: r[3] };
      }
      return out;
    });
    // An operator passes on the traces it was given: one that is not a well-formed trace id is dropped and counted.
    let badTraces = c.badTraces ?? 0;
    for (const o of c.outputs) {
      if (o.length === 4 && o[3] !== null && !isTraceId(o[3])) {
        o[3] = null;
        badTraces++;
      }
    }
    return {
      outputs: c.outputs as Completion['outputs'],
      records: c.records,
      batches: c.batches.map((b) => (b ? { src: b[0], records: b[1] } : null)),
      failures,
      ...(typeof c.nextTimerAt === 'number' ? { nextTimerAt: c.nextTimerAt } : {}),
      busyMs: c.busyMs,
      stateKeys: c.stateKeys,
      timers: c.timers,
      ...(c.logs?.length ? { logs: c.logs.map(([level, msg, fields]) => JSON.stringify({ ...(isPlainObject(fields) ? fields : {}), level: LEVEL[level], msg })) } : {}),
      ...(c.stopped ? { stopped: true } : {}),
      ...(badTraces ? { badTraces } : {}),
    };
  }

  /** What a (well-formed) completion says that does not fit the request it answers. */
  private checkCompletion(c: CompletionFrame, sent: { stream: string; data: Uint8Array }[]): string | undefined {
    // Stopped at a failure (probation), it answers for the batches it reached.
    if (c.stopped ? c.batches.length > sent.length : c.batches.length !== sent.length) {
      return `a completion of ${c.batches.length} batch(es) for an activation of ${sent.length}${c.stopped ? ' (stopped)' : ''}`;
    }
    let total = 0;
    for (const b of c.batches) {
      if (!b) continue;
      if (!isId(b[0])) return `batch src ${JSON.stringify(b[0]).slice(0, 80)} is not a subject-safe id`;
      total += b[1];
    }
    if (c.records !== total) return `records ${c.records} is not the sum of the batches' records (${total})`;
    const ostreams = new Set(this.o.metadata.ostreams);
    for (const [stream] of c.outputs) {
      if (!ostreams.has(stream)) return `output on "${stream}", which is not an ostream of "${this.o.computation}" (declared: ${[...ostreams].join(', ') || 'none'})`;
    }
    for (const f of c.failures) {
      if (f.batch !== undefined && f.batch >= sent.length) return `a failure in batch ${f.batch} of ${sent.length}`;
    }
    return undefined;
  }
}

const LEVEL: Record<string, number> = { debug: 20, info: 30, warn: 40, error: 50 };

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** SIGKILL to the process group after graceMs (0: now), resolved once it has exited. */
function killAndWait(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = graceMs > 0 ? setTimeout(kill, graceMs) : undefined;
    if (!timer) kill();
    child.once('exit', () => {
      if (timer) clearTimeout(timer);
      resolve();
    });
  });
}
