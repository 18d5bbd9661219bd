/** The local launcher behind `topo up` and the test harness: restart a worker, refuse a second topology. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../runtime/transport/natsServer.js';
import { startLocalTopology } from '../runtime/client/launcher.js';
import { isAlive } from '../runtime/client/processes.js';
import { readRunInfo } from '../runtime/client/runInfo.js';
import { startCluster, type Cluster } from './harness.js';

// Needs the controller and worker (runtime/controller, runtime/worker).
describe('local topology launcher', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ workers: 1 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('kills and restarts a worker under the same id, keeping run.json current', async () => {
    const before = readRunInfo(cluster.dir)!.pids.workers[0]!;
    expect(isAlive(before)).toBe(true);
    await cluster.killWorker(1);
    expect(isAlive(before)).toBe(false);

    await cluster.startWorker(1);
    const after = readRunInfo(cluster.dir)!.pids.workers[0]!;
    expect(after).not.toBe(before);
    const w = (await cluster.client.status()).workers.find((x) => x.workerId === cluster.workerId(1));
    expect(w).toMatchObject({ alive: true, pid: after });
  });

  it('refuses to start a worker that is running, and a second topology in the same folder', async () => {
    await expect(cluster.startWorker(1)).rejects.toThrow(/already running/);
    await expect(startLocalTopology({ dir: cluster.dir, build: false })).rejects.toThrow(/already running in/);
  });
});

describe('local topology launcher failures', () => {
  it('fails fast when a process dies during startup, naming its log file, and leaves nothing behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'topo-launch-fail-'));
    try {
      const started = Date.now();
      const err = await startLocalTopology({ dir, build: false, env: { NODE_OPTIONS: '--require /nonexistent/topo-preload.cjs' } }).catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((err as Error).message).toMatch(/(controller|w-\d) exited with code 1 during startup; see .*\.log/);
      expect((err as Error).message).toContain('topo-preload.cjs');
      expect(readRunInfo(dir)).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails before spawning anything when the given NATS server is unreachable', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'topo-launch-fail-'));
    try {
      await expect(startLocalTopology({ dir, build: false, natsUrl: `nats://127.0.0.1:${await freePort()}` })).rejects.toThrow(/cannot connect to NATS/);
      expect(existsSync(join(dir, 'logs', 'controller.log'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
