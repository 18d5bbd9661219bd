/**
 * Computations in other languages, hosted by this worker (PROTOCOL.md,
 * "Hosted operators"): from a `python` or `cmd` artifact to the operator
 * process that runs one instance's callbacks (runtime/runners/process.ts).
 * The data plane stays here, in the instance and its pump.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { defineComputation, type Computation } from '../../sdk/index.js';
import type { Assignment, NormalizedMetadata } from '../../protocol/index.js';
import type { HostedArtifact } from '../../protocol/artifacts.js';
import { pythonInterpreter, sdkPythonPath } from '../client/paths.js';
import { ProcessRunner, type ProcessLaunch } from '../runners/process.js';

/** How to start the operator of `computation` from its artifact (written under `dir` for Python). */
export function launchOf(artifact: HostedArtifact, sha: string, computation: string, dir: string): ProcessLaunch {
  if (artifact.lang === 'cmd') return { kind: 'command', command: '/bin/sh', args: ['-c', artifact.command], cwd: artifact.cwd };
  const folder = join(dir, sha);
  const file = join(folder, artifact.file);
  if (!existsSync(file)) {
    mkdirSync(folder, { recursive: true });
    // The modules first: the entry file is written last, so a folder with it is complete.
    for (const [name, code] of Object.entries(artifact.modules ?? {})) writeFileSync(join(folder, name), code);
    writeFileSync(file, artifact.code);
  }
  return {
    kind: 'python',
    command: pythonInterpreter(artifact.interpreter),
    args: ['-m', 'topo', 'run', artifact.class ? `${file}:${artifact.class}` : file, '--name', computation],
    cwd: folder,
    env: { PYTHONPATH: sdkPythonPath(), PYTHONUNBUFFERED: '1' },
  };
}

/** The runner of one hosted instance: a warm process started by the swap's preload when there is one, else a new one. */
export function hostedRunner(
  launch: ProcessLaunch, a: Assignment, log: Logger, progressDir: string, note: (message: string) => void, warm?: ProcessRunner,
): ProcessRunner {
  const instance = { index: a.index, count: a.count, id: a.instanceId };
  if (warm) {
    warm.bind({ instance, log, note });
    return warm;
  }
  return new ProcessRunner({ launch, computation: a.computation, metadata: a.metadata, log, note, instance, progressFile: join(progressDir, `${a.instanceId}.progress`) });
}

/** A warm operator process not taken by an adopt within this long is ended. */
const WARM_TTL_MS = 60_000;
/** Warm processes started for one preload at most. */
const MAX_WARM = 16;

/**
 * Operator processes started ahead of a swap (its preload), so that an
 * interpreter's start and imports are not paid while the upstreams are
 * paused: the swap's adopts take them (runtime/worker/worker.ts). A start
 * that fails fails the preload, before anything is paused.
 */
export class WarmOperators {
  private readonly pool = new Map<string, { runner: ProcessRunner; timer: NodeJS.Timeout }[]>();
  private seq = 0;

  constructor(private readonly progressDir: string, private readonly log: Logger) {}

  /** Starts processes of `computation` from `launch` until `count` are warm (the ones already warm count). */
  async warm(sha: string, metadata: NormalizedMetadata, launch: ProcessLaunch, count: number): Promise<void> {
    const key = `${sha} ${metadata.name}`;
    const list = (this.pool.get(key) ?? []).filter((w) => w.runner.warmAndAlive);
    this.pool.set(key, list);
    const missing = Math.min(MAX_WARM, Math.max(1, count)) - list.length;
    const started = await Promise.allSettled(Array.from({ length: Math.max(0, missing) }, async () => {
      const runner = new ProcessRunner({
        launch, computation: metadata.name, metadata, log: this.log,
        progressFile: join(this.progressDir, `warm-${process.pid}-${++this.seq}.progress`),
      });
      try {
        await runner.warm();
      } catch (err) {
        await runner.close();
        throw err;
      }
      return runner;
    }));
    for (const r of started) {
      if (r.status !== 'fulfilled') continue;
      const entry = { runner: r.value, timer: setTimeout(() => this.expire(key, entry), WARM_TTL_MS) };
      entry.timer.unref();
      list.push(entry);
    }
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** A warm process of that version and computation, taken out of the pool. */
  take(sha: string, computation: string): ProcessRunner | undefined {
    const list = this.pool.get(`${sha} ${computation}`);
    while (list?.length) {
      const w = list.shift()!;
      clearTimeout(w.timer);
      if (w.runner.warmAndAlive) return w.runner;
      void w.runner.close();
    }
    return undefined;
  }

  async closeAll(): Promise<void> {
    const all = [...this.pool.values()].flat();
    this.pool.clear();
    for (const w of all) clearTimeout(w.timer);
    await Promise.all(all.map((w) => w.runner.close()));
  }

  private expire(key: string, entry: { runner: ProcessRunner; timer: NodeJS.Timeout }): void {
    const list = this.pool.get(key);
    const i = list?.indexOf(entry) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    void entry.runner.close();
  }
}

/**
 * What an Instance holds for a hosted computation in place of the user's
 * object: its metadata, and callbacks that are never called (the operator
 * process runs the real ones).
 */
export function hostedComputation(m: NormalizedMetadata): Computation {
  const never = (): never => {
    throw new Error(`"${m.name}" runs in an operator process: its callbacks are not called in the worker`);
  };
  return defineComputation({
    name: m.name,
    istreams: m.istreams.map((s) => ({ stream: s.stream, grouping: s.grouping })),
    ostreams: m.ostreams,
    ...(m.hints ? { hints: m.hints } : {}),
    processRecord: never,
  });
}
