#!/usr/bin/env node
// Bundles the web UI (runtime/ui/web/) for the browser into dist/ui/ with
// esbuild: one script, one stylesheet and index.html, served by the controller
// (runtime/controller/uiAssets.ts), so the UI needs no CDN and works offline.
// Skips the work when dist/ui/ is newer than every UI source file.
import { build } from 'esbuild';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'runtime', 'ui', 'web');
const out = join(root, 'dist', 'ui');

function newestMtime(dir) {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p) : st.mtimeMs);
  }
  return newest;
}

export async function buildUi({ force = false, quiet = false } = {}) {
  const srcNewest = Math.max(newestMtime(src), statSync(join(root, 'package.json')).mtimeMs, statSync(fileURLToPath(import.meta.url)).mtimeMs);
  const outs = ['index.html', 'app.js', 'app.css'].map((f) => join(out, f));
  if (!force && outs.every((o) => existsSync(o) && statSync(o).mtimeMs >= srcNewest)) return false;
  mkdirSync(join(root, 'dist'), { recursive: true });
  // Built beside dist/ui and swapped in whole, so a controller serving it never reads a half-written file.
  const tmp = mkdtempSync(join(root, 'dist', '.ui-'));
  try {
    await build({
      absWorkingDir: root,
      entryPoints: { app: join(src, 'main.ts') },
      outdir: tmp,
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      minify: true,
      sourcemap: 'linked',
      legalComments: 'linked',
      // elkjs's bundled build has an optional require('web-worker') for Node, never taken in a browser.
      external: ['web-worker'],
      logLevel: quiet ? 'error' : 'warning',
    });
    copyFileSync(join(src, 'index.html'), join(tmp, 'index.html'));
    chmodSync(tmp, 0o755); // mkdtemp made it private; dist/ is not
    rmSync(`${out}.old`, { recursive: true, force: true });
    if (existsSync(out)) renameSync(out, `${out}.old`);
    renameSync(tmp, out);
    rmSync(`${out}.old`, { recursive: true, force: true });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const built = await buildUi({ force: process.argv.includes('--force') });
  console.error(built ? 'topo: web UI built into dist/ui/' : 'topo: dist/ui/ is up to date');
}
