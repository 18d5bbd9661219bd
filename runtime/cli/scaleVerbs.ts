/** The placement commands: scale (parallelism, live) and worker (a worker process joining a topology). */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { MAX_INSTANCES, PARTITIONS } from '../../protocol/index.js';
import { TopoClient, distFile, findTopologyDir, readRunInfo, swapReplyOf, type ScaleOutcome } from '../client/index.js';
import { authDirOf, openLocalAuth } from '../transport/auth.js';
import { runtimeNodeArgs } from '../client/processes.js';
import { UsageError, intOption, jsonOption, nameArg, connectionOptions, stringOption, type ParsedArgs } from './args.js';
import { connectionArgs, namingDeployed, withClient, type Io, type Verb } from './common.js';
import { toJson } from './format.js';
import { ms, renderSteps } from './swapFormat.js';

/** The instance count positional: an integer 1..MAX_INSTANCES, else a usage error. */
function instancesArg(raw: string | undefined): number {
  const text = (raw ?? '').trim();
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_INSTANCES) {
    throw new UsageError(`the number of instances must be an integer from 1 to ${MAX_INSTANCES}, got ${JSON.stringify(raw ?? '')}`, 'scale');
  }
  return n;
}

export function renderScaled(o: ScaleOutcome): string {
  if (o.result === 'unchanged') return `${o.name} already runs on ${o.instances} instance${o.instances === 1 ? '' : 's'} (v${o.version}); nothing changed`;
  const timings = (o.pauseMs !== undefined ? `; upstreams paused ${ms(o.pauseMs)}` : '') + (o.loadMs !== undefined ? `; load ${ms(o.loadMs)} (not paused)` : '');
  const byWorker = new Map<string, number[]>();
  for (const p of [...o.placements].sort((a, b) => a.index - b.index)) byWorker.set(p.workerId, [...(byWorker.get(p.workerId) ?? []), p.index]);
  return [
    `scaled ${o.name} v${o.version} from ${o.fromInstances} to ${o.instances} instance${o.instances === 1 ? '' : 's'} in ${ms(o.elapsedMs)}${timings}`,
    `  placement: ${[...byWorker].map(([w, ix]) => `${w} (instance${ix.length === 1 ? '' : 's'} ${ix.join(', ')})`).join(', ')}`,
    ...renderSteps(o.steps),
  ].join('\n');
}

export const scale: Verb = {
  name: 'scale',
  summary: 'change how many instances of a computation run, live, its keyed state moving with its keys',
  usage: ['topo scale <name> <instances> [--drain-budget MS] [--json] [--nats URL]'],
  details:
    'Runs the computation on the given number of instances without stopping it or the rest of the\n' +
    'topology, with the steps of a swap: the producers upstream are paused, the current instances\n' +
    'drain what they received and hand over their keyed state and timers, and the new instances,\n' +
    'spread over the live workers, start from it and are on probation; a failure rolls back to the\n' +
    'current instances (exit 1). Keyed state is split by the partition of its key: each new instance\n' +
    'gets the state of the keys it will receive. A computation that reads a key-grouped stream can\n' +
    `run on at most ${PARTITIONS} instances (a stream has ${PARTITIONS} key partitions). The version does not change;\n` +
    '`topo history` lists the scale. Scaling to the current number changes nothing.',
  options: [
    { name: 'drain-budget', type: 'string', value: 'MS', description: 'how long the current instances may drain their backlog before the scale is rolled back (default 30000)' },
    jsonOption,
    ...connectionOptions,
  ],
  positionals: { min: 2, max: 2, names: 'a computation name and a number of instances, e.g. `topo scale counter 4`' },
  examples: ['topo scale counter 4', 'topo scale counter 1 --json'],
  async run(args: ParsedArgs, io: Io) {
    const name = nameArg(args.positionals[0], 'computation', 'scale');
    const instances = instancesArg(args.positionals[1]);
    const drainBudgetMs = intOption(args.values, 'drain-budget', 1, 'scale');
    const json = args.values.json === true;
    return withClient(args, async (client) => {
      let outcome: ScaleOutcome;
      try {
        outcome = await namingDeployed(client, () => client.scale(name, instances, drainBudgetMs !== undefined ? { drainBudgetMs } : {}));
      } catch (err) {
        const rolledBack = swapReplyOf(err);
        if (!rolledBack) throw err;
        if (json) io.out(toJson({ ...rolledBack, result: 'rolled-back' }));
        io.err([
          `scale of ${name} to ${instances} instance${instances === 1 ? '' : 's'} ROLLED BACK: ${rolledBack.error ?? 'a new instance failed its health gate'}`,
          `${name} v${rolledBack.version} keeps running on its previous instances`,
          ...renderSteps(rolledBack.steps),
        ].join('\n'));
        return 1;
      }
      io.out(json ? toJson(outcome) : renderScaled(outcome));
      return 0;
    });
  },
};

/**
 * A worker joining the local topology found from here (its run.json at `url`,
 * its keys in `<dir>/auth`) gets a worker credential of its own, not the admin one.
 */
