/**
 * Starts and stops a local topology: a private nats-server (unless one is
 * given), one controller and N workers, as separate node processes. `topo up`
 * runs it detached (the processes outlive the CLI); tests run it attached.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startNatsServer, type StartedNats } from '../transport/natsServer.js';
import { authDirOf, ensureLocalAuth } from '../transport/auth.js';
import { ConflictError } from '../../protocol/index.js';
import type { StatusReply } from '../../protocol/index.js';
import { TopoClient } from './client.js';
import { buildRuntime, distFile } from './paths.js';
import { isAlive, looksLike, runtimeNodeArgs, tailFile, terminatePid } from './processes.js';
import { DEFAULT_DIR, readRunInfo, removeRunInfo, writeRunInfo, type RunInfo } from './runInfo.js';

export interface LocalTopologyOptions {
  /** Topology folder: run.json, logs/, nats/ and worker-<n>/ live here. Default `.topo`. */
  dir?: string;
  /** Number of workers, default 2. */
  workers?: number;
  /** Use this NATS server instead of starting one. */
  natsUrl?: string;
  /** Let the processes outlive this one (topo up). Default false. */
  detached?: boolean;
  /** Default `<dir>/logs`. */
  logDir?: string;
  /** Build dist/ first when stale (default true). */
  build?: boolean;
  /** How long to wait for the controller and every worker (default 15 s). */
  readyTimeoutMs?: number;
  /** Extra environment for the controller and worker processes (e.g. TOPO_LOG_LEVEL). */
  env?: NodeJS.ProcessEnv;
  /**
   * Authentication on the nats-server started here (default true): operator-mode JWT auth,
   * admin creds for the controller and clients, one restricted user per worker. Ignored with natsUrl.
   */
  auth?: boolean;
  /** Where the keys and creds live (default `<dir>/auth`); topologies sharing it share one operator. */
  authDir?: string;
  /** Credentials for the given natsUrl (default $TOPO_NATS_CREDS). */
  creds?: string;
}

export interface LocalTopology {
  dir: string;
  logDir: string;
  natsUrl: string;
  ownsNats: boolean;
  /** Admin credentials (undefined: anonymous). */
  credsFile: string | undefined;
  /** Credentials worker number `n` runs with: its own restricted user when auth is on here. */
  workerCredsFile(n: number): Promise<string | undefined>;
  /** As written to run.json (worker pids are kept up to date). */
  run: RunInfo;
  /** Worker id of worker number `n` (1-based): `w-<n>`. */
  workerId(n: number): string;
  /** Log file of `controller`, `nats` or worker number `n`. */
  logFile(who: 'controller' | 'nats' | number): string;
  /** Stops worker number `n` (1-based) with `signal` (default SIGKILL) and waits until it is gone. */
  killWorker(n: number, signal?: NodeJS.Signals): Promise<void>;
  /** (Re)starts worker number `n` with the same id and data dir; waits until the controller sees it alive. */
  startWorker(n: number): Promise<void>;
  /**
   * Stops the nats-server this topology started (`signal`, default SIGTERM) and waits until it
   * has exited; its JetStream data stays in `<dir>/nats`. Throws when the server is not ours.
   */
  stopNats(signal?: NodeJS.Signals): Promise<void>;
  /** Starts that nats-server again on the same port with the same store dir (after stopNats). */
  startNats(): Promise<void>;
  /** Stops workers, controller, then nats-server (if started here); removes run.json. */
  stop(): Promise<void>;
}

export const workerId = (n: number): string => `w-${n}`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Started processes of one topology, by name ("controller", "w-1", ...). */
interface Managed {
  child: ChildProcess;
  logFile: string;
  /** Set once the process has exited: "exited with code 1" / "was killed by SIGKILL". */
  exit?: string;
}

function spawnRuntime(
  kind: 'controller' | 'worker',
  args: string[],
  logFile: string,
  natsUrl: string,
  detached: boolean,
  extraEnv: NodeJS.ProcessEnv = {},
  credsFile?: string,
): Managed {
  const out = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, runtimeNodeArgs(kind, distFile(kind), ['--nats', natsUrl, ...args]), {
      stdio: ['ignore', out, out],
      detached,
      env: { ...process.env, ...extraEnv, TOPO_NATS_URL: natsUrl, ...(credsFile ? { TOPO_NATS_CREDS: credsFile } : {}) },
    });
  } finally {
    closeSync(out);
  }
  if (detached) child.unref();
  const managed: Managed = { child, logFile };
  child.once('exit', (code, sig) => (managed.exit = sig ? `was killed by ${sig}` : `exited with code ${code}`));
  child.once('error', (err) => (managed.exit = `could not start: ${err.message}`));
  return managed;
}

function describeDeath(name: string, m: Managed): string {
  const tail = tailFile(m.logFile, 25);
  return `${name} ${m.exit} during startup; see ${m.logFile}${tail ? `\n--- last lines of ${m.logFile} ---\n${tail}` : ''}`;
}

