/** What every verb module shares: the Io and Verb types, and connecting to the topology. */
import { relative } from 'node:path';
import { TopoClient, resolveNatsCreds, resolveNatsUrl } from '../client/index.js';
import type { TlsFiles } from '../transport/connect.js';
import { NotFoundError } from '../../protocol/index.js';
import { stringOption, type ParsedArgs, type VerbSpec } from './args.js';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Aborted on Ctrl-C: long-running verbs stop cleanly. */
  signal: AbortSignal;
}

export interface Verb extends VerbSpec {
  run(args: ParsedArgs, io: Io): Promise<number>;
}

export interface ConnectionArgs {
  url: string;
  /** Credentials file, or undefined: anonymous. */
  creds: string | undefined;
  tls: TlsFiles | undefined;
}

/**
 * Where and how to connect, from the connection options (args.ts):
 * --nats / $TOPO_NATS_URL / .topo/run.json; --creds / $TOPO_NATS_CREDS / the
 * admin creds run.json points to; --tls-* / $TOPO_NATS_TLS_*.
 */
export function connectionArgs(args: ParsedArgs): ConnectionArgs {
  const url = resolveNatsUrl({ flag: stringOption(args.values, 'nats') });
  const creds = resolveNatsCreds(url, { flag: stringOption(args.values, 'creds') });
  const files = { ca: stringOption(args.values, 'tls-ca'), cert: stringOption(args.values, 'tls-cert'), key: stringOption(args.values, 'tls-key') };
  const given = Object.fromEntries(Object.entries(files).filter(([, v]) => v !== undefined)) as TlsFiles;
  return { url, creds, tls: Object.keys(given).length ? given : undefined };
}

/** Connects with connectionArgs(args). */
export function connectClient(args: ParsedArgs): Promise<TopoClient> {
  const c = connectionArgs(args);
  return TopoClient.connect(c.url, { name: 'topo-cli', creds: c.creds, tls: c.tls });
}

/** Connects to the topology named by the connection options (connectionArgs), runs `fn`, closes. */
export async function withClient<T>(args: ParsedArgs, fn: (client: TopoClient) => Promise<T>): Promise<T> {
  const client = await connectClient(args);
  try {
    return await fn(client);
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** A path relative to the current folder when it is below it, else absolute. */
export function shortPath(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
}

export const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((r) => {
    const t = setTimeout(r, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
  });

/**
 * Fails (exit 1) when no computation `name` is deployed and none was ever
 * deployed (no history), naming the deployed ones. A computation that was
 * killed still has its logs and dead letters, so it passes. When the
 * controller does not answer, nothing can be told: it passes too.
 */
export async function checkKnownComputation(client: TopoClient, name: string): Promise<void> {
  const status = await client.status({ timeoutMs: 5_000 }).catch(() => undefined);
  if (!status || status.computations.some((c) => c.name === name)) return;
  const history = await client.historyIfAnswered(name, 5_000).catch(() => undefined);
  if (history === undefined || history.length > 0) return;
  const names = status.computations.map((c) => c.name).sort();
  throw new NotFoundError(
    `no computation named "${name}" is deployed or was ever deployed (${names.length ? `deployed: ${names.join(', ')}` : 'none is deployed'}; \`topo status\` lists them)`,
  );
}

/**
 * Why nothing will appear on `stream`, when no deployed computation declares
 * it as an ostream (a message naming the streams that exist), else undefined.
 * Undefined as well when the controller does not answer.
 */
export async function unproducedStream(client: TopoClient, stream: string): Promise<string | undefined> {
  const status = await client.status({ timeoutMs: 5_000 }).catch(() => undefined);
  if (!status || status.computations.some((c) => c.ostreams.includes(stream))) return undefined;
  const streams = new Set<string>();
  for (const c of status.computations) {
    for (const o of c.ostreams) streams.add(o);
    for (const i of c.istreams) streams.add(i.stream);
  }
  const readers = status.computations.filter((c) => c.istreams.some((i) => i.stream === stream)).map((c) => c.name);
  return (
    `nothing produces "${stream}": no deployed computation declares it as an ostream` +
    (readers.length ? ` (read by ${readers.join(', ')})` : '') +
    `; streams: ${streams.size ? [...streams].sort().join(', ') : 'none (nothing is deployed)'}. ` +
    'Waiting anyway: records appear once a producer is deployed.'
  );
}

/** Local wall-clock time, HH:MM:SS. */
export const clockTime = (d: Date): string => d.toTimeString().slice(0, 8);

/**
 * Runs `fn`; a "computation ... is not deployed" answer from the controller
 * gets the names of the deployed computations added, so a typo shows what was meant.
 */
export async function namingDeployed<T>(client: TopoClient, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof NotFoundError) || !/is not deployed/.test(err.message)) throw err;
    const status = await client.status({ timeoutMs: 5_000 }).catch(() => undefined);
    if (!status) throw err;
    const names = status.computations.map((c) => c.name).sort();
    throw new NotFoundError(`${err.message} (${names.length ? `deployed: ${names.join(', ')}` : 'none is deployed'}; \`topo status\` lists them)`, { cause: err });
  }
}
