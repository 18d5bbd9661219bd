/**
 * Integration-test harness: a real local topology (nats-server, controller,
 * workers as separate processes from dist/) in a fresh temp folder, plus a
 * polling helper. dist/ is built once by test/global-setup.ts.
 *
 *   const cluster = await startCluster({ workers: 2 });
 *   await cluster.client.deployFile('test/fixtures/cli-ticker.ts');
 *   await waitFor(async () => (await cluster.client.status()).computations.length === 1, { what: 'ticker deployed' });
 *   await cluster.killWorker(1);   // worker numbers are 1-based: worker 1 has id "w-1"
 *   await cluster.stop();
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TopoClient } from '../runtime/client/client.js';
import { startLocalTopology, type LocalTopology } from '../runtime/client/launcher.js';
import { tailFile } from '../runtime/client/processes.js';

export interface Cluster {
  /** NATS URL of the cluster. */
  url: string;
  /** Admin credentials of the cluster (its server has auth on); also in $TOPO_NATS_CREDS of this process. */
  creds: string;
  /** Connected client (closed by stop()). */
  client: TopoClient;
  /** The topology folder (logs in `<dir>/logs`). */
  dir: string;
  topology: LocalTopology;
  /** Worker id of worker number n: "w-<n>". */
  workerId(n: number): string;
  /** Kills worker number n (1-based; default SIGKILL) and waits for the process to exit. */
  killWorker(n: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts worker number n again (same id and data dir); resolves once the controller sees it alive. */
  startWorker(n: number): Promise<void>;
  /** Stops the cluster's nats-server (default SIGTERM) and waits for it to exit; its JetStream data stays on disk. */
  stopNats(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the nats-server again on the same port with the same store dir. */
  startNats(): Promise<void>;
  /** Last lines of a process log, for failure messages. */
  logTail(who: 'controller' | 'nats' | number, lines?: number): string;
  /** Stops every process and deletes the folder (kept when TOPO_KEEP_TEST_DIRS=1). */
  stop(): Promise<void>;
}

/** Admin creds of every cluster started here, by URL: runTopo passes them with a --nats URL of one. */
const clusterCreds = new Map<string, string>();

/**
 * One operator (keys in the folder test/global-setup.ts made) for every
 * cluster of the run, so $TOPO_NATS_CREDS set here is valid for all of them:
 * the processes, the CLI and raw connections a test opens inherit it.
 */
function testAuthDir(): string {
  const dir = process.env.TOPO_TEST_AUTH_DIR;
  if (!dir) throw new Error('TOPO_TEST_AUTH_DIR is not set: run the tests with vitest (test/global-setup.ts makes it)');
  return dir;
}

export async function startCluster(opts: { workers?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'topo-test-'));
  let topology: LocalTopology;
  try {
    topology = await startLocalTopology({
      dir, workers: opts.workers ?? 2, detached: false, build: false, authDir: testAuthDir(), ...(opts.env ? { env: opts.env } : {}),
    });
  } catch (err) {
    if (process.env.TOPO_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const creds = topology.credsFile ?? '';
  process.env.TOPO_NATS_CREDS = creds;
  clusterCreds.set(topology.natsUrl, creds);
  const client = await TopoClient.connect(topology.natsUrl, { name: 'topo-test', creds });
  let stopped = false;
  return {
    url: topology.natsUrl,
    creds,
    client,
    dir,
    topology,
    workerId: topology.workerId,
    killWorker: (n, signal) => topology.killWorker(n, signal),
    startWorker: (n) => topology.startWorker(n),
    stopNats: (signal) => topology.stopNats(signal),
    startNats: () => topology.startNats(),
    logTail: (who, lines = 30) => tailFile(topology.logFile(who), lines),
    async stop() {
      if (stopped) return;
      stopped = true;
      await client.close().catch(() => undefined);
      await topology.stop();
      if (process.env.TOPO_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Calls `fn` every `intervalMs` until it returns a truthy value (returned) or
 * `timeoutMs` passes (throws naming `what` and the last value or error seen).
 * `what` may be a function, evaluated on timeout (e.g. to include output seen so far).
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: { what: string | (() => string); timeoutMs?: number; intervalMs?: number },
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let last: string = 'no attempt finished';
  for (;;) {
    try {
      const value = await fn();
      if (value) return value as NonNullable<T>;
      last = `last value: ${JSON.stringify(value)}`;
    } catch (err) {
      last = `last error: ${(err as Error).message}`;
    }
    if (Date.now() >= deadline) {
      const what = typeof opts.what === 'function' ? opts.what() : opts.what;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${last})`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

/** Path of the `topo` binary (bin/topo.mjs). */
export const topoBin = join(import.meta.dirname, '..', 'bin', 'topo.mjs');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real CLI, `node bin/topo.mjs ...args`, in `cwd` with TOPO_NATS_URL,
 * TOPO_NATS_CREDS and TOPO_DEBUG removed from the environment (pass --nats or
 * `env` to set them). A --nats URL (or TOPO_NATS_URL) of a cluster started by
 * startCluster comes with its admin creds in TOPO_NATS_CREDS, as a user would pass them.
 */
export function runTopo(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.TOPO_NATS_URL;
  delete env.TOPO_NATS_CREDS;
  delete env.TOPO_DEBUG;
  const natsArg = args.indexOf('--nats');
  const url = (natsArg >= 0 ? args[natsArg + 1] : undefined) ?? opts.env?.TOPO_NATS_URL;
  const creds = url ? clusterCreds.get(url) : undefined;
  if (creds) env.TOPO_NATS_CREDS = creds;
  Object.assign(env, opts.env);
  return new Promise((resolve) => {
    execFile(process.execPath, [topoBin, ...args], { cwd: opts.cwd ?? tmpdir(), env, timeout: opts.timeoutMs ?? 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
