/**
 * `topo up` / `topo down` through the supervisor (runtime/supervisor/): `up`
 * starts a detached supervisor that owns nats-server, the controller and the
 * workers and restarts them when they die. `up` against a folder whose
 * processes are alive starts only what is missing and never kills anything;
 * `down` asks the supervisor to stop everything, then kills whatever
 * run.json still lists (restarted processes included).
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ProcessStatus } from '../../protocol/index.js';
import { freePort } from '../transport/natsServer.js';
import { TopoClient } from './client.js';
import { buildRuntime, distFile } from './paths.js';
import { isAlive, looksLike, tailFile, terminatePid } from './processes.js';
import { runFilePath, type RunInfo } from './runInfo.js';
import { stopLocalTopology, type StopResult } from './launcher.js';

export type SupervisedRunInfo = RunInfo & { supervisorPid?: number; processes?: ProcessStatus[]; updatedAt?: number };

export function readSupervisedRun(dir: string): SupervisedRunInfo | undefined {
  try {
    return JSON.parse(readFileSync(runFilePath(dir), 'utf8')) as SupervisedRunInfo;
  } catch {
    return undefined;
  }
}

export interface UpResult {
  /** 'running': everything was alive and nothing was started. */
  how: 'started' | 'adopted' | 'running';
  run: SupervisedRunInfo;
  /** Processes found alive ("w-1 (pid 12)"). */
  found: string[];
  /** Processes started by this call. */
  started: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const alive = (run: SupervisedRunInfo | undefined): ProcessStatus[] =>
  (run?.processes ?? []).filter((p) => p.pid !== undefined && p.state === 'running' && isAlive(p.pid));

