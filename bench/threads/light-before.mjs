#!/usr/bin/env node
// Compares the light case (a per-key counter through the worker's inline
// Instance loop, bench/threads/harness.ts runLightOnly) of this tree against
// an earlier commit, in the same run, alternating, so that a change to the
// inline loop shows as a ratio. The earlier commit is checked out in a
// temporary git worktree; bench/threads/ of this tree is copied into it.
//
//   node bench/threads/light-before.mjs <ref> [runs=5] [records=1000000] [nowRef]
// With nowRef, "this tree" is that commit instead (to isolate one change: <ref>^ vs <ref>).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [ref, runsArg, recordsArg, nowRef] = process.argv.slice(2);
if (!ref) {
  console.error('usage: node bench/threads/light-before.mjs <ref> [runs=5] [records=1000000]');
  process.exit(2);
}
const runs = Number(runsArg ?? 5);
const records = Number(recordsArg ?? 1_000_000);
const tmp = mkdtempSync(join(tmpdir(), 'topo-light-before-'));
const tree = join(tmp, 'tree');
const nowTree = nowRef ? join(tmp, 'now') : root;
const bundleOf = async (dir, out) => {
  await build({
    absWorkingDir: dir, entryPoints: [join(dir, 'bench/threads/harness.ts')], outfile: out, bundle: true,
    platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'error',
  });
  return import(pathToFileURL(out).href);
};
try {
  for (const [dir, r] of nowRef ? [[tree, ref], [nowTree, nowRef]] : [[tree, ref]]) {
    execFileSync('git', ['worktree', 'add', '--detach', dir, r], { cwd: root, stdio: 'ignore' });
    cpSync(join(root, 'bench/threads'), join(dir, 'bench/threads'), { recursive: true });
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  }
  const now = await bundleOf(nowTree, join(nowRef ? nowTree : root, nowRef ? 'now.mjs' : 'dist/bench/light-now.mjs'));
  const before = await bundleOf(tree, join(tree, 'before.mjs'));
  const a = [], b = [];
  for (let r = 1; r <= runs; r++) {
    a.push(...(await now.runLightOnly({ root: nowTree, runs: 1, records })));
    b.push(...(await before.runLightOnly({ root: tree, runs: 1, records })));
    console.error(`run ${r}/${runs}: ${nowRef ?? 'this tree'} ${Math.round(a.at(-1)).toLocaleString('en-US')}/s, ${ref} ${Math.round(b.at(-1)).toLocaleString('en-US')}/s`);
  }
  const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  console.log(`light inline, ${records.toLocaleString('en-US')} records, median of ${runs}: ${nowRef ?? 'this tree'} ${Math.round(med(a)).toLocaleString('en-US')}/s, ${ref} ${Math.round(med(b)).toLocaleString('en-US')}/s: ${(med(a) / med(b)).toFixed(3)}x`);
} finally {
  for (const dir of nowRef ? [tree, nowTree] : [tree]) {
    try {
      execFileSync('git', ['worktree', 'remove', '--force', dir], { cwd: root, stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
  rmSync(tmp, { recursive: true, force: true });
}
