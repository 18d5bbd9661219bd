/** What every verb module shares: the Io and Verb types, and connecting to the topology. */
import { relative } from 'node:path';
import { TopoClient, resolveNatsUrl } from '../client/index.js';
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

/** Connects to the topology named by --nats / $TOPO_NATS_URL / .topo/run.json, runs `fn`, closes. */
export async function withClient<T>(args: ParsedArgs, fn: (client: TopoClient) => Promise<T>): Promise<T> {
  const url = resolveNatsUrl({ flag: stringOption(args.values, 'nats') });
  const client = await TopoClient.connect(url, { name: 'topo-cli' });
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
