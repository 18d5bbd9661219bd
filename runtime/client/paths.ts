/**
 * Where the topo package lives on disk, found from this module's own URL so it
 * works both from source (vitest, tsx) and from the bundled dist/cli.mjs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

let cachedRoot: string | undefined;

/** The npm name of this package (package.json): what users install and import. */
export const PACKAGE_NAME = 'topo-runtime';

/** The directory holding topo's package.json. */
export function packageRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME) return (cachedRoot = dir);
      } catch {
        // not ours: keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the topo package root above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** dist/<name>.mjs of the package (threadMain: the thread of a CPU-heavy instance, runtime/runners/threadMain.ts). */
export function distFile(name: 'cli' | 'controller' | 'worker' | 'supervisor' | 'threadMain'): string {
  return join(packageRoot(), 'dist', `${name}.mjs`);
}

interface BuildModule {
  buildRuntime(opts?: { force?: boolean; quiet?: boolean }): Promise<boolean>;
}

/**
 * Runs bin/build.mjs's buildRuntime (skips work when dist/ is fresh). Imported
 * by URL at run time so the bundled CLI does not inline the build script.
 */
export async function buildRuntime(opts: { force?: boolean; quiet?: boolean } = {}): Promise<boolean> {
  const url = pathToFileURL(join(packageRoot(), 'bin', 'build.mjs')).href;
  const mod = (await import(url)) as BuildModule;
  return mod.buildRuntime({ quiet: true, ...opts });
}

/** The Python interpreter `npm run setup` installs the SDK into (`.topo/python`). */
export function defaultPythonPath(root = packageRoot()): string {
  return join(root, '.topo', 'python', 'bin', 'python');
}

/**
 * The Python that runs (or describes) a computation: the one given (`--python` at deploy), else
 * TOPO_PYTHON, else setup's virtual environment, else python3. The worker and the CLI both ask this.
 */
export function pythonInterpreter(given?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (given) return given;
  if (env.TOPO_PYTHON) return env.TOPO_PYTHON;
  const venv = defaultPythonPath();
  return existsSync(venv) ? venv : 'python3';
}

/** PYTHONPATH with this checkout's SDK first, so any interpreter with msgpack can run `python -m topo`. */
export function sdkPythonPath(env: NodeJS.ProcessEnv = process.env): string {
  return [join(packageRoot(), 'sdk', 'python'), env.PYTHONPATH].filter(Boolean).join(delimiter);
}
