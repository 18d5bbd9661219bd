/**
 * `node dist/supervisor.mjs --dir DIR --workers N (--nats-port P [--nats-monitor-port M] [--no-auth] | --nats URL)`:
 * started detached by `topo up`; see supervisor.ts. Logs to DIR/logs/supervisor.log
 * (its stdout). SIGTERM/SIGINT stop the topology and this process; SIGUSR2 starts
 * at once what waits in backoff or cool-down (`topo up` sends it).
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Supervisor, settingsFromEnv } from './supervisor.js';
import { authDirOf, ensureLocalAuth } from '../transport/auth.js';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, workers: { type: 'string' }, nats: { type: 'string' }, 'nats-port': { type: 'string' }, 'nats-monitor-port': { type: 'string' }, 'no-auth': { type: 'boolean' } },
});
const log = (msg: string): void => void process.stdout.write(`${new Date().toISOString()} topo-supervisor: ${msg}\n`);
const workers = Number(values.workers ?? '2');
if (!values.dir || !Number.isInteger(workers) || workers < 1 || (!values.nats && !values['nats-port'])) {
  process.stderr.write('usage: supervisor.mjs --dir DIR --workers N (--nats-port P | --nats URL)\n');
  process.exit(2);
}
// The server it runs has auth on unless --no-auth: keys and creds in DIR/auth (made once, reused).
let auth: { serverConfig: string; adminCreds: string; workerCreds: Record<string, string> } | undefined;
if (!values.nats && !values['no-auth']) {
  const local = await ensureLocalAuth(authDirOf(values.dir));
  const workerCreds: Record<string, string> = {};
  for (let n = 1; n <= workers; n++) workerCreds[`w-${n}`] = await local.workerCreds(`w-${n}`);
  auth = { serverConfig: local.serverConfig, adminCreds: local.adminCreds, workerCreds };
}
const sup = new Supervisor({
  dir: values.dir,
  workers,
  ...(auth ? { auth } : {}),
  ...(values.nats ? { natsUrl: values.nats } : { natsPort: Number(values['nats-port']) }),
  ...(values['nats-monitor-port'] && !values.nats ? { natsMonitorPort: Number(values['nats-monitor-port']) } : {}),
  distDir: dirname(fileURLToPath(import.meta.url)),
  settings: settingsFromEnv(),
  log,
});
let stopping = false;
const stop = (sig: string): void => {
  if (stopping) return;
  stopping = true;
  log(`received ${sig}: stopping every process`);
  sup.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      log(`stop failed: ${(err as Error).message}`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGHUP', () => undefined);
process.on('SIGUSR2', () => void sup.startMissing().catch((err: unknown) => log(`start of missing processes failed: ${(err as Error).message}`)));
if (sup.adopted.length) log(`adopted running processes: ${sup.adopted.join(', ')}`);
await sup.start();
log('supervising');
