/**
 * Computations in other languages, hosted by this worker (PROTOCOL.md,
 * "Hosted operators"): from a `python` or `cmd` artifact to the operator
 * process that runs one instance's callbacks (runtime/runners/process.ts).
 * The data plane stays here, in the instance and its pump.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Logger } from 'pino';
import { defineComputation, type Computation } from '../../sdk/index.js';
import type { Assignment, NormalizedMetadata } from '../../protocol/index.js';
import type { HostedArtifact } from '../../protocol/artifacts.js';
import { packageRoot } from '../client/paths.js';
import { ProcessRunner, type ProcessLaunch } from '../runners/process.js';

/** The interpreter setup installs the SDK into (`npm run setup`). */
export function defaultPythonPath(root = packageRoot()): string {
  return join(root, '.topo', 'python', 'bin', 'python');
}

/** The Python that runs a computation: the artifact's (`--python` at deploy), else TOPO_PYTHON, else setup's virtual environment, else python3. */
export function pythonInterpreter(artifact: { interpreter?: string }, env: NodeJS.ProcessEnv = process.env): string {
  if (artifact.interpreter) return artifact.interpreter;
  if (env.TOPO_PYTHON) return env.TOPO_PYTHON;
  const venv = defaultPythonPath();
  return existsSync(venv) ? venv : 'python3';
}

/** How to start the operator of `a` from its artifact (written under `dir` for Python). */
export function launchOf(artifact: HostedArtifact, sha: string, a: Assignment, dir: string): ProcessLaunch {
  if (artifact.lang === 'cmd') return { kind: 'command', command: '/bin/sh', args: ['-c', artifact.command], cwd: artifact.cwd };
  const folder = join(dir, sha);
  const file = join(folder, artifact.file);
  if (!existsSync(file)) {
    mkdirSync(folder, { recursive: true });
    writeFileSync(file, artifact.code);
  }
  // The SDK of this checkout comes first on the path, so any interpreter with msgpack can run it.
  const sdk = join(packageRoot(), 'sdk', 'python');
  const pythonPath = [sdk, process.env.PYTHONPATH].filter(Boolean).join(delimiter);
  return {
    kind: 'python',
    command: pythonInterpreter(artifact),
    args: ['-m', 'topo', 'run', artifact.class ? `${file}:${artifact.class}` : file, '--name', a.computation],
    cwd: folder,
    env: { PYTHONPATH: pythonPath, PYTHONUNBUFFERED: '1' },
  };
}

/** The runner of one hosted instance. */
export function hostedRunner(launch: ProcessLaunch, a: Assignment, log: Logger, progressDir: string, note: (message: string) => void): ProcessRunner {
  return new ProcessRunner({
    launch, computation: a.computation, metadata: a.metadata, log, note,
    instance: { index: a.index, count: a.count, id: a.instanceId },
    progressFile: join(progressDir, `${a.instanceId}.progress`),
  });
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
