/**
 * `.topo/run.json`: what `topo up` started, so later commands (run from the
 * same folder or below it) find the topology and `topo down` can stop it.
 */
import { existsSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export const DEFAULT_DIR = '.topo';
export const RUN_FILE = 'run.json';

export interface RunInfo {
  natsUrl: string;
  startedAt: number;
  pids: { nats?: number; controller: number; workers: number[] };
  /** True when `topo up` started nats-server itself (and `topo down` stops it). */
  ownsNats: boolean;
  /** HTTP monitoring of the nats-server `topo up` started (/varz, /connz, /jsz), on 127.0.0.1. */
  natsMonitorUrl?: string;
  /** Absolute topology dir and log dir, for messages. */
  dir: string;
  logDir: string;
  /**
   * The admin credentials (`<dir>/auth/admin.creds`, mode 0600) when the
   * server `topo up` started has auth on; every CLI verb and TopoClient found
   * through this file connects with them. Absent: anonymous (`--no-auth`, or an external server).
   */
  credsFile?: string;
}

export function runFilePath(dir: string): string {
  return join(resolve(dir), RUN_FILE);
}

export function readRunInfo(dir: string): RunInfo | undefined {
  const file = runFilePath(dir);
  if (!existsSync(file)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file} is not valid JSON (${(err as Error).message}); delete it if no topology runs`, { cause: err });
  }
  const r = raw as Partial<RunInfo>;
  if (typeof r.natsUrl !== 'string' || !r.pids || typeof r.pids.controller !== 'number' || !Array.isArray(r.pids.workers)) {
    throw new Error(`${file} is not a topo run file (missing natsUrl or pids); delete it if no topology runs`);
  }
  return { dir: resolve(dir), logDir: join(resolve(dir), 'logs'), startedAt: 0, ownsNats: false, ...r } as RunInfo;
}

export function writeRunInfo(dir: string, info: RunInfo): void {
  mkdirSync(resolve(dir), { recursive: true });
  writeFileSync(runFilePath(dir), JSON.stringify(info, null, 2) + '\n');
}

export function removeRunInfo(dir: string): void {
  rmSync(runFilePath(dir), { force: true });
}

/** Finds `<dir>/.topo/run.json` in `from` or one of its parents; returns the topology dir. */
export function findTopologyDir(from: string = process.cwd()): string | undefined {
  let dir = resolve(from);
  for (;;) {
    const candidate = join(dir, DEFAULT_DIR);
    if (existsSync(join(candidate, RUN_FILE))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

export const NO_TOPOLOGY_MESSAGE = 'no running topo found here: run `topo up` first, or pass --nats URL';

/**
 * Credentials for `url`: --creds flag > TOPO_NATS_CREDS > the admin creds of
 * the topology found from `cwd` (its run.json), when it runs at `url`. None: anonymous.
 */
export function resolveNatsCreds(url: string, opts: { flag?: string | undefined; cwd?: string; env?: NodeJS.ProcessEnv } = {}): string | undefined {
  if (opts.flag) return opts.flag;
  const fromEnv = (opts.env ?? process.env).TOPO_NATS_CREDS;
  if (fromEnv) return fromEnv;
  const dir = findTopologyDir(opts.cwd ?? process.cwd());
  const info = dir ? readRunInfo(dir) : undefined;
  return info?.credsFile && info.natsUrl === url ? info.credsFile : undefined;
}

/** --nats flag > TOPO_NATS_URL > .topo/run.json in cwd or a parent > error. */
export function resolveNatsUrl(opts: { flag?: string | undefined; cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  if (opts.flag) return opts.flag;
  const fromEnv = (opts.env ?? process.env).TOPO_NATS_URL;
  if (fromEnv) return fromEnv;
  const dir = findTopologyDir(opts.cwd ?? process.cwd());
  if (dir) {
    const info = readRunInfo(dir);
    if (info) return info.natsUrl;
  }
  throw new Error(NO_TOPOLOGY_MESSAGE);
}
