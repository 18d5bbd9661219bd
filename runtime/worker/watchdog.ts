/**
 * Watchdog for callbacks stuck in a synchronous loop. Computations share the
 * worker's event loop, so `while (true) {}` in a callback cannot be
 * interrupted from that loop. A worker_thread can still see it: the main
 * thread bumps a counter in shared memory every `tickMs`; when the counter
 * has not moved for `thresholdMs`, the thread reports which callback the main
 * thread was in (noteCallback/noteIdle, also in shared memory), publishes a
 * StuckReport on `topo.worker.stuck.<workerId>`, writes it to
 * `<dataDir>/stuck.json` and to the log, then kills the worker process with
 * SIGKILL. The supervisor restarts it; the controller assigns its instances
 * again, without the keyed state they held in memory.
 *
 * The thread talks to NATS over a plain TCP socket (text protocol: CONNECT,
 * PUB, PING): it needs no library and works while the main thread is blocked.
 */
import { Worker as Thread } from 'node:worker_threads';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { credsParts } from '../transport/auth.js';

const LABEL_BYTES = 1024;
/** ctl: [0] tick, [1] label length, [2] 1 while in a callback. */
let ctl: Int32Array | undefined;
let since: Float64Array | undefined;
let label: Uint8Array | undefined;
let lastComputation: string | undefined;
let lastInstance: string | undefined;
let lastWhere: string | undefined;
const encoder = new TextEncoder();

/**
 * The main thread enters `where` (processRecord, processTimer, init, ...) of
 * an instance. Cheap: the label is written to shared memory only when it
 * changes. No-op when no watchdog runs in this process.
 */
export function noteCallback(computation: string, instanceId: string, where: string): void {
  if (!ctl || !since || !label) return;
  if (computation !== lastComputation || instanceId !== lastInstance || where !== lastWhere) {
    lastComputation = computation;
    lastInstance = instanceId;
    lastWhere = where;
    const { written } = encoder.encodeInto(`${computation}\n${instanceId}\n${where}`, label);
    Atomics.store(ctl, 1, written);
  }
  if (Atomics.load(ctl, 2) === 0) {
    since[0] = Date.now();
    Atomics.store(ctl, 2, 1);
  }
}

/** The main thread left the callback noted last. */
export function noteIdle(): void {
  if (ctl) Atomics.store(ctl, 2, 0);
}

export interface WatchdogOptions {
  workerId: string;
  natsUrl: string;
  /** Default 3000 ms (below the controller's 5 s lease, so the report comes before the lease expires). 0 disables. */
  thresholdMs?: number;
  /** How often the main thread ticks and the thread checks (default 100 ms). */
  tickMs?: number;
  /** Where stuck.json is written (the supervisor reads it after the kill). */
  dataDir: string;
  /** For tests: what the thread does instead of SIGKILL ('kill' default, 'none'). */
  action?: 'kill' | 'none';
  /** The worker's .creds file (default $TOPO_NATS_CREDS): the thread signs the server's nonce with it. */
  credsFile?: string | undefined;
}

export interface RunningWatchdog {
  thresholdMs: number;
  stop(): Promise<void>;
}

/** Default threshold, from TOPO_STUCK_MS (0 disables) or 3000 ms. */
export function stuckThresholdFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.TOPO_STUCK_MS;
  if (raw === undefined || raw === '') return 3_000;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`TOPO_STUCK_MS must be a number of milliseconds >= 0, got ${JSON.stringify(raw)}`);
  return n;
}

export function stuckFile(dataDir: string): string {
  return join(dataDir, 'stuck.json');
}

/** Starts the watchdog thread and the main thread's tick. */
export function startWatchdog(opts: WatchdogOptions): RunningWatchdog | undefined {
  const thresholdMs = opts.thresholdMs ?? stuckThresholdFromEnv();
  if (thresholdMs <= 0) return undefined;
  const tickMs = opts.tickMs ?? 100;
  const ctlBuf = new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT);
  const sinceBuf = new SharedArrayBuffer(Float64Array.BYTES_PER_ELEMENT);
  const labelBuf = new SharedArrayBuffer(LABEL_BYTES);
  ctl = new Int32Array(ctlBuf);
  since = new Float64Array(sinceBuf);
  label = new Uint8Array(labelBuf);
  const c = ctl;
  const tick = setInterval(() => Atomics.add(c, 0, 1), tickMs);
  tick.unref();
  const credsFile = opts.credsFile ?? (process.env.TOPO_NATS_CREDS || undefined);
  const creds = credsFile ? credsParts(readFileSync(credsFile, 'utf8')) : undefined;
  const thread = new Thread(THREAD_SOURCE, {
    eval: true,
    workerData: {
      ctl: ctlBuf, since: sinceBuf, label: labelBuf, thresholdMs, tickMs,
      natsUrl: opts.natsUrl, workerId: opts.workerId, pid: process.pid,
      subject: `topo.worker.stuck.${opts.workerId}`, stuckFile: stuckFile(opts.dataDir), action: opts.action ?? 'kill',
      jwt: creds?.jwt, seed: creds?.seed,
    },
  });
  thread.unref();
  thread.on('error', (err) => process.stderr.write(`topo worker: watchdog thread failed: ${err.message}\n`));
  return {
    thresholdMs,
    async stop() {
      clearInterval(tick);
      await thread.terminate();
    },
  };
}

