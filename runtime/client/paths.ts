/**
 * Where the topo package lives on disk, found from this module's own URL so it
 * works both from source (vitest, tsx) and from the bundled dist/cli.mjs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

let cachedRoot: string | undefined;

/** The directory holding topo's package.json. */
export function packageRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'topo') return (cachedRoot = dir);
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
