#!/usr/bin/env node
// `npm run bench` entry: bundles the bench's TypeScript into dist/bench/ with
// esbuild (and the runtime into dist/ via bin/build.mjs), then runs
// dist/bench/main.mjs. Options: `npm run bench -- --help`.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildRuntime, nodeBundleOptions } from '../bin/build.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const bundle = (entryPoints) =>
  build({ ...nodeBundleOptions, entryPoints, outdir: 'dist/bench', logLevel: 'silent' });

const firstError = (err) => (err.errors?.[0] ? `${err.errors[0].location?.file ?? ''}:${err.errors[0].location?.line ?? ''} ${err.errors[0].text}` : err.message);

try {
  await bundle({ main: 'bench/main.ts', 'raw-publisher': 'bench/raw/publisher.ts', 'raw-subscriber': 'bench/raw/subscriber.ts' });
} catch (err) {
  console.error(`bench: cannot build the bench: ${firstError(err)}`);
  process.exit(1);
}

// The topo and swap cases need the runtime; when it does not build, the raw half still runs.
rmSync(join(root, 'dist/bench/topo.mjs'), { force: true });
rmSync(join(root, 'dist/bench/swap.mjs'), { force: true });
rmSync(join(root, 'dist/bench/threads.mjs'), { force: true });
const NEW_PARTS = ['fusion', 'heavy', 'live', 'polyglot'];
for (const p of NEW_PARTS) rmSync(join(root, `dist/bench/${p}.mjs`), { force: true });
try {
  await buildRuntime({ quiet: true });
  await bundle({
    topo: 'bench/topo/harness.ts', swap: 'bench/swap/harness.ts', threads: 'bench/threads/harness.ts',
    fusion: 'bench/fusion/harness.ts', heavy: 'bench/heavy/harness.ts', live: 'bench/live/harness.ts', polyglot: 'bench/polyglot/harness.ts',
  });
} catch (err) {
  rmSync(join(root, 'dist/bench/topo.mjs'), { force: true });
  rmSync(join(root, 'dist/bench/swap.mjs'), { force: true });
  rmSync(join(root, 'dist/bench/threads.mjs'), { force: true });
  for (const p of NEW_PARTS) rmSync(join(root, `dist/bench/${p}.mjs`), { force: true });
  console.error(`bench: the topo cases will not run: building them failed: ${firstError(err)}`);
}

await import(pathToFileURL(join(root, 'dist/bench/main.mjs')).href);