/** Is the topology recorded in `dir` still running? Stale run files report running:false. */
export function topologyState(dir: string = DEFAULT_DIR): { running: boolean; run?: RunInfo } {
  const run = readRunInfo(dir);
  if (!run) return { running: false };
  const natsOk = !run.ownsNats || isAlive(run.pids.nats);
  return { running: natsOk && isAlive(run.pids.controller), run };
}

/**
 * Polls the controller's status until worker number 1..n (or just `only`)
 * are alive with the pids we started. Fails early when a process dies.
 */
async function waitUntilReady(
  client: TopoClient,
  managed: Map<string, Managed>,
  expect: Map<string, number>,
  timeoutMs: number,
  logDir: string,
): Promise<StatusReply> {
  const deadline = Date.now() + timeoutMs;
  let lastProblem = 'no status reply yet';
  for (;;) {
    for (const [name, m] of managed) if (m.exit) throw new Error(describeDeath(name, m));
    try {
      const status = await client.status({ timeoutMs: 1_000 });
      const missing = [...expect].filter(([id, pid]) => !status.workers.some((w) => w.workerId === id && w.alive && w.pid === pid)).map(([id]) => id);
      if (missing.length === 0) return status;
      lastProblem = `worker${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not registered yet`;
    } catch (err) {
      lastProblem = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`topology not ready after ${Math.round(timeoutMs / 1000)} s: ${lastProblem}; see the logs in ${logDir}`);
    }
    await sleep(150);
  }
}

