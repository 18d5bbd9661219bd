/**
 * Artifacts of computations in other languages (PROTOCOL.md, "Hosted
 * operators"), made on the deploying machine and checked before anything is
 * sent, like a TS bundle:
 * - a Python file: its metadata read with `python -m topo describe`, the
 *   source (and class, and interpreter given with --python) in the artifact;
 * - any command: started once to read the metadata from its hello frame.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { InvalidMetadataError, ModuleLoadError, validateMetadata } from '../../protocol/index.js';
import { encodeHostedArtifact, type HostedArtifact } from '../../protocol/artifacts.js';
import { FrameReader, helloFrame, OPERATOR_PROTOCOL } from '../../protocol/operator.js';
import { pythonInterpreter, sdkPythonPath } from './paths.js';
import { bundleComputation, type BundledComputation } from './bundle.js';

const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

function bundled(artifact: HostedArtifact, metadata: unknown, where: string): BundledComputation {
  let normalized;
  try {
    normalized = validateMetadata(metadata);
  } catch (err) {
    throw new InvalidMetadataError(`${where}: ${(err as Error).message}`, { cause: err });
  }
  const code = encodeHostedArtifact(artifact);
  return { code, sha: sha256Hex(code), metadata: normalized, lang: artifact.lang };
}

/** `file.py` or `file.py:Class`. */
export function parsePythonSpec(spec: string): { file: string; cls?: string } {
  const m = /^(.*\.py)(?::([A-Za-z_][A-Za-z0-9_]*))?$/.exec(spec);
  if (!m) throw new ModuleLoadError(`${spec}: expected a Python file, file.py or file.py:ClassName`);
  return { file: m[1]!, ...(m[2] ? { cls: m[2] } : {}) };
}

export function isPythonSpec(spec: string): boolean {
  return /\.py(:[A-Za-z_][A-Za-z0-9_]*)?$/.test(spec);
}

/** Reads a Python computation's metadata and makes its artifact. */
export function bundlePython(spec: string, opts: { python?: string } = {}): BundledComputation {
  const { file, cls } = parsePythonSpec(spec);
  const abs = resolve(file);
  if (!existsSync(abs)) throw new ModuleLoadError(`${file}: no such file`);
  const python = pythonInterpreter(opts.python);
  const r = spawnSync(python, ['-m', 'topo', 'describe', cls ? `${abs}:${cls}` : abs], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PYTHONPATH: sdkPythonPath() },
  });
  if (r.error) {
    const why = (r.error as NodeJS.ErrnoException).code === 'ENOENT'
      ? `the Python interpreter "${python}" was not found (give one with --python or TOPO_PYTHON, or run \`npm run setup\` to create .topo/python)`
      : r.error.message;
    throw new ModuleLoadError(`cannot read the metadata of ${file}: ${why}`);
  }
  if (r.status !== 0) {
    const err = (r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ');
    throw new ModuleLoadError(`${file}: ${err || `python -m topo describe exited with code ${r.status}`}`);
  }
  let metadata: unknown;
  try {
    metadata = JSON.parse(r.stdout);
  } catch {
    throw new ModuleLoadError(`${file}: python -m topo describe printed no JSON metadata: ${r.stdout.slice(0, 200)}`);
  }
  const code = readFileSync(abs, 'utf8');
  const modules = siblingModules(abs, code);
  const artifact: HostedArtifact = {
    lang: 'python', file: basename(abs), code, ...(Object.keys(modules).length ? { modules } : {}),
    ...(cls ? { class: cls } : {}), ...(opts.python ? { interpreter: opts.python } : {}),
  };
  return bundled(artifact, metadata, file);
}

/** Longest total size of the modules a Python artifact takes along. */
const MAX_MODULE_BYTES = 16 * 1024 * 1024;

/**
 * The modules of `file`'s folder that it imports, and that those import, by
 * file name (`import helpers`, `from helpers import x`, `import a, b`): they
 * travel in the artifact, so the computation runs on a worker as it does
 * here. Packages and modules from elsewhere come from the interpreter.
 */
