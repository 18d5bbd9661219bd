/**
 * Finds and starts a private nats-server with JetStream on a free port.
 * Used by `topo up` and by the test harness: tests always talk to a real broker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { delimiter, join } from 'node:path';

export const INSTALL_HINT = 'install it with `sudo apt-get install -y nats-server` (Debian/Ubuntu) or see https://docs.nats.io/running-a-nats-service/introduction/installation';

/** Looks on PATH, then in /usr/sbin and /usr/local/bin. */
export function findNatsServer(): string {
  const fromEnv = process.env.TOPO_NATS_SERVER;
  if (fromEnv) {
    if (existsSync(fromEnv)) return fromEnv;
    throw new Error(`TOPO_NATS_SERVER points to ${fromEnv}, which does not exist`);
  }
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, 'nats-server');
    if (existsSync(p)) return p;
  }
  throw new Error(`nats-server was not found on PATH or in /usr/sbin: ${INSTALL_HINT}`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface StartedNats {
  url: string;
  port: number;
  /** nats-server's HTTP monitoring (/varz, /connz, /jsz ...), on 127.0.0.1. */
  monitorUrl: string;
  pid: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

export interface StartNatsOptions {
  /** JetStream store directory (created). */
  storeDir: string;
  port?: number;
  /** Append server output here instead of discarding it. */
  logFile?: string;
  /** Detach so the server outlives this process (topo up). */
  detached?: boolean;
  /** A server config file (auth: operator, resolver), read with `-c`; the flags here override its host, port and store. */
  configFile?: string;
  /** Port of its HTTP monitoring (default: a free one). */
  monitorPort?: number;
  /** How a free port is chosen when none is given (default freePort; a test hands out a taken one). */
  pickPort?: () => Promise<number>;
}

/**
 * nats-server's command line: listen on 127.0.0.1:port, JetStream in storeDir, auth from configFile when given,
 * and HTTP monitoring on 127.0.0.1:monitorPort when given (-m binds to the -a host).
 */
export function natsServerArgs(port: number, storeDir: string, configFile?: string, monitorPort?: number): string[] {
  return [...(configFile ? ['-c', configFile] : []), '-a', '127.0.0.1', '-p', String(port), ...(monitorPort ? ['-m', String(monitorPort)] : []), '-js', '-sd', storeDir];
}

export const monitorUrlOf = (port: number): string => `http://127.0.0.1:${port}`;

/** Tries a server gets, on new free ports, when it exits before listening on ports it was not given. */
const START_ATTEMPTS = 3;

export async function startNatsServer(opts: StartNatsOptions): Promise<StartedNats> {
  const bin = findNatsServer();
  const pickPort = opts.pickPort ?? freePort;
  mkdirSync(opts.storeDir, { recursive: true });
  // A port found free may be taken before the server binds it (another test's server, any process's outgoing
  // connection gets ports from the same range): the server then exits at once, and it is tried again on others.
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await pickPort());
    let monitorPort = opts.monitorPort ?? (await pickPort());
    while (monitorPort === port && opts.monitorPort === undefined) monitorPort = await pickPort();
    try {
      return await launch(bin, opts, port, monitorPort);
    } catch (err) {
      const ours = opts.port === undefined || opts.monitorPort === undefined;
      if (!(err instanceof ExitedBeforeListening) || !ours || attempt >= START_ATTEMPTS) throw err;
    }
  }
}

class ExitedBeforeListening extends Error {}

async function launch(bin: string, opts: StartNatsOptions, port: number, monitorPort: number): Promise<StartedNats> {
  const args = natsServerArgs(port, opts.storeDir, opts.configFile, monitorPort);
  let out: number | 'ignore' = 'ignore';
  if (opts.logFile) out = openSync(opts.logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', out, out], detached: opts.detached ?? false });
  if (typeof out === 'number') closeSync(out);
  if (opts.detached) child.unref();
  let exited: string | undefined;
  child.once('exit', (code, sig) => (exited = `exited with ${sig ?? code}`));
  const deadline = Date.now() + 10_000;
  while (!(await portOpen(port))) {
    if (exited) throw new ExitedBeforeListening(`nats-server ${exited} before listening on port ${port}${opts.logFile ? ` (see ${opts.logFile})` : ''}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nats-server did not listen on port ${port} within 10 s`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const url = `nats://127.0.0.1:${port}`;
  return {
    url,
    port,
    monitorUrl: monitorUrlOf(monitorPort),
    pid: child.pid ?? -1,
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited || child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 3_000).unref();
      }),
  };
}
