/**
 * The supervisor of a local topology (`topo up` starts it detached): it owns
 * nats-server (when the topology has its own), the controller and the
 * workers. A process that exits without being asked to is restarted after an
 * exponential backoff with jitter (base doubling to max, ±20%, reset once it
 * has run for `stableMs`); one that crashed `crashLimit` times within
 * `crashWindowMs` enters a cool-down of `coolDownMs` with no restarts
 * (Singularity's cool-down of repeatedly failing services). Its table is
 * written into `<dir>/run.json` on every change (`topo status` shows it).
 * Processes already alive when it starts (listed in run.json) are adopted,
 * not restarted: `topo up` is idempotent. SIGTERM stops everything.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessStatus, StuckReport } from '../../protocol/index.js';
import { findNatsServer, monitorUrlOf, natsServerArgs } from '../transport/natsServer.js';
import { isAlive, looksLike, runtimeNodeArgs, terminatePid } from '../client/processes.js';
import { runFilePath, type RunInfo } from '../client/runInfo.js';

export interface SupervisorSettings {
  baseMs: number;
  maxMs: number;
  stableMs: number;
  crashLimit: number;
  crashWindowMs: number;
  coolDownMs: number;
}

export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): SupervisorSettings {
  const num = (name: string, dflt: number): number => {
    const v = env[name];
    if (v === undefined || v === '') return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number >= 0, got ${JSON.stringify(v)}`);
    return n;
  };
  return {
    baseMs: num('TOPO_RESTART_BASE_MS', 250),
    maxMs: num('TOPO_RESTART_MAX_MS', 30_000),
    stableMs: num('TOPO_RESTART_STABLE_MS', 60_000),
    crashLimit: num('TOPO_CRASH_LIMIT', 5),
    crashWindowMs: num('TOPO_CRASH_WINDOW_MS', 60_000),
    coolDownMs: num('TOPO_COOLDOWN_MS', 120_000),
  };
}

/** Delay before restart number `attempt` (1-based): base·2^(attempt-1), capped, ±20% jitter. */
export function backoffDelay(attempt: number, s: Pick<SupervisorSettings, 'baseMs' | 'maxMs'>, random = Math.random): number {
  const raw = Math.min(s.maxMs, s.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(raw * (0.8 + 0.4 * random()));
}

export interface SupervisorOptions {
  dir: string;
  workers: number;
  /** Use this server; otherwise run nats-server on natsPort with data in <dir>/nats. */
  natsUrl?: string;
  natsPort?: number;
  /** Port of the HTTP monitoring of the nats-server it runs. */
  natsMonitorPort?: number;
  /**
   * Auth of the nats-server it runs (runtime/transport/auth.ts): its config file, the admin creds
   * (controller, run.json) and each worker's creds by name. Absent: no auth (`topo up --no-auth`).
   */
  auth?: { serverConfig: string; adminCreds: string; workerCreds: Record<string, string> };
  distDir: string;
  settings: SupervisorSettings;
  log: (msg: string) => void;
}

interface Proc {
  status: ProcessStatus;
  marker: string;
  child?: ChildProcess;
  /** Exit times of unexpected exits. */
  crashes: number[];
  /** Consecutive quick crashes (for the backoff). */
  attempt: number;
  timer?: NodeJS.Timeout;
  stopping?: boolean;
}

export class Supervisor {
  private readonly procs: Proc[] = [];
  private readonly run: RunInfo;
  private stopping = false;
  private poll?: NodeJS.Timeout;

  constructor(private readonly o: SupervisorOptions) {
    const logDir = join(o.dir, 'logs');
    mkdirSync(logDir, { recursive: true });
    const ownsNats = o.natsUrl === undefined;
    const natsUrl = o.natsUrl ?? `nats://127.0.0.1:${o.natsPort}`;
    const previous = readRun(o.dir);
    this.run = {
      natsUrl, startedAt: previous?.startedAt ?? Date.now(), ownsNats, dir: o.dir, logDir,
      ...(ownsNats && o.natsMonitorPort ? { natsMonitorUrl: monitorUrlOf(o.natsMonitorPort) } : {}),
      ...(o.auth ? { credsFile: o.auth.adminCreds } : {}),
      pids: { controller: -1, workers: Array.from({ length: o.workers }, () => -1) },
    };
    const add = (name: string, kind: ProcessStatus['kind'], marker: string, pid: number | undefined): void => {
      const p: Proc = { status: { name, kind, state: 'stopped', restarts: 0, recentCrashes: 0 }, marker, crashes: [], attempt: 0 };
      const old = previous?.processes?.find((x) => x.name === name);
      if (old) p.status.restarts = old.restarts;
      if (pid && pid > 0 && isAlive(pid) && looksLike(pid, marker)) {
        p.status = { ...p.status, pid, state: 'running', startedAt: old?.startedAt ?? Date.now() };
        this.adopted.push(`${name} (pid ${pid})`);
      }
      this.procs.push(p);
    };
    if (ownsNats) add('nats-server', 'nats', 'nats-server', previous?.pids.nats);
    add('controller', 'controller', 'controller.mjs', previous?.pids.controller);
    for (let n = 1; n <= o.workers; n++) add(`w-${n}`, 'worker', 'worker.mjs', previous?.pids.workers[n - 1]);
  }

  /** "w-1 (pid 123)" for every process found alive at start. */
  readonly adopted: string[] = [];

  async start(): Promise<void> {
    this.write();
    for (const p of this.procs) if (p.status.state !== 'running') await this.spawn(p);
    this.poll = setInterval(() => this.check(), 200);
    this.write();
  }

  private logFile(p: Proc): string {
    const name = p.status.kind === 'worker' ? `worker-${p.status.name.slice(2)}.log` : p.status.kind === 'nats' ? 'nats.log' : 'controller.log';
    return join(this.run.logDir, name);
  }

  private command(p: Proc): { cmd: string; args: string[] } {
    if (p.status.kind === 'nats') {
      const port = new URL(this.run.natsUrl).port;
      const store = join(this.o.dir, 'nats');
      mkdirSync(store, { recursive: true });
      return { cmd: findNatsServer(), args: natsServerArgs(Number(port), store, this.o.auth?.serverConfig, this.o.natsMonitorPort) };
    }
    if (p.status.kind === 'controller') return { cmd: process.execPath, args: runtimeNodeArgs('controller', join(this.o.distDir, 'controller.mjs'), ['--nats', this.run.natsUrl]) };
    const n = p.status.name.slice(2);
    return {
      cmd: process.execPath,
      args: runtimeNodeArgs('worker', join(this.o.distDir, 'worker.mjs'), ['--nats', this.run.natsUrl, '--id', p.status.name, '--data-dir', join(this.o.dir, `worker-${n}`)]),
    };
  }

  /** TOPO_NATS_CREDS of a process: the admin creds for the controller, its own for a worker. */
  private credsEnv(p: Proc): NodeJS.ProcessEnv {
    const a = this.o.auth;
    if (!a || p.status.kind === 'nats') return {};
    const file = p.status.kind === 'worker' ? a.workerCreds[p.status.name] : a.adminCreds;
    return file ? { TOPO_NATS_CREDS: file } : {};
  }

  private async spawn(p: Proc): Promise<void> {
    if (this.stopping) return;
    const { cmd, args } = this.command(p);
    const out = openSync(this.logFile(p), 'a');
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', out, out], env: { ...process.env, TOPO_NATS_URL: this.run.natsUrl, ...this.credsEnv(p) } });
    } finally {
      closeSync(out);
    }
    p.child = child;
    p.status = { ...p.status, state: 'running', startedAt: Date.now() };
    if (child.pid !== undefined) p.status.pid = child.pid;
    delete p.status.nextStartAt;
    delete p.status.coolDownUntil;
    child.once('error', (err) => this.o.log(`${p.status.name} could not start: ${err.message}`));
    child.once('exit', (code, signal) => {
      if (p.child === child) this.exited(p, code, signal);
    });
    this.o.log(`started ${p.status.name} (pid ${child.pid})`);
    this.write();
    if (p.status.kind === 'nats') await waitForPort(Number(new URL(this.run.natsUrl).port), 10_000);
  }

  /** Adopted processes are not our children: watch them by pid. */
  private check(): void {
    for (const p of this.procs) {
      if (!p.child && p.status.state === 'running' && p.status.pid && !isAlive(p.status.pid)) this.exited(p, null, null);
    }
  }

  private exited(p: Proc, code: number | null, signal: NodeJS.Signals | null): void {
    const now = Date.now();
    delete p.child;
    p.status.lastExit = { code, signal, at: now };
    if (this.stopping || p.stopping) {
      p.status.state = 'stopped';
      this.write();
      return;
    }
    if (p.status.kind === 'worker') {
      const stuck = readStuck(join(this.o.dir, `worker-${p.status.name.slice(2)}`), p.status.pid);
      if (stuck) p.status.lastStuck = stuck;
    }
    const ranFor = now - (p.status.startedAt ?? now);
    if (ranFor >= this.o.settings.stableMs) p.attempt = 0;
    p.attempt++;
    p.crashes = [...p.crashes.filter((t) => now - t < this.o.settings.crashWindowMs), now];
    p.status.recentCrashes = p.crashes.length;
    const how = signal ? `was killed by ${signal}` : code === null ? 'is gone' : `exited with code ${code}`;
    if (p.crashes.length >= this.o.settings.crashLimit) {
      const until = now + this.o.settings.coolDownMs;
      p.status.state = 'cool-down';
      p.status.coolDownUntil = until;
      delete p.status.nextStartAt;
      this.o.log(`${p.status.name} ${how}: ${p.crashes.length} crashes within ${this.o.settings.crashWindowMs} ms, cool-down: not restarted for ${this.o.settings.coolDownMs} ms`);
      p.timer = setTimeout(() => {
        p.crashes = [];
        p.attempt = 0;
        p.status.recentCrashes = 0;
        p.status.restarts++;
        void this.spawn(p);
      }, this.o.settings.coolDownMs);
    } else {
      const delay = backoffDelay(p.attempt, this.o.settings);
      p.status.state = 'backoff';
      p.status.nextStartAt = now + delay;
      this.o.log(`${p.status.name} ${how}; restarting in ${delay} ms (attempt ${p.attempt})`);
      p.timer = setTimeout(() => {
        p.status.restarts++;
        void this.spawn(p);
      }, delay);
    }
    this.write();
  }

  /**
   * `topo up` against a running supervisor (SIGUSR2): starts now every process
   * waiting in backoff or cool-down, with its crash count reset.
   */
  async startMissing(): Promise<string[]> {
    const started: string[] = [];
    for (const p of this.procs) {
      if (this.stopping || p.status.state === 'running') continue;
      clearTimeout(p.timer);
      p.crashes = [];
      p.attempt = 0;
      p.status.recentCrashes = 0;
      p.status.restarts++;
      started.push(`${p.status.name} (was ${p.status.state})`);
      await this.spawn(p);
    }
    if (started.length) this.o.log(`asked to start what is missing: ${started.join(', ')}`);
    return started;
  }

  /** Stops workers, then the controller, then nats-server; removes run.json. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.poll);
    for (const p of this.procs) clearTimeout(p.timer);
    const stopOne = async (p: Proc): Promise<void> => {
      p.stopping = true;
      const pid = p.status.pid;
      if (pid && p.status.state === 'running' && isAlive(pid) && looksLike(pid, p.marker)) await terminatePid(pid, { graceMs: 5_000 });
      p.status.state = 'stopped';
    };
    await Promise.all(this.procs.filter((p) => p.status.kind === 'worker').map(stopOne));
    for (const kind of ['controller', 'nats'] as const) for (const p of this.procs.filter((x) => x.status.kind === kind)) await stopOne(p);
    rmSync(runFilePath(this.o.dir), { force: true });
  }

  private write(): void {
    if (this.stopping) return;
    const pidOf = (name: string): number => {
      const p = this.procs.find((x) => x.status.name === name);
      return p?.status.state === 'running' ? (p.status.pid ?? -1) : -1;
    };
    const nats = this.procs.find((p) => p.status.kind === 'nats');
    const run: RunInfo & { supervisorPid: number; processes: ProcessStatus[]; updatedAt: number } = {
      ...this.run,
      pids: {
        ...(nats ? { nats: pidOf('nats-server') } : {}),
        controller: pidOf('controller'),
        workers: this.run.pids.workers.map((_, i) => pidOf(`w-${i + 1}`)),
      },
      supervisorPid: process.pid,
      updatedAt: Date.now(),
      processes: this.procs.map((p) => ({ ...p.status })),
    };
    const file = runFilePath(this.o.dir);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(run, null, 2) + '\n');
    renameSync(tmp, file);
  }
}

type SupervisedRun = RunInfo & { supervisorPid?: number; processes?: ProcessStatus[] };

function readRun(dir: string): SupervisedRun | undefined {
  try {
    return JSON.parse(readFileSync(runFilePath(dir), 'utf8')) as SupervisedRun;
  } catch {
    return undefined;
  }
}

function readStuck(dataDir: string, pid: number | undefined): StuckReport | undefined {
  const file = join(dataDir, 'stuck.json');
  if (!existsSync(file)) return undefined;
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as StuckReport;
    return r.pid === pid ? r : undefined;
  } catch {
    return undefined;
  }
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const s = connect({ port, host: '127.0.0.1' });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (open || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}
