#!/usr/bin/env node
// `npm run bench` entry: bundles the bench's TypeScript into dist/bench/ with
// esbuild (and the runtime into dist/ via bin/build.mjs), then runs
// dist/bench/main.mjs. Options: `npm run bench -- --help`.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildRuntime, nodeBundleOptions } from '../bin/build.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const bundle = (entryPoints) =>
  build({ ...nodeBundleOptions, entryPoints, outdir: 'dist/bench', logLevel: 'silent' });

const firstError = (err) => (err.errors?.[0] ? `${err.errors[0].location?.file ?? ''}:${err.errors[0].location?.line ?? ''} ${err.errors[0].text}` : err.message);

// `--only typed` (alone or in a list): the typed-streams bench (bench/typed/main.ts), run on its own;
// it writes its own RESULTS.md section (unless --no-write). The rest of the list runs as usual after it.
{
  const argv = process.argv.slice(2);
  const at = argv.findIndex((a) => a === '--only' || a.startsWith('--only='));
  const list = at < 0 ? [] : (argv[at].startsWith('--only=') ? argv[at].slice(7) : argv[at + 1] ?? '').split(',').map((p) => p.trim());
  if (list.includes('typed')) {
    let code = 0;
    try {
      await buildRuntime({ quiet: true });
      await bundle({ typed: 'bench/typed/main.ts' });
      code = spawnSync(process.execPath, [join(root, 'dist/bench/typed.mjs'), ...argv], { stdio: 'inherit' }).status ?? 1;
    } catch (err) {
      console.error(`bench: cannot build the typed bench: ${firstError(err)}`);
      code = 1;
    }
    const rest = list.filter((p) => p !== 'typed');
    if (rest.length === 0) process.exit(code);
    const next = [...argv];
    next.splice(at, argv[at].startsWith('--only=') ? 1 : 2, '--only', rest.join(','));
    process.argv = [process.argv[0], process.argv[1], ...next];
    if (code !== 0) process.exitCode = code;
  }
}

try {
  await bundle({
    main: 'bench/main.ts', 'raw-publisher': 'bench/raw/publisher.ts', 'raw-subscriber': 'bench/raw/subscriber.ts',
    'durable-js-publisher': 'bench/durable/js-publisher.ts', 'durable-js-consumer': 'bench/durable/js-consumer.ts',
  });
} catch (err) {
  console.error(`bench: cannot build the bench: ${firstError(err)}`);
  process.exit(1);
}

// The topo and swap cases need the runtime; when it does not build, the raw half still runs.
rmSync(join(root, 'dist/bench/topo.mjs'), { force: true });
rmSync(join(root, 'dist/bench/swap.mjs'), { force: true });
rmSync(join(root, 'dist/bench/threads.mjs'), { force: true });
const NEW_PARTS = ['fusion', 'heavy', 'live', 'polyglot', 'durable'];
for (const p of NEW_PARTS) rmSync(join(root, `dist/bench/${p}.mjs`), { force: true });
try {
  await buildRuntime({ quiet: true });
  await bundle({
    topo: 'bench/topo/harness.ts', swap: 'bench/swap/harness.ts', threads: 'bench/threads/harness.ts',
    fusion: 'bench/fusion/harness.ts', heavy: 'bench/heavy/harness.ts', live: 'bench/live/harness.ts', polyglot: 'bench/polyglot/harness.ts',
    durable: 'bench/durable/harness.ts',
  });
} catch (err) {
  rmSync(join(root, 'dist/bench/topo.mjs'), { force: true });
  rmSync(join(root, 'dist/bench/swap.mjs'), { force: true });
  rmSync(join(root, 'dist/bench/threads.mjs'), { force: true });
  for (const p of NEW_PARTS) rmSync(join(root, `dist/bench/${p}.mjs`), { force: true });
  console.error(`bench: the topo cases will not run: building them failed: ${firstError(err)}`);
}

await import(pathToFileURL(join(root, 'dist/bench/main.mjs')).href);
