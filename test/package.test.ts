/**
 * The package as users get it: `npm pack` (which runs prepack, the build), the
 * tarball installed with `npm install <tarball>` into a fresh project outside
 * the repository, and there: plain Node imports the SDK, the test kit and the
 * client; TypeScript finds their declarations; a unit test written with the
 * test kit passes under `node --test`; and the package's own CLI starts a
 * topology, deploys a computation written in that project (importing the
 * package by its name), shows it in status and stops it, while a script using
 * `<pkg>/client` feeds and reads it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; version: string };
const scratch = mkdtempSync(join(tmpdir(), 'topo-package-test-'));
const project = join(scratch, 'project');
let topologyUp = false;

interface Run { code: number; stdout: string; stderr: string }

/**
 * A command as a user would type it: no npm_* variables of the `npm test` that
 * runs this file, no TOPO_NATS_URL/CREDS (the CLI finds the topology it starts
 * through .topo/run.json). TOPO_NATS_SERVER passes, so CI's server choice holds.
 */
function run(cmd: string, args: string[], opts: { cwd: string; timeoutMs?: number }): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && !['TOPO_NATS_URL', 'TOPO_NATS_CREDS', 'TOPO_DEBUG', 'NODE_OPTIONS'].includes(k)));
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs and expects exit 0; on failure the assertion shows what was printed. */
async function ok(cmd: string, args: string[], opts: { cwd: string; timeoutMs?: number }): Promise<string> {
  const r = await run(cmd, args, opts);
  expect({ command: `${cmd} ${args.join(' ')}`, code: r.code, stderr: r.code === 0 ? '' : r.stderr, stdout: r.code === 0 ? '' : r.stdout })
    .toEqual({ command: `${cmd} ${args.join(' ')}`, code: 0, stderr: '', stdout: '' });
  return r.stdout;
}

/** The package's CLI through npx, as a user of the project runs it (`--` so that npx leaves --version to it). */
const topo = (args: string[], opts: { cwd: string; timeoutMs?: number }): Promise<string> => ok('npx', ['--no', '--', pkg.name, ...args], opts);

afterAll(async () => {
  if (topologyUp) await run('npx', ['--no', '--', pkg.name, 'down'], { cwd: project });
  if (process.env.TOPO_KEEP_TEST_DIRS !== '1') rmSync(scratch, { recursive: true, force: true });
}, 60_000);

/** The computation users write in their own project, in plain JS so `node --test` runs its unit test unchanged. */
const COMPUTATION = `import { defineComputation } from '${pkg.name}';

export default defineComputation({
  name: 'upper',
  istreams: ['words'],
  ostreams: ['upper-words'],
  processRecord(ctx, record) {
    ctx.produceRecord('upper-words', record.key, String(record.value).toUpperCase());
  },
});
`;

const UNIT_TEST = `import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestContext } from '${pkg.name}/testing';
import upper from './upper.js';

test('upper shouts', async () => {
  const t = createTestContext(upper, { now: 0 });
  await t.send('words', 'k', 'hello');
  assert.deepEqual(t.takeOutputs(), [{ stream: 'upper-words', key: 'k', value: 'HELLO' }]);
});
`;

/** Type-checked against the package's .d.ts: a wrong stream name must be a compile error, so the types are not \`any\`. */
const TYPED = `import { defineComputation, type Computation } from '${pkg.name}';
import { createTestContext } from '${pkg.name}/testing';
import { TopoClient } from '${pkg.name}/client';

export const c: Computation = defineComputation({
  name: 'typed',
  istreams: ['a'],
  ostreams: ['b'],
  processRecord(ctx, record) {
    ctx.produceRecord('b', record.key, 1);
    // @ts-expect-error 'c' is not an ostream
    ctx.produceRecord('c', record.key, 1);
  },
});
export const t = createTestContext(c, { now: 0 });
export const connect: (url: string) => Promise<TopoClient> = (url) => TopoClient.connect(url);
`;