async function localWorkerCreds(url: string, id: string): Promise<string | undefined> {
  const dir = findTopologyDir();
  const run = dir ? readRunInfo(dir) : undefined;
  if (!dir || !run?.credsFile || run.natsUrl !== url) return undefined;
  return (await openLocalAuth(authDirOf(dir)))?.workerCreds(id);
}

/** Worker ids as the worker accepts them (and as they appear in subjects). */
const WORKER_ID = /^[A-Za-z0-9_-]{1,128}$/;

export const worker: Verb = {
  name: 'worker',
  summary: 'run a worker process in the foreground that joins a running topology',
  usage: ['topo worker [--nats URL] [--host NAME] [--id ID] [--data-dir DIR]'],
  details:
    'Starts a worker (dist/worker.mjs) attached to this terminal: it registers with the controller of\n' +
    'the topology at --nats, takes instances, and prints its log lines. The controller moves instances\n' +
    'to it, one at a time and without losing a record, until no two workers differ by more than one\n' +
    'instance. Ctrl-C (or SIGTERM) stops it cleanly; the controller then re-places its instances on the\n' +
    'other workers (their in-memory keyed state is not kept: scale or move them first to keep it).\n' +
    'Credentials: --creds, else $TOPO_NATS_CREDS, else (joining the `topo up` topology found from here)\n' +
    'a worker credential of its own made from .topo/auth: it can not deploy, kill or write KV.',
  options: [
    ...connectionOptions,
    { name: 'host', type: 'string', value: 'NAME', description: 'host name the worker reports (default: $TOPO_HOST, else this machine\'s)' },
    { name: 'id', type: 'string', value: 'ID', description: 'worker id: letters, digits, "_" or "-" (default: w-<host>-<pid>)' },
    { name: 'data-dir', type: 'string', value: 'DIR', description: 'the worker\'s data folder (default .topo/worker-<id>)' },
  ],
  positionals: { min: 0, max: 0, names: '' },
  examples: ['topo worker --nats nats://10.0.0.5:4222', 'topo worker --nats nats://10.0.0.5:4222 --host rack2-a --id w-rack2-a'],
  async run(args: ParsedArgs, io: Io) {
    const id = stringOption(args.values, 'id') ?? `w-${hostname().replace(/[^A-Za-z0-9_-]/g, '-')}-${process.pid}`;
    if (!WORKER_ID.test(id)) throw new UsageError(`--id ${JSON.stringify(id)} cannot be a worker id: at most 128 letters, digits, "_" or "-"`, 'worker');
    const host = stringOption(args.values, 'host');
    if (host !== undefined && host.trim() === '') throw new UsageError('--host needs a non-empty name', 'worker');
    const dataDir = stringOption(args.values, 'data-dir');
    const conn = connectionArgs(args);
    const url = conn.url;
    // Reach the server (and see whether a controller answers) before starting anything.
    const client = await TopoClient.connect(url, { name: 'topo-cli', creds: conn.creds, tls: conn.tls });
    const controller = await client.status({ timeoutMs: 3_000 }).then(() => true, () => false).finally(() => client.close().catch(() => undefined));
    if (!controller) io.err(`topo: warning: no controller answers on ${url} yet; the worker registers once one does`);
    const script = distFile('worker');
    if (!existsSync(script)) throw new Error(`${script} is missing: run \`node bin/build.mjs\``);
    const creds = stringOption(args.values, 'creds') ?? (process.env.TOPO_NATS_CREDS || undefined) ?? (await localWorkerCreds(url, id)) ?? conn.creds;
    const tlsArgs = Object.entries(conn.tls ?? {}).flatMap(([k, v]) => [`--tls-${k}`, String(v)]);
    const workerArgs = [
      '--nats', url, '--id', id, ...(host !== undefined ? ['--host', host] : []), ...(dataDir !== undefined ? ['--data-dir', dataDir] : []),
      ...(creds ? ['--creds', creds] : []), ...tlsArgs,
    ];
    io.err(`starting worker ${id}${host !== undefined ? ` (host ${host})` : ''} for the topology at ${url}; Ctrl-C stops it`);
    // Its stdin is a pipe from us: if this process dies, even by kill -9, the pipe closes and the worker stops cleanly instead of lingering.
    const child = spawn(process.execPath, runtimeNodeArgs('worker', script, workerArgs), {
      stdio: ['pipe', 'inherit', 'inherit'], env: { ...process.env, TOPO_EXIT_WITH_PARENT: '1' },
    });
    let stopping = false;
    const stop = (): void => {
      if (stopping || child.exitCode !== null) return;
      stopping = true;
      child.kill('SIGTERM');
    };
    io.signal.addEventListener('abort', stop, { once: true });
    if (io.signal.aborted) stop();
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c, s) => resolve({ code: c, signal: s }));
    });
    io.signal.removeEventListener('abort', stop);
    if (code === 0 || (stopping && signal === 'SIGTERM')) {
      io.err(`worker ${id} stopped`);
      return 0;
    }
    throw new Error(`worker ${id} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}`);
  },
};
