/**
 * Drives the real `topo` binary (node bin/topo.mjs) as a user would. The
 * cluster tests start a real topology (nats-server, controller, workers).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAlive } from '../runtime/client/processes.js';
import { readRunInfo } from '../runtime/client/runInfo.js';
import { stopLocalTopology } from '../runtime/client/launcher.js';
import type { StatusReply } from '../protocol/index.js';
import { runTopo, startCluster, waitFor, type CliResult, type Cluster } from './harness.js';

const root = join(import.meta.dirname, '..');
const fixture = (name: string): string => join(root, 'test', 'fixtures', name);
const scratch = mkdtempSync(join(tmpdir(), 'topo-cli-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs the CLI in `cwd` (by default a scratch folder with no topology). */
function topo(args: string[], opts: { cwd?: string } = {}): Promise<CliResult> {
  return runTopo(args, { cwd: opts.cwd ?? scratch });
}

const VERBS = ['up', 'down', 'deploy', 'kill', 'status', 'tap', 'logs'];

describe('topo without a topology', () => {
  it('topo --help lists every command', async () => {
    const r = await topo(['--help']);
    expect(r.code).toBe(0);
    for (const v of VERBS) expect(r.stdout).toMatch(new RegExp(`^  ${v}\\s+\\S`, 'm'));
  });

  it.each(VERBS)('topo %s --help shows usage, options and examples', async (verb) => {
    const r = await topo([verb, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: topo ${verb}`);
    expect(r.stdout).toContain('Options:');
    expect(r.stdout).toMatch(new RegExp(`Examples:\\n  topo ${verb}`));
  });

  it('an unknown command exits 2 naming it', async () => {
    const r = await topo(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
  });

  it('an unknown option exits 2 naming it', async () => {
    const r = await topo(['status', '--colour']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown option --colour');
    expect(r.stderr).toContain('topo status --help');
  });

  it('a bad number or a missing argument exits 2', async () => {
    const bad = await topo(['deploy', 'x.ts', '--instances', 'many']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--instances must be an integer');
    const missing = await topo(['deploy']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('needs a computation file');
  });

  it('topo status says there is no topology, exit 1', async () => {
    const r = await topo(['status']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no running topo found here: run `topo up` first, or pass --nats URL');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('topo down with nothing running says so, exit 0', async () => {
    const r = await topo(['down']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('no topo is running here');
  });

  it('deploy of invalid metadata names the field before contacting anything, exit 1', async () => {
    const r = await topo(['deploy', fixture('cli-bad-metadata.ts')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('invalid computation metadata of "bad-metadata": ostreams[1]');
    expect(r.stderr).not.toContain('no running topo');
  });

  it('deploy of a file that throws at import reports the load error, exit 1', async () => {
    const file = join(scratch, 'explodes.ts');
    writeFileSync(file, 'throw new Error("boom at import");\nexport default {};\n');
    const r = await topo(['deploy', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file} failed to load: boom at import`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('deploy of a file without a computation export says what is missing, exit 1', async () => {
    const r = await topo(['deploy', fixture('cli-no-default.ts')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('has no default export made by defineComputation');
  });
});

// Needs the controller and worker (runtime/controller, runtime/worker).
describe('topo against a running cluster', () => {
  let cluster: Cluster;
  const status = async (): Promise<StatusReply> => {
    const r = await topo(['status', '--json', '--nats', cluster.url]);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as StatusReply;
  };

  beforeAll(async () => {
    cluster = await startCluster({ workers: 2 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('deploys a source and a consumer, shows them in status and taps their streams', async () => {
    const d1 = await topo(['deploy', fixture('cli-ticker.ts'), '--nats', cluster.url]);
    expect(d1.code, d1.stderr).toBe(0);
    expect(d1.stdout).toMatch(/deployed ticker v\d+ \(sha [0-9a-f]{12}\)/);
    const d2 = await topo(['deploy', fixture('cli-picky.ts'), '--instances', '2', '--nats', cluster.url]);
    expect(d2.code, d2.stderr).toBe(0);

    const s = await waitFor(
      async () => {
        const st = await status();
        const picky = st.computations.find((c) => c.name === 'picky');
        return picky && picky.instances.length === 2 && picky.instances.every((i) => i.state === 'running') ? st : undefined;
      },
      { what: 'picky running with 2 instances', timeoutMs: 15_000 },
    );
    expect(s.computations.map((c) => c.name).sort()).toEqual(['picky', 'ticker']);

    const pretty = await topo(['status', '--nats', cluster.url]);
    expect(pretty.code).toBe(0);
    expect(pretty.stdout).toContain('ticks: ticker -> picky (shuffle)');
    expect(pretty.stdout).toMatch(/^\s+w-1\s+yes/m);

    const tapped = await topo(['tap', 'ticks', '--json', '--limit', '3', '--nats', cluster.url]);
    expect(tapped.code, tapped.stderr).toBe(0);
    const recs = tapped.stdout.trim().split('\n').map((l) => JSON.parse(l) as { stream: string; key: string; value: { n: number }; seq: number; producer: string });
    expect(recs).toHaveLength(3);
    for (const r of recs) expect(r.stream).toBe('ticks');
    expect(recs[1]!.seq).toBeGreaterThan(recs[0]!.seq);
    expect(recs[1]!.value.n).toBe(recs[0]!.value.n + 1);

    const even = await topo(['tap', 'even-ticks', '--json', '--limit', '2', '--nats', cluster.url]);
    expect(even.code, even.stderr).toBe(0);
    for (const l of even.stdout.trim().split('\n')) expect((JSON.parse(l) as { value: { n: number } }).value.n % 2).toBe(0);
  });

  it('shows dead letters and logs of a computation', async () => {
    const dl = await waitFor(
      async () => {
        const r = await topo(['tap', '--dead-letters', 'picky', '--json', '--limit', '2', '--nats', cluster.url]);
        return r.stdout.trim() ? r : undefined;
      },
      { what: 'dead letters of picky', timeoutMs: 10_000 },
    );
    const letters = dl.stdout.trim().split('\n').map((l) => JSON.parse(l) as { computation: string; error: string });
    expect(letters.length).toBeGreaterThan(0);
    for (const d of letters) {
      expect(d.computation).toBe('picky');
      expect(d.error).toMatch(/odd tick \d+/);
    }

    const logs = await topo(['logs', 'ticker', '--nats', cluster.url]);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/INFO\s+ticker\[0\] ticker started/);
  });

  it('an invalid file deploys nothing', async () => {
    const before = (await status()).computations.map((c) => `${c.name}@${c.version}`).sort();
    const r = await topo(['deploy', fixture('cli-bad-metadata.ts'), '--nats', cluster.url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ostreams[1]');
    expect((await status()).computations.map((c) => `${c.name}@${c.version}`).sort()).toEqual(before);
  });

  it('kills a computation; killing an unknown one fails with exit 1', async () => {
    const k = await topo(['kill', 'picky', '--nats', cluster.url]);
    expect(k.code, k.stderr).toBe(0);
    await waitFor(async () => !(await status()).computations.some((c) => c.name === 'picky'), { what: 'picky gone from status' });
    const again = await topo(['kill', 'picky', '--nats', cluster.url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('picky');
  });
});

// Needs the controller and worker (runtime/controller, runtime/worker).
describe('topo up / down', () => {
  const project = join(scratch, 'up-project');
  const sub = join(project, 'src');
  beforeAll(() => mkdirSync(sub, { recursive: true }));
  afterAll(async () => {
    await stopLocalTopology(join(project, '.topo'));
  });

  it('starts a detached topology that later commands find, and stops it', async () => {
    const up = await topo(['up', '--workers', '1'], { cwd: project });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain('topo is up');
    expect(up.stdout).toContain('.topo/logs');
    const run = readRunInfo(join(project, '.topo'));
    expect(run?.pids.workers).toHaveLength(1);
    expect(isAlive(run?.pids.controller)).toBe(true);

    const again = await topo(['up'], { cwd: project });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already running');

    // Found from a sub-folder through .topo/run.json in the parent.
    const st = await topo(['status', '--json'], { cwd: sub });
    expect(st.code, st.stderr).toBe(0);
    const workers = (JSON.parse(st.stdout) as StatusReply).workers;
    expect(workers.filter((w) => w.alive).map((w) => w.workerId)).toEqual(['w-1']);

    const down = await topo(['down'], { cwd: sub });
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain('stopped worker w-1');
    expect(existsSync(join(project, '.topo', 'run.json'))).toBe(false);
    for (const pid of [run!.pids.controller, run!.pids.nats, ...run!.pids.workers]) expect(isAlive(pid)).toBe(false);
  });
});
