#!/usr/bin/env node
// `npm run chaos` entry: builds the runtime (dist/) and bundles bench/chaos/main.ts into
// dist/bench/chaos.mjs with esbuild, then runs it. Options: `npm run chaos -- --help`.
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildRuntime, nodeBundleOptions } from '../../bin/build.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
process.chdir(root);
try {
  await buildRuntime({ quiet: true });
  await build({ ...nodeBundleOptions, entryPoints: { chaos: 'bench/chaos/main.ts' }, outdir: 'dist/bench', logLevel: 'silent' });
} catch (err) {
  const e = err.errors?.[0];
  console.error(`chaos: cannot build: ${e ? `${e.location?.file ?? ''}:${e.location?.line ?? ''} ${e.text}` : err.message}`);
  process.exit(1);
}
await import(pathToFileURL(join(root, 'dist/bench/chaos.mjs')).href);