/** The thread's code (CommonJS, evaluated by worker_threads; no imports from this bundle). */
const THREAD_SOURCE = String.raw`
const { workerData } = require('node:worker_threads');
const net = require('node:net');
const fs = require('node:fs');
const { thresholdMs, tickMs, natsUrl, workerId, pid, subject, stuckFile, action, jwt, seed } = workerData;
const crypto = require('node:crypto');
// ed25519 PKCS#8 DER header: the key is the 32-byte seed of the worker's creds.
const signingKey = seed ? crypto.createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(seed)]), format: 'der', type: 'pkcs8' }) : undefined;
const ctl = new Int32Array(workerData.ctl);
const since = new Float64Array(workerData.since);
const label = new Uint8Array(workerData.label);
let lastTick = Atomics.load(ctl, 0);
let movedAt = Date.now();
let fired = false;

function publish(payload, timeoutMs) {
  return new Promise((resolve) => {
    let url;
    try { url = new URL(natsUrl.includes('://') ? natsUrl : 'nats://' + natsUrl); } catch { return resolve(false); }
    const sock = net.connect({ host: url.hostname || '127.0.0.1', port: Number(url.port || 4222) });
    let buf = '';
    let sent = false;
    const done = (ok) => { clearTimeout(timer); sock.destroy(); resolve(ok); };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on('error', () => done(false));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (!sent && buf.includes('\r\n')) {
        sent = true;
        const connect = { verbose: false, pedantic: false, name: 'topo-watchdog ' + workerId, lang: 'node', version: '1' };
        if (url.username) { connect.user = decodeURIComponent(url.username); connect.pass = decodeURIComponent(url.password); }
        if (signingKey) {
          const nonce = (/"nonce":"([^"]+)"/.exec(buf) || [])[1];
          connect.jwt = jwt;
          if (nonce) connect.sig = crypto.sign(null, Buffer.from(nonce), signingKey).toString('base64url');
        }
        const body = Buffer.from(payload, 'utf8');
        sock.write('CONNECT ' + JSON.stringify(connect) + '\r\nPUB ' + subject + ' ' + body.length + '\r\n');
        sock.write(body);
        sock.write('\r\nPING\r\n');
        buf = '';
        return;
      }
      if (sent && buf.includes('PONG')) done(true);
      else if (sent && buf.includes('-ERR')) done(false);
    });
  });
}

async function fire(forMs) {
  fired = true;
  const len = Atomics.load(ctl, 1);
  const inCallback = Atomics.load(ctl, 2) === 1;
  const report = { workerId, pid, forMs, thresholdMs, at: Date.now(),
    action: action === 'kill' ? 'killing the worker process (SIGKILL); its supervisor restarts it' : 'none (test mode)' };
  if (inCallback && len > 0) {
    const [computation, instanceId, callback] = Buffer.from(label.slice(0, len)).toString('utf8').split('\n');
    Object.assign(report, { computation, instanceId, callback });
    const started = since[0];
    if (started > 0) report.forMs = Math.max(forMs, report.at - started);
  }
  const what = report.computation ? report.callback + ' of ' + report.computation + ' (' + report.instanceId + ')' : 'no callback (worker code)';
  const msg = 'event loop blocked for ' + report.forMs + ' ms (threshold ' + thresholdMs + ' ms) in ' + what + ': ' + report.action +
    '; the keyed state held in memory by the instances of this worker is lost';
  try { fs.writeSync(2, JSON.stringify({ level: 60, time: report.at, pid, name: 'topo-worker', worker: workerId, stuck: report, msg }) + '\n'); } catch {}
  try { fs.writeFileSync(stuckFile, JSON.stringify(report) + '\n'); } catch {}
  await publish(JSON.stringify(report), 1000);
  if (action === 'kill') process.kill(pid, 'SIGKILL');
}

const checkMs = Math.max(10, Math.min(tickMs, thresholdMs / 4));
let checkedAt = Date.now();
setInterval(() => {
  if (fired) return;
  const t = Atomics.load(ctl, 0);
  const now = Date.now();
  // This thread was held up too (the whole process starved of CPU, or suspended): not the main thread's fault.
  const starved = now - checkedAt > Math.max(8 * checkMs, 500);
  checkedAt = now;
  if (t !== lastTick || starved) { lastTick = t; movedAt = now; return; }
  if (now - movedAt >= thresholdMs) void fire(now - movedAt);
}, checkMs);
`;

type AnyCallback = (this: unknown, ctx: { name: string; instance: { id: string } }, a?: unknown, b?: unknown) => unknown;

function labelled(where: string, fn: AnyCallback): AnyCallback {
  return function (this: unknown, ctx, a, b) {
    noteCallback(ctx.name, ctx.instance.id, where);
    try {
      return fn.call(this, ctx, a, b);
    } finally {
      noteIdle();
    }
  };
}

/**
 * A copy of a loaded computation whose init, processTimer and destroy note
 * themselves for the watchdog (the synchronous part of each call). Returns
 * `comp` itself when no watchdog runs in this process. processRecord is noted
 * per batch by the instance's loop instead: a wrapper per record costs the
 * record path about 15% (three-stage bench).
 */
export function watchCallbacks<C extends object>(comp: C): C {
  if (!ctl) return comp;
  const c = comp as Record<string, unknown>;
  const out: Record<string | symbol, unknown> = { ...(comp as Record<string | symbol, unknown>) };
  for (const where of ['init', 'processTimer', 'destroy']) {
    const fn = c[where];
    if (typeof fn === 'function') out[where] = labelled(where, fn as AnyCallback);
  }
  return Object.freeze(out) as C;
}
