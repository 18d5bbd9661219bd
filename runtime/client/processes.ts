/** Small helpers to watch and stop OS processes by pid (ours or from a run.json). */
import { existsSync, readFileSync, statSync, openSync, readSync, closeSync } from 'node:fs';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** True while `pid` runs (a zombie counts as gone). */
export function isAlive(pid: number | undefined): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name, is the state.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/**
 * True when `pid` still looks like the process we started (its command line
 * mentions `marker`). Guards against signalling an unrelated process that got
 * a recycled pid. Without /proc we cannot tell and trust the pid.
 */
export function looksLike(pid: number, marker: string): boolean {
  const file = `/proc/${pid}/cmdline`;
  if (!existsSync(file)) return true;
  try {
    return readFileSync(file, 'utf8').includes(marker);
  } catch {
    return true;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** SIGTERM (or `sig`), then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function terminatePid(pid: number, opts: { graceMs?: number; signal?: NodeJS.Signals } = {}): Promise<void> {
  if (!isAlive(pid)) return;
  signal(pid, opts.signal ?? 'SIGTERM');
  const deadline = Date.now() + (opts.graceMs ?? 5_000);
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      signal(pid, 'SIGKILL');
      const hard = Date.now() + 2_000;
      while (isAlive(pid) && Date.now() < hard) await sleep(25);
      return;
    }
    await sleep(25);
  }
}

/** The last `lines` lines of a (log) file, or '' when it does not exist. */
export function tailFile(file: string, lines = 15, maxBytes = 16_384): string {
  if (!existsSync(file)) return '';
  const size = statSync(file).size;
  const start = Math.max(0, size - maxBytes);
  const buf = Buffer.alloc(size - start);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, buf.length, start);
  } finally {
    closeSync(fd);
  }
  return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * Node flags of the controller process. It is off the data path, but a flood
 * of garbage on its subjects makes V8 grow the young generation to its 16 MB
 * default semi-spaces (about +50% RSS for a retained heap that stays flat);
 * 1 MB semi-spaces keep its memory within bounds at no cost that matters for
 * a control plane. Workers keep the default: their record loop allocates a lot.
 */
export const CONTROLLER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/** The node arguments that start a runtime process. */
export function runtimeNodeArgs(kind: 'controller' | 'worker', script: string, args: readonly string[]): string[] {
  return [...(kind === 'controller' ? CONTROLLER_NODE_FLAGS : []), script, ...args];
}