/** Starts what is missing of the topology in `dir`; see the module comment. */
export async function upSupervised(opts: { dir: string; workers?: number; natsUrl?: string; readyTimeoutMs?: number; env?: NodeJS.ProcessEnv; noAuth?: boolean }): Promise<UpResult> {
  const dir = resolve(opts.dir);
  const previous = readSupervisedRun(dir);
  if (previous?.supervisorPid && isAlive(previous.supervisorPid) && looksLike(previous.supervisorPid, 'supervisor.mjs')) {
    const found = alive(previous).map((p) => `${p.name} (pid ${p.pid})`);
    const missing = (previous.processes ?? []).filter((p) => p.state !== 'running');
    if (missing.length === 0) return { how: 'running', run: previous, found, started: [] };
    // Some wait in backoff or cool-down: the supervisor starts them now.
    process.kill(previous.supervisorPid, 'SIGUSR2');
    const run = await waitReady(dir, previous.supervisorPid, opts.readyTimeoutMs ?? 20_000);
    const started = missing.map((m) => `${m.name} (pid ${run.processes?.find((p) => p.name === m.name)?.pid}, was in ${m.state})`);
    return { how: 'running', run, found, started };
  }
  await buildRuntime({ quiet: true });
  // A previous run's processes (its supervisor died): keep its server, port and worker count.
  const wasAlive = previous ? [previous.pids.nats, previous.pids.controller, ...previous.pids.workers].filter((pid) => pid !== undefined && pid > 0 && isAlive(pid)) : [];
  const adopt = previous !== undefined && wasAlive.length > 0;
  const workers = adopt ? Math.max(previous.pids.workers.length, opts.workers ?? 0) : (opts.workers ?? 2);
  const external = adopt ? (previous.ownsNats ? undefined : previous.natsUrl) : opts.natsUrl;
  // An adopted server keeps how it ran: with auth when its run.json has admin creds.
  const noAuth = adopt ? previous.credsFile === undefined : opts.noAuth === true;
  // An adopted server keeps its monitoring port too (one that ran without it gets none).
  const monitorPort = adopt ? (previous.natsMonitorUrl ? new URL(previous.natsMonitorUrl).port : undefined) : String(await freePort());
  const natsArgs = external ? ['--nats', external] : [
    '--nats-port', adopt ? new URL(previous.natsUrl).port : String(await freePort()), ...(monitorPort ? ['--nats-monitor-port', monitorPort] : []), ...(noAuth ? ['--no-auth'] : []),
  ];
  const logDir = join(dir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const out = openSync(join(logDir, 'supervisor.log'), 'a');
  let pid: number | undefined;
  try {
    const child = spawn(process.execPath, [distFile('supervisor'), '--dir', dir, '--workers', String(workers), ...natsArgs], {
      stdio: ['ignore', out, out], detached: true, env: { ...process.env, ...opts.env },
    });
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(out);
  }
  const run = await waitReady(dir, pid ?? -1, opts.readyTimeoutMs ?? 20_000);
  const before = new Set(wasAlive);
  const procs = run.processes ?? [];
  return {
    how: adopt ? 'adopted' : 'started',
    run,
    found: procs.filter((p) => p.pid !== undefined && before.has(p.pid)).map((p) => `${p.name} (pid ${p.pid})`),
    started: procs.filter((p) => p.pid !== undefined && !before.has(p.pid)).map((p) => `${p.name} (pid ${p.pid})`),
  };
}

/** Until the supervisor's table shows every process running and the controller sees every worker alive with that pid. */
async function waitReady(dir: string, supervisorPid: number, timeoutMs: number): Promise<SupervisedRunInfo> {
  const deadline = Date.now() + timeoutMs;
  let problem = 'the supervisor has not written run.json yet';
  let client: TopoClient | undefined;
  try {
    for (;;) {
      if (!isAlive(supervisorPid)) {
        const log = join(dir, 'logs', 'supervisor.log');
        throw new Error(`the topo supervisor exited during startup; see ${log}\n${tailFile(log, 20)}`);
      }
      const run = readSupervisedRun(dir);
      if (run?.supervisorPid === supervisorPid && run.processes) {
        const down = run.processes.filter((p) => p.state !== 'running');
        if (down.length) problem = `${down.map((p) => `${p.name} ${p.state}`).join(', ')}`;
        else {
          try {
            client ??= await TopoClient.connect(run.natsUrl, { name: 'topo-up', creds: run.credsFile });
            const status = await client.status({ timeoutMs: 1_000 });
            const missing = run.processes.filter((p) => p.kind === 'worker' && !status.workers.some((w) => w.workerId === p.name && w.alive && w.pid === p.pid));
            if (missing.length === 0) return run;
            problem = `worker(s) ${missing.map((p) => p.name).join(', ')} not registered yet`;
          } catch (err) {
            problem = (err as Error).message;
          }
        }
      }
      if (Date.now() > deadline) throw new Error(`topology not ready after ${Math.round(timeoutMs / 1000)} s: ${problem}; see the logs in ${join(dir, 'logs')}`);
      await sleep(150);
    }
  } finally {
    await client?.close().catch(() => undefined);
  }
}

/**
 * Stops the topology in `dir`: SIGTERM to its supervisor (which stops the
 * workers, the controller, then nats-server), then whatever run.json still
 * lists is killed (the supervisor keeps restarted pids in it).
 */
export async function downSupervised(dir: string): Promise<StopResult> {
  const run = readSupervisedRun(dir);
  if (!run) return stopLocalTopology(dir);
  const stopped: string[] = [];
  const order = { worker: 0, controller: 1, nats: 2 } as const;
  const listed = alive(run).sort((a, b) => order[a.kind] - order[b.kind]).map((p) => `${p.name === 'nats-server' ? 'nats-server' : p.kind === 'worker' ? `worker ${p.name}` : p.name} (pid ${p.pid})`);
  const sup = run.supervisorPid;
  if (sup && isAlive(sup) && looksLike(sup, 'supervisor.mjs')) {
    await terminatePid(sup, { graceMs: 20_000 });
    stopped.push(...listed, `supervisor (pid ${sup})`);
  }
  // Fallback: the supervisor was dead or did not finish (run.json is then still there).
  const rest = await stopLocalTopology(dir);
  for (const s of rest.stopped) if (!stopped.includes(s)) stopped.push(s);
  return { found: true, stopped };
}
