/**
 * The supervised topology that `topo up` starts (runtime/supervisor/): real
 * CLI, real nats-server, controller and worker processes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TopoClient } from '../runtime/client/client.js';
import { isAlive } from '../runtime/client/processes.js';
import { readSupervisedRun, type SupervisedRunInfo } from '../runtime/client/supervised.js';
import type { ProcessStatus } from '../protocol/index.js';
import { backoffDelay } from '../runtime/supervisor/supervisor.js';
import { runTopo, waitFor } from './harness.js';

const fixture = (name: string): string => join(import.meta.dirname, 'fixtures', name);
const base = mkdtempSync(join(tmpdir(), 'topo-sup-test-'));
const dir = join(base, '.topo');
const env = { TOPO_CRASH_LIMIT: '3', TOPO_CRASH_WINDOW_MS: '60000', TOPO_COOLDOWN_MS: '600000' };
const topo = (args: string[]) => runTopo(args, { cwd: base, env, timeoutMs: 60_000 });
const run = (): SupervisedRunInfo => {
  const r = readSupervisedRun(dir);
  if (!r) throw new Error(`no run.json in ${dir}`);
  return r;
};
const proc = (name: string): ProcessStatus => {
  const p = run().processes?.find((x) => x.name === name);
  if (!p) throw new Error(`${name} is not in the supervisor's table`);
  return p;
};
const allPids = new Set<number>();
const remember = (): void => {
  const r = run();
  for (const pid of [r.supervisorPid, r.pids.nats, r.pids.controller, ...r.pids.workers]) if (pid && pid > 0) allPids.add(pid);
};

let client: TopoClient;
let upOutput = '';
const ticks: number[] = [];
const tapAbort = new AbortController();

beforeAll(async () => {
  const up = await topo(['up', '--workers', '2', '--dir', dir]);
  expect(up.stderr).toBe('');
  expect(up.code).toBe(0);
  expect(up.stdout).toContain('topo is up');
  upOutput = up.stdout;
  remember();
  client = await TopoClient.connect(run().natsUrl, { name: 'topo-sup-test', creds: run().credsFile });
  void (async () => {
    for await (const item of client.tap('e2e-ticks', { signal: tapAbort.signal })) {
      if ('value' in item) ticks.push((item.value as { n: number }).n);
    }
  })().catch(() => undefined);
  await client.deployFile(fixture('e2e-ticker.ts'), { instances: 1 });
  await waitFor(() => ticks.length > 20, { what: 'ticks from e2e-ticker', timeoutMs: 20_000 });
});

afterAll(async () => {
  tapAbort.abort();
  await client?.close().catch(() => undefined);
  if (existsSync(join(dir, 'run.json'))) await topo(['down', '--dir', dir]);
  for (const pid of allPids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(base, { recursive: true, force: true });
});

describe('topo up under a supervisor', () => {
  it('serves nats-server monitoring and the controller\'s /metrics at the addresses it printed', async () => {
    const monitor = run().natsMonitorUrl;
    expect(monitor).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(upOutput).toContain(`nats-server monitoring: ${monitor}/`);
    const varz = (await (await fetch(`${monitor}/varz`)).json()) as { port: number; jetstream?: unknown };
    expect(varz.port).toBe(Number(new URL(run().natsUrl).port));
    expect(varz.jetstream).toBeDefined();
    const connz = (await (await fetch(`${monitor}/connz`)).json()) as { num_connections: number };
    // Controller and two workers at least (and this test's client).
    expect(connz.num_connections).toBeGreaterThanOrEqual(4);
    const web = /web UI: (http:\/\/127\.0\.0\.1:\d+)\//.exec(upOutput)?.[1];
    expect(web).toBe((await client.status()).httpUrl);
    expect(await (await fetch(`${web}/metrics`)).text()).toMatch(/^topo_worker_up\{worker="w-1"\} 1$/m);
  });

  it('a second `topo up` starts nothing, kills nothing and resets nothing', async () => {
    const before = run();
    const highest = Math.max(...ticks);
    const again = await topo(['up', '--dir', dir]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already running');
    expect(again.stdout).toContain('started nothing');
    const after = run();
    expect(after.pids).toEqual(before.pids);
    expect(after.supervisorPid).toBe(before.supervisorPid);
    for (const pid of [after.pids.nats, after.pids.controller, ...after.pids.workers]) expect(isAlive(pid)).toBe(true);
    // The source keeps counting on from where it was: no restart from 1.
    const seen = ticks.length;
    await waitFor(() => ticks.length > seen + 20, { what: 'more ticks after the second topo up' });
    const later = ticks.slice(seen);
    expect(Math.min(...later)).toBeGreaterThan(highest - 5);
    expect(Math.max(...later)).toBeGreaterThan(highest + 10);
  });

  it('`topo up` after its supervisor died adopts the live processes instead of restarting them', async () => {
    const before = run();
    process.kill(before.supervisorPid!, 'SIGKILL');
    await waitFor(() => !isAlive(before.supervisorPid), { what: 'supervisor gone' });
    const highest = Math.max(...ticks);
    const up = await topo(['up', '--dir', dir]);
    expect(up.code).toBe(0);
    expect(up.stdout).toContain('still running: kept them');
    const after = run();
    expect(after.supervisorPid).not.toBe(before.supervisorPid);
    expect(after.pids).toEqual(before.pids);
    expect(after.natsMonitorUrl).toBe(before.natsMonitorUrl);
    remember();
    const seen = ticks.length;
    await waitFor(() => ticks.length > seen + 10, { what: 'more ticks after adoption' });
    expect(Math.min(...ticks.slice(seen))).toBeGreaterThan(highest - 5);
  });

  it('a worker killed with SIGKILL is restarted (new pid) and the controller sees it alive again', async () => {
    const old = proc('w-1').pid!;
    process.kill(old, 'SIGKILL');
    const fresh = await waitFor(() => {
      const p = proc('w-1');
      return p.state === 'running' && p.pid !== old && p.pid;
    }, { what: 'w-1 restarted with a new pid' });
    remember();
    expect(proc('w-1').restarts).toBeGreaterThanOrEqual(1);
    // w-1 was adopted by the current supervisor (not its child): its exit is seen by pid, without the signal.
    expect(proc('w-1').lastExit?.at).toBeGreaterThan(Date.now() - 30_000);
    await waitFor(async () => (await client.status()).workers.some((w) => w.workerId === 'w-1' && w.alive && w.pid === fresh),
      { what: 'controller sees the restarted w-1' });
    // Its instances (if any) are assigned again: every desired instance runs.
    await waitFor(async () => (await client.status()).computations.every((c) => c.instances.every((i) => i.state === 'running')),
      { what: 'every instance running again', timeoutMs: 20_000 });
  });

  it('a controller killed with SIGKILL is restarted and serves again', async () => {
    const old = proc('controller').pid!;
    process.kill(old, 'SIGKILL');
    await waitFor(() => {
      const p = proc('controller');
      return p.state === 'running' && p.pid !== old && isAlive(p.pid);
    }, { what: 'controller restarted with a new pid' });
    remember();
    await waitFor(async () => (await client.status({ timeoutMs: 1_000 })).computations.some((c) => c.name === 'e2e-ticker'),
      { what: 'the restarted controller answers status with the desired state', timeoutMs: 15_000 });
  });

  it('a worker that keeps crashing enters a cool-down, shown by `topo status`', async () => {
    // TOPO_CRASH_LIMIT=3 within 60 s: w-2 is killed 3 times.
    for (let i = 0; i < 3; i++) {
      const p = await waitFor(() => {
        const x = proc('w-2');
        return x.state === 'running' && x.pid && isAlive(x.pid) ? x : undefined;
      }, { what: `w-2 running (kill ${i + 1})` });
      allPids.add(p.pid!);
      process.kill(p.pid!, 'SIGKILL');
      await waitFor(() => proc('w-2').pid !== p.pid || proc('w-2').state !== 'running', { what: 'w-2 exit noticed' });
    }
    await waitFor(() => proc('w-2').state === 'cool-down', { what: 'w-2 in cool-down' });
    const p = proc('w-2');
    expect(p.recentCrashes).toBe(3);
    expect(p.coolDownUntil).toBeGreaterThan(Date.now() + 500_000);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(proc('w-2').state).toBe('cool-down'); // not restarted meanwhile
    const text = await topo(['status']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('PROCESSES (supervised)');
    expect(text.stdout).toMatch(/w-2\s+-\s+COOL-DOWN\s+\d+\s+SIGKILL .*3 crashes: not restarted until/);
    const json = await topo(['status', '--json']);
    const parsed = JSON.parse(json.stdout) as { processes: ProcessStatus[] };
    expect(parsed.processes.find((x) => x.name === 'w-2')?.state).toBe('cool-down');
  });

  it('`topo up` starts the worker in cool-down (it is missing) and leaves the others alone', async () => {
    const before = run();
    const up = await topo(['up', '--dir', dir]);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/already running .*started w-2 \(pid \d+, was in cool-down\)/);
    const after = run();
    expect(proc('w-2').state).toBe('running');
    expect(after.pids.nats).toBe(before.pids.nats);
    expect(after.pids.controller).toBe(before.pids.controller);
    expect(after.pids.workers[0]).toBe(before.pids.workers[0]);
    remember();
    await waitFor(async () => (await client.status()).workers.some((w) => w.workerId === 'w-2' && w.alive && w.pid === proc('w-2').pid),
      { what: 'controller sees w-2 again' });
  });

  it('`topo down` stops every process, restarted ones included', async () => {
    remember();
    const down = await topo(['down', '--dir', dir]);
    expect(down.code).toBe(0);
    expect(down.stdout).toContain('stopped');
    expect(existsSync(join(dir, 'run.json'))).toBe(false);
    expect(allPids.size).toBeGreaterThanOrEqual(7);
    for (const pid of allPids) expect(isAlive(pid), `pid ${pid} still alive`).toBe(false);
  });
});

describe('restart backoff', () => {
  it('doubles from the base up to the cap, with ±20% jitter', () => {
    const s = { baseMs: 250, maxMs: 30_000 };
    expect(backoffDelay(1, s, () => 0.5)).toBe(250);
    expect(backoffDelay(2, s, () => 0.5)).toBe(500);
    expect(backoffDelay(5, s, () => 0.5)).toBe(4_000);
    expect(backoffDelay(20, s, () => 0.5)).toBe(30_000);
    expect(backoffDelay(3, s, () => 0)).toBe(800);
    expect(backoffDelay(3, s, () => 0.999999)).toBe(1_200);
  });
});
