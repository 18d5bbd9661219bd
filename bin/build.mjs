#!/usr/bin/env node
// Bundles the runtime entry points into dist/ with esbuild (dependencies stay
// in node_modules). Skips the work when dist/ is newer than every source file.
import { build } from 'esbuild';
import { readdirSync, statSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const entries = {
  cli: 'runtime/cli/main.ts',
  controller: 'runtime/controller/main.ts',
  worker: 'runtime/worker/main.ts',
  supervisor: 'runtime/supervisor/main.ts',
  // The thread of a CPU-heavy instance (a piscina task module), loaded by runtime/runners/thread.ts.
  threadMain: 'runtime/runners/threadMain.ts',
};

/** esbuild options for code that runs on Node from dist/ (dependencies stay in node_modules). */
export const nodeBundleOptions = {
  absWorkingDir: root,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
};

function newestMtime(dir) {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p) : st.mtimeMs);
  }
  return newest;
}

export async function buildRuntime({ force = false, quiet = false } = {}) {
  // An installed package ships dist/ without the sources (package.json "files"): dist/ is what there is.
  if (!existsSync(join(root, 'runtime'))) return false;
  await (await import('./build-ui.mjs')).buildUi({ force, quiet }); // the web UI, for the browser: dist/ui/
  const outs = Object.keys(entries).map((k) => join(root, 'dist', `${k}.mjs`));
  const srcNewest = Math.max(newestMtime(join(root, 'runtime')), newestMtime(join(root, 'sdk')), statSync(join(root, 'package.json')).mtimeMs);
  const fresh = outs.every((o) => existsSync(o) && statSync(o).mtimeMs >= srcNewest);
  if (fresh && !force) return false;
  mkdirSync(join(root, 'dist'), { recursive: true });
  // Build beside dist/ and rename into place, so a process starting from
  // dist/ while another CLI call rebuilds never loads a half-written file.
  const tmp = mkdtempSync(join(root, '.dist-')); // same depth as dist/, so source map paths stay right
  await build({
    ...nodeBundleOptions,
    entryPoints: Object.fromEntries(Object.entries(entries).filter(([, src]) => existsSync(join(root, src)))),
    outdir: tmp,
    logLevel: quiet ? 'error' : 'warning',
  }).catch((err) => {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  });
  for (const f of readdirSync(tmp)) renameSync(join(tmp, f), join(root, 'dist', f));
  rmSync(tmp, { recursive: true, force: true });
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const built = await buildRuntime({ force: process.argv.includes('--force') });
  console.error(built ? 'topo: runtime built into dist/' : 'topo: dist/ is up to date');
}
