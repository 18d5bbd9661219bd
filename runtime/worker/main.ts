/**
 * Worker process entry: `node dist/worker.mjs --nats URL [--creds FILE] [--tls-ca FILE]
 * [--tls-cert FILE --tls-key FILE] [--id ID] [--host NAME] [--data-dir DIR]`
 * (or TOPO_NATS_URL, TOPO_NATS_CREDS, TOPO_NATS_TLS_CA/CERT/KEY).
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { connectNats } from '../transport/connect.js';
import { instanceInboxPrefix, workerInboxPrefix } from '../../protocol/permissions.js';
import { processLogger } from '../log.js';
import { Worker } from './worker.js';
import { startWatchdog, stuckThresholdFromEnv } from './watchdog.js';
import { parseTraceSample } from '../../protocol/trace.js';

const { values } = parseArgs({
  options: {
    nats: { type: 'string' },
    id: { type: 'string' },
    'data-dir': { type: 'string' },
    window: { type: 'string' },
    'stuck-ms': { type: 'string' },
    host: { type: 'string' },
    creds: { type: 'string' },
    'tls-ca': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
  },
});

const url = values.nats ?? process.env.TOPO_NATS_URL;
if (!url) {
  console.error('topo worker: no NATS URL: pass --nats URL or set TOPO_NATS_URL');
  process.exit(2);
}
const workerId = values.id ?? `w-${hostname()}-${process.pid}`;
if (!/^[A-Za-z0-9_-]+$/.test(workerId)) {
  console.error(`topo worker: --id "${workerId}" must contain only letters, digits, "_" or "-"`);
  process.exit(2);
}
const log = processLogger('topo-worker', { worker: workerId });
const dataDir = values['data-dir'] ?? `.topo/worker-${workerId}`;
let stuckMs: number;
try {
  stuckMs = values['stuck-ms'] !== undefined ? stuckThresholdFromEnv({ TOPO_STUCK_MS: values['stuck-ms'] }) : stuckThresholdFromEnv();
} catch (err) {
  console.error(`topo worker: ${(err as Error).message.replace('TOPO_STUCK_MS', values['stuck-ms'] !== undefined ? '--stuck-ms' : 'TOPO_STUCK_MS')}`);
  process.exit(2);
}
let traceSample: number;
try {
  traceSample = parseTraceSample(process.env.TOPO_TRACE_SAMPLE);
} catch (err) {
  console.error(`topo worker: ${(err as Error).message}`);
  process.exit(2);
}
mkdirSync(dataDir, { recursive: true });
// Before anything runs a callback: a synchronous hang anywhere after this is reported and ends this process.
const creds = values.creds ?? (process.env.TOPO_NATS_CREDS || undefined);
const tls = values['tls-ca'] || values['tls-cert'] || values['tls-key']
  ? { ...(values['tls-ca'] ? { ca: values['tls-ca'] } : {}), ...(values['tls-cert'] ? { cert: values['tls-cert'] } : {}), ...(values['tls-key'] ? { key: values['tls-key'] } : {}) }
  : undefined;
let watchdog: ReturnType<typeof startWatchdog>;
try {
  watchdog = startWatchdog({ workerId, natsUrl: url, dataDir, thresholdMs: stuckMs, credsFile: creds });
} catch (err) {
  console.error(`topo worker: ${(err as Error).message}`);
  process.exit(2);
}
if (watchdog) log.info({ stuckMs: watchdog.thresholdMs }, `stuck-callback watchdog on: a callback blocking the event loop for ${watchdog.thresholdMs} ms restarts this worker`);
let nc: Awaited<ReturnType<typeof connectNats>>;
try {
  nc = await connectNats(url, {
    name: `topo-worker ${workerId}`,
    creds,
    tls,
    inboxPrefix: workerInboxPrefix(workerId),
    // Long-lived: a slow start on a loaded machine (signing the server's nonce included) is no reason to give up.
    timeoutMs: 15_000,
    // A refused publish or subscribe (NATS permissions) would otherwise be silent.
    onAsyncError: (err) => log.error({ err }, `NATS refused: ${err.message}`),
  });
} catch (err) {
  console.error(`topo worker: ${(err as Error).message}`);
  process.exit(1);
}
const worker = new Worker({
  nc,
  // Each instance on a connection of its own, as the NATS user the controller minted for it.
  connectInstance: (instanceId, credential, onRefused) => connectNats(url, {
    name: `topo-instance ${instanceId}`, credential, tls, inboxPrefix: instanceInboxPrefix(instanceId), timeoutMs: 15_000, onAsyncError: onRefused,
  }),
  workerId,
  dataDir,
  log,
  host: values.host ?? process.env.TOPO_HOST ?? hostname(),
  ...(values.window ? { window: Number(values.window) } : {}),
  traceSample,
});

let exiting = false;
async function shutdown(code: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  await worker.stop();
  await nc.drain().catch(() => undefined);
  process.exit(code);
}
process.on('SIGTERM', () => void shutdown(0));
if (process.env.TOPO_EXIT_WITH_PARENT === '1') {
  // Started by `topo worker`: our stdin is its pipe, which closes when it exits, however it exits.
  process.stdin.on('end', () => void shutdown(0));
  process.stdin.on('error', () => void shutdown(0));
  process.stdin.resume();
}
process.on('SIGINT', () => void shutdown(0));
process.on('uncaughtException', (err) => {
  // A computation's stray async error must not take down every other instance here.
  log.error({ err }, `uncaught exception: ${err.message}`);
});
process.on('unhandledRejection', (err) => {
  log.error({ err }, `unhandled rejection: ${(err as Error)?.message ?? String(err)}`);
});

await worker.start();
void worker.stopped.then(() => shutdown(0));