export async function startLocalTopology(opts: LocalTopologyOptions = {}): Promise<LocalTopology> {
  const dir = resolve(opts.dir ?? DEFAULT_DIR);
  const logDir = resolve(opts.logDir ?? join(dir, 'logs'));
  const workers = opts.workers ?? 2;
  const detached = opts.detached ?? false;
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`workers must be a positive integer, got ${workers}`);

  const state = topologyState(dir);
  if (state.running) {
    throw new ConflictError(`a topology is already running in ${dir} (NATS ${state.run?.natsUrl}); stop it with \`topo down\``);
  }
  if (state.run) await stopLocalTopology(dir); // leftovers of a crashed run

  if (opts.build ?? true) await buildRuntime({ quiet: true });
  for (const kind of ['controller', 'worker'] as const) {
    if (!existsSync(distFile(kind))) throw new Error(`${distFile(kind)} is missing: run \`node bin/build.mjs\``);
  }
  mkdirSync(logDir, { recursive: true });

  let nats: StartedNats | undefined;
  const managed = new Map<string, Managed>();
  const logFile = (who: 'controller' | 'nats' | number): string => join(logDir, typeof who === 'number' ? `worker-${who}.log` : `${who}.log`);
  const workerArgs = (n: number): string[] => ['--id', workerId(n), '--data-dir', join(dir, `worker-${n}`)];
  let client: TopoClient | undefined;
  let credsFile: string | undefined;

  const stopAll = async (): Promise<void> => {
    const stopOne = async (m: Managed | undefined): Promise<void> => {
      if (!m || m.exit || m.child.pid === undefined) return;
      const exited = new Promise<void>((r) => m.child.once('exit', () => r()));
      m.child.kill('SIGTERM');
      const timer = setTimeout(() => m.child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    };
    await Promise.all([...managed].filter(([n]) => n !== 'controller').map(([, m]) => stopOne(m)));
    await stopOne(managed.get('controller'));
    if (nats) {
      if (detached) await terminatePid(nats.pid);
      else await nats.stop();
    }
  };

  try {
    const auth = !opts.natsUrl && (opts.auth ?? true) ? await ensureLocalAuth(opts.authDir ?? authDirOf(dir)) : undefined;
    const natsUrl = opts.natsUrl ?? (nats = await startNatsServer({ storeDir: join(dir, 'nats'), logFile: logFile('nats'), detached, ...(auth ? { configFile: auth.serverConfig } : {}) })).url;
    credsFile = auth?.adminCreds ?? opts.creds ?? (process.env.TOPO_NATS_CREDS || undefined);
    const spawnWorker = async (n: number): Promise<Managed> =>
      spawnRuntime('worker', workerArgs(n), logFile(n), natsUrl, detached, opts.env, auth ? await auth.workerCreds(workerId(n)) : credsFile);
    // Connect first: an unreachable --nats URL fails here, before any process is spawned.
    client = await TopoClient.connect(natsUrl, { name: 'topo-launcher', creds: credsFile });
    managed.set('controller', spawnRuntime('controller', [], logFile('controller'), natsUrl, detached, opts.env, credsFile));
    for (let n = 1; n <= workers; n++) managed.set(workerId(n), await spawnWorker(n));

    const run: RunInfo = {
      natsUrl,
      startedAt: Date.now(),
      pids: {
        ...(nats ? { nats: nats.pid } : {}),
        controller: managed.get('controller')?.child.pid ?? -1,
        workers: Array.from({ length: workers }, (_, i) => managed.get(workerId(i + 1))?.child.pid ?? -1),
      },
      ownsNats: nats !== undefined,
      ...(nats ? { natsMonitorUrl: nats.monitorUrl } : {}),
      dir,
      logDir,
      ...(auth ? { credsFile: auth.adminCreds } : {}),
    };
    writeRunInfo(dir, run);

    const expect = new Map(run.pids.workers.map((pid, i) => [workerId(i + 1), pid]));
    await waitUntilReady(client, managed, expect, opts.readyTimeoutMs ?? 15_000, logDir);
    const readyClient = client;
    const ownNats = (): StartedNats => {
      if (!nats) throw new Error('this topology uses a nats-server it did not start');
      return nats;
    };

    const topology: LocalTopology = {
      dir,
      logDir,
      natsUrl,
      ownsNats: run.ownsNats,
      credsFile,
      workerCredsFile: async (n) => (auth ? auth.workerCreds(workerId(n)) : credsFile),
      run,
      workerId,
      logFile,
      async killWorker(n, sig = 'SIGKILL') {
        const m = managed.get(workerId(n));
        if (!m || m.exit) return;
        const exited = new Promise<void>((r) => m.child.once('exit', () => r()));
        m.child.kill(sig);
        await exited;
      },
      async startWorker(n) {
        if (!Number.isInteger(n) || n < 1) throw new Error(`worker number must be a positive integer, got ${n}`);
        const current = managed.get(workerId(n));
        if (current && !current.exit) throw new ConflictError(`worker ${workerId(n)} is already running (pid ${current.child.pid})`);
        const m = await spawnWorker(n);
        managed.set(workerId(n), m);
        run.pids.workers[n - 1] = m.child.pid ?? -1;
        writeRunInfo(dir, run);
        // A detached launcher closed its connection after startup.
        const c = readyClient.nc.isClosed() ? await TopoClient.connect(natsUrl, { name: 'topo-launcher', creds: credsFile }) : readyClient;
        try {
          await waitUntilReady(c, new Map([[workerId(n), m]]), new Map([[workerId(n), m.child.pid ?? -1]]), opts.readyTimeoutMs ?? 15_000, logDir);
        } finally {
          if (c !== readyClient) await c.close();
        }
      },
      async stopNats(sig = 'SIGTERM') {
        const server = ownNats();
        if (server.process.exitCode !== null || server.process.signalCode !== null) return;
        const exited = new Promise<void>((r) => server.process.once('exit', () => r()));
        server.process.kill(sig);
        await exited;
      },
      async startNats() {
        const server = ownNats();
        if (server.process.exitCode === null && server.process.signalCode === null) {
          throw new ConflictError(`nats-server is already running (pid ${server.pid})`);
        }
        // With the same authentication as before: the accounts (and so the JetStream data) are the account's.
        nats = await startNatsServer({
          storeDir: join(dir, 'nats'), port: server.port, monitorPort: Number(new URL(server.monitorUrl).port), logFile: logFile('nats'), detached,
          ...(auth ? { configFile: auth.serverConfig } : {}),
        });
        run.pids.nats = nats.pid;
        writeRunInfo(dir, run);
      },
      async stop() {
        await readyClient.close().catch(() => undefined);
        await stopAll();
        removeRunInfo(dir);
      },
    };
    if (detached) {
      // The launcher's own connection is only for the readiness check.
      await client.close();
    }
    return topology;
  } catch (err) {
    await client?.close().catch(() => undefined);
    await stopAll().catch(() => undefined);
    removeRunInfo(dir);
    throw err;
  }
}

export interface StopResult {
  /** False when no run.json was found in the dir. */
  found: boolean;
  /** What was signalled: "worker w-1 (pid 123)", ... */
  stopped: string[];
}

/**
 * Stops what `<dir>/run.json` lists: workers, then the controller, then the
 * nats-server if `topo up` started it (SIGTERM, SIGKILL after 5 s), and removes
 * run.json. Pids whose command line no longer matches are left alone.
 */
export async function stopLocalTopology(dir: string = DEFAULT_DIR): Promise<StopResult> {
  const run = readRunInfo(dir);
  if (!run) return { found: false, stopped: [] };
  const stopped: string[] = [];
  const stop = async (what: string, pid: number | undefined, marker: string): Promise<void> => {
    if (!pid || !isAlive(pid) || !looksLike(pid, marker)) return;
    await terminatePid(pid, { graceMs: 5_000 });
    stopped.push(`${what} (pid ${pid})`);
  };
  await Promise.all(run.pids.workers.map((pid, i) => stop(`worker ${workerId(i + 1)}`, pid, 'worker.mjs')));
  await stop('controller', run.pids.controller, 'controller.mjs');
  if (run.ownsNats) await stop('nats-server', run.pids.nats, 'nats-server');
  removeRunInfo(dir);
  return { found: true, stopped };
}