export function siblingModules(file: string, code: string): Record<string, string> {
  const dir = dirname(file);
  const self = basename(file);
  const out: Record<string, string> = {};
  let bytes = 0;
  const queue = [code];
  while (queue.length) {
    for (const name of importedNames(queue.shift()!)) {
      const f = `${name}.py`;
      if (f === self || out[f] !== undefined) continue;
      const path = join(dir, f);
      if (!existsSync(path)) continue;
      const text = readFileSync(path, 'utf8');
      bytes += Buffer.byteLength(text);
      if (bytes > MAX_MODULE_BYTES) throw new ModuleLoadError(`${file}: the modules it imports from its folder are over ${MAX_MODULE_BYTES / 1024 / 1024} MiB`);
      out[f] = text;
      queue.push(text);
    }
  }
  return out;
}

/** Top-level module names a Python source imports (absolute imports; the first name of a dotted one). */
function importedNames(code: string): string[] {
  const names: string[] = [];
  for (const line of code.split('\n')) {
    const from = /^\s*from\s+([A-Za-z_][A-Za-z0-9_]*)(?:\.[A-Za-z0-9_.]*)?\s+import\b/.exec(line);
    if (from) {
      names.push(from[1]!);
      continue;
    }
    const imp = /^\s*import\s+(.+)$/.exec(line);
    if (!imp) continue;
    for (const part of imp[1]!.split('#')[0]!.split(',')) {
      const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)/.exec(part);
      if (m) names.push(m[1]!);
    }
  }
  return names;
}

/** Starts `command` once to read the hello frame it sends first, then ends it. */
export async function bundleCommand(command: string, opts: { name: string; cwd?: string; timeoutMs?: number }): Promise<BundledComputation> {
  const cwd = resolve(opts.cwd ?? process.cwd());
  const hello = await readHello(command, cwd, opts.timeoutMs ?? 30_000);
  const r = helloFrame.safeParse(hello);
  if (!r.success) {
    throw new ModuleLoadError(`\`${command}\` sent an invalid hello: ${r.error.issues.map((i) => `${i.path.join('.') || 'frame'}: ${i.message}`).join('; ')}`);
  }
  const b = bundled({ lang: 'cmd', command, cwd }, r.data.metadata, `\`${command}\``);
  if (b.metadata.name !== opts.name) {
    throw new InvalidMetadataError(`\`${command}\` declares the computation "${b.metadata.name}", not --name ${opts.name}`);
  }
  return b;
}

function readHello(command: string, cwd: string, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {
      cwd, detached: true, stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, TOPO_OPERATOR_PROTOCOL: String(OPERATOR_PROTOCOL), TOPO_OPERATOR_IN: '3', TOPO_OPERATOR_OUT: '4', TOPO_DESCRIBE: '1' },
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    let done = false;
    const finish = (err: Error | undefined, frame?: Record<string, unknown>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      (child.stdio[3] as Writable).destroy();
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      if (err) reject(err);
      else resolvePromise(frame!);
    };
    const tail = (): string => (stderr.trim() ? `; its stderr: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : '');
    const timer = setTimeout(() => finish(new ModuleLoadError(`\`${command}\` sent no hello frame on fd 4 within ${timeoutMs} ms${tail()}`)), timeoutMs);
    const reader = new FrameReader();
    (child.stdio[3] as Writable).on('error', () => undefined);
    (child.stdio[4] as Readable).on('data', (chunk: Buffer) => {
      try {
        const frames = reader.push(chunk);
        if (frames.length) finish(undefined, frames[0]);
      } catch (err) {
        finish(new ModuleLoadError(`\`${command}\` broke the operator protocol: ${(err as Error).message}`));
      }
    });
    child.on('error', (err) => finish(new ModuleLoadError(`cannot run \`${command}\`: ${err.message}`)));
    child.on('exit', (code, signal) => setTimeout(() => finish(new ModuleLoadError(`\`${command}\` ${signal ? `was killed by ${signal}` : `exited with code ${code}`} before its hello frame${tail()}`)), 50));
  });
}

/** The artifact of a computation file in any language topo deploys from a file: .py is Python, anything else a TS/JS module. */
export async function bundleSource(spec: string, opts: { python?: string } = {}): Promise<BundledComputation> {
  if (isPythonSpec(spec)) return bundlePython(spec, opts);
  if (opts.python) throw new ModuleLoadError(`--python applies to Python files only, not ${spec}`);
  return bundleComputation(spec);
}
