/**
 * A callback stuck in a synchronous infinite loop: the worker's watchdog
 * thread reports it (computation, callback, how long) on NATS, kills the
 * worker; the supervisor restarts it, the controller assigns its instances
 * again, and `topo status` shows all of it. After repeated hangs the
 * computation enters a cool-down instead of looping.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TopoClient } from '../runtime/client/client.js';
import { isAlive } from '../runtime/client/processes.js';
import { readSupervisedRun } from '../runtime/client/supervised.js';
import { subjects, type ProcessStatus, type StatusReply, type StuckReport } from '../protocol/index.js';
import { runTopo, waitFor } from './harness.js';

const fixture = (name: string): string => join(import.meta.dirname, 'fixtures', name);
const base = mkdtempSync(join(tmpdir(), 'topo-stuck-test-'));
const dir = join(base, '.topo');
const env = { TOPO_STUCK_MS: '1500', TOPO_COMPUTATION_FAILURE_LIMIT: '2', TOPO_COMPUTATION_COOLDOWN_MS: '600000' };
const topo = (args: string[]) => runTopo(args, { cwd: base, env, timeoutMs: 60_000 });
const pids = new Set<number>();
const remember = (): void => {
  const r = readSupervisedRun(dir);
  for (const pid of [r?.supervisorPid, r?.pids.nats, r?.pids.controller, ...(r?.pids.workers ?? [])]) if (pid && pid > 0) pids.add(pid);
};

let client: TopoClient;
const reports: StuckReport[] = [];

beforeAll(async () => {
  const up = await topo(['up', '--workers', '2', '--dir', dir]);
  expect(up.code, up.stderr).toBe(0);
  remember();
  client = await TopoClient.connect(readSupervisedRun(dir)!.natsUrl, { name: 'topo-stuck-test', creds: readSupervisedRun(dir)!.credsFile });
  client.nc.subscribe(subjects.stuckAll, { callback: (_err, msg) => void reports.push(msg.json<StuckReport>()) });
});

afterAll(async () => {
  await client?.close().catch(() => undefined);
  remember();
  if (existsSync(join(dir, 'run.json'))) await topo(['down', '--dir', dir]);
  for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(base, { recursive: true, force: true });
});

describe('a callback stuck in a synchronous loop', () => {
  it('is reported with its computation and callback, its worker is restarted, and status shows it', async () => {
    await client.deployFile(fixture('stuck-loop.ts'), { instances: 1 });
    await client.deployFile(fixture('stuck-source.ts'), { instances: 1 });
    const status0 = await client.status();
    const loopWorker = status0.computations.find((c) => c.name === 'stuck-loop')!.instances[0]!.workerId;
    const oldPid = status0.workers.find((w) => w.workerId === loopWorker)!.pid;

    const report = await waitFor(() => reports.find((r) => r.computation === 'stuck-loop'), { what: 'a stuck report', timeoutMs: 20_000 });
    expect(report).toMatchObject({ workerId: loopWorker, pid: oldPid, computation: 'stuck-loop', callback: 'processRecord', thresholdMs: 1500 });
    expect(report.instanceId).toMatch(/^stuck-loop/);
    expect(report.forMs).toBeGreaterThanOrEqual(1500);
    expect(report.forMs).toBeLessThan(5_000); // before the controller's 5 s lease would expire
    expect(report.action).toContain('SIGKILL');

    // Restarted by the supervisor: a new pid, alive for the controller.
    await waitFor(() => !isAlive(oldPid), { what: 'the stuck worker process gone' });
    const fresh = await waitFor(async () => {
      const w = (await client.status()).workers.find((x) => x.workerId === loopWorker);
      return w?.alive && w.pid !== oldPid ? w.pid : undefined;
    }, { what: `${loopWorker} restarted`, timeoutMs: 15_000 });
    remember();
    const table = readSupervisedRun(dir)!.processes!.find((p) => p.name === loopWorker)!;
    expect(table.restarts).toBeGreaterThanOrEqual(1);
    expect(table.lastExit?.signal).toBe('SIGKILL');
    expect(table.lastStuck).toMatchObject({ computation: 'stuck-loop', callback: 'processRecord', pid: oldPid });
    expect(fresh).not.toBe(oldPid);

    const s = (await client.status()) as StatusReply;
    expect(s.stuck?.total).toBeGreaterThanOrEqual(1);
    expect(s.stuck?.recent.some((r) => r.computation === 'stuck-loop' && r.callback === 'processRecord')).toBe(true);
    expect(s.computations.find((c) => c.name === 'stuck-loop')?.stuckCount).toBeGreaterThanOrEqual(1);

    const text = await topo(['status']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/STUCK \(\d+ reports?, newest last\)/);
    expect(text.stdout).toMatch(/processRecord of stuck-loop \(stuck-loop\S*\) blocked for \d+ ms; worker restarted, in-memory keyed state of its instances lost/);
    expect(text.stdout).toMatch(/stuck-loop stuck \d+ times? in a synchronous callback/);
    expect(text.stdout).toMatch(new RegExp(`${loopWorker}\\s+\\d+\\s+running\\s+\\d+\\s+SIGKILL .*last killed for a stuck processRecord of stuck-loop`));
  });

  it('a computation that keeps hanging enters a cool-down and is no longer re-placed', async () => {
    // TOPO_COMPUTATION_FAILURE_LIMIT=2: the second hang starts the cool-down.
    const cooled = await waitFor(async () => (await client.status()).computations.find((c) => c.name === 'stuck-loop')?.coolDown,
      { what: 'stuck-loop in cool-down', timeoutMs: 40_000 });
    expect(cooled.failures).toBe(2);
    expect(cooled.reason).toContain('stuck in processRecord');
    const count = reports.filter((r) => r.computation === 'stuck-loop').length;
    // Not assigned again: no new hang, and its instance is not running.
    await new Promise((r) => setTimeout(r, 8_000));
    expect(reports.filter((r) => r.computation === 'stuck-loop').length).toBe(count);
    const st = await client.status();
    expect(st.computations.find((c) => c.name === 'stuck-loop')?.instances.every((i) => i.state !== 'running')).toBe(true);
    expect(st.workers.filter((w) => w.alive)).toHaveLength(2);
    const text = await topo(['status']);
    expect(text.stdout).toMatch(/stuck-loop COOL-DOWN until .*: 2 failures within \d+ s \(last: stuck in processRecord/);
    const procs = readSupervisedRun(dir)!.processes as ProcessStatus[];
    expect(procs.every((p) => p.state === 'running')).toBe(true);
  });
});