/** A script that deploys nothing: it feeds `words` and reads `upper-words` through the client library. */
const CLIENT_SCRIPT = `import { TopoClient, resolveNatsUrl, resolveNatsCreds } from '${pkg.name}/client';

const url = resolveNatsUrl({});
const client = await TopoClient.connect(url, { creds: resolveNatsCreds(url, {}) });
const seen = [];
const reading = (async () => {
  for await (const r of client.consume('upper-words', { group: 'package-test', grouping: 'shuffle' })) {
    seen.push(r.value);
    if (seen.includes('HELLO')) break;
  }
})();
const producer = await client.producer({ streams: ['words'] });
const deadline = Date.now() + 30_000;
while (!seen.includes('HELLO') && Date.now() < deadline) {
  await producer.produce('words', 'k', 'hello');
  await producer.flush();
  await new Promise((r) => setTimeout(r, 200));
}
await producer.close();
console.log(JSON.stringify({ seen: seen.includes('HELLO') }));
await client.close();
process.exit(seen.includes('HELLO') ? 0 : 1);
`;

describe(`the ${pkg.name} package`, () => {
  it('packs, installs into a fresh project, and works there: imports, types, node --test, the CLI and the client', async () => {
    // 1. Pack: prepack builds dist/ (runtime bundles, library JS and .d.ts).
    const packed = await ok('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: root, timeoutMs: 180_000 });
    const info = (JSON.parse(packed) as { filename: string; files: { path: string }[] }[])[0]!;
    const files = info.files.map((f) => f.path);
    for (const f of ['bin/topo.mjs', 'dist/cli.mjs', 'dist/controller.mjs', 'dist/worker.mjs', 'dist/supervisor.mjs', 'dist/threadMain.mjs',
      'dist/lib/sdk/index.js', 'dist/lib/sdk/index.d.ts', 'dist/lib/sdk/testing/index.js', 'dist/lib/sdk/testing/index.d.ts',
      'dist/lib/runtime/client/index.js', 'dist/lib/runtime/client/index.d.ts', 'sdk/python/topo/operator.py', 'README.md']) {
      expect(files, `the tarball has ${f}`).toContain(f);
    }
    expect(files.filter((f) => /^(test|bench|\.ci|examples|runtime|protocol)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts')), 'sources and tests stay out').toEqual([]);

    // 2. A fresh project outside the repository, the tarball installed as users install it.
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'package-test-project', private: true, type: 'module' }, null, 2));
    await ok('npm', ['install', '--no-audit', '--no-fund', join(scratch, info.filename)], { cwd: project, timeoutMs: 180_000 });
    writeFileSync(join(project, 'upper.js'), COMPUTATION);
    writeFileSync(join(project, 'upper.test.js'), UNIT_TEST);
    writeFileSync(join(project, 'typed.ts'), TYPED);
    writeFileSync(join(project, 'client.mjs'), CLIENT_SCRIPT);

    // 3. Plain Node imports the SDK, the test kit and the client by the package name.
    const imported = await ok(process.execPath, ['--input-type=module', '-e', `
      const sdk = await import('${pkg.name}');
      const testing = await import('${pkg.name}/testing');
      const client = await import('${pkg.name}/client');
      console.log(JSON.stringify({ sdk: typeof sdk.defineComputation, testing: typeof testing.createTestContext, client: typeof client.TopoClient }));
    `], { cwd: project });
    expect(JSON.parse(imported)).toEqual({ sdk: 'function', testing: 'function', client: 'function' });

    // 4. Its .d.ts: TypeScript (the repo's compiler, nothing installed) resolves the exports' types.
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: [], typeRoots: [join(root, 'node_modules', '@types')] },
      files: ['typed.ts'],
    }));
    await ok(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], { cwd: project });

    // 5. A unit test with the test kit under node --test.
    const unit = await ok(process.execPath, ['--test', 'upper.test.js'], { cwd: project });
    expect(unit).toMatch(/# pass 1\b/);

    // 6. The package's CLI, from the installed package.
    expect((await topo(['--version'], { cwd: project })).trim()).toBe(pkg.version);
    await topo(['up', '--workers', '1'], { cwd: project, timeoutMs: 90_000 });
    topologyUp = true;
    const deployed = await topo(['deploy', 'upper.js'], { cwd: project, timeoutMs: 90_000 });
    expect(deployed).toMatch(/deployed upper v1/);
    const fed = await ok(process.execPath, ['client.mjs'], { cwd: project, timeoutMs: 60_000 });
    expect(JSON.parse(fed.trim().split('\n').at(-1)!)).toEqual({ seen: true });
    const status = JSON.parse(await topo(['status', '--json'], { cwd: project })) as { computations: { name: string; instances: unknown[] }[] };
    expect(status.computations.map((c) => c.name)).toEqual(['upper']);
    const down = await topo(['down'], { cwd: project, timeoutMs: 60_000 });
    topologyUp = false;
    expect(down).toMatch(/stopped .*controller/);
  }, 600_000);
});
