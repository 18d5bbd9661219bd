/** One place that opens NATS connections, so every process names itself, authenticates and retries alike. */
import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, jwtAuthenticator, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';

/** Client TLS for a remote server: files in PEM. */
export interface TlsFiles {
  /** CA certificate(s) that sign the server's certificate. */
  ca?: string;
  /** Client certificate and its key, when the server asks for one (mutual TLS). */
  cert?: string;
  key?: string;
}

export interface ConnectOptions {
  /** Shown in `nats server report connections`, e.g. "topo-worker w-1". */
  name: string;
  /** Give up after this long when the server is not there (ms). */
  timeoutMs?: number;
  /** A NATS `.creds` file (user JWT and seed); default $TOPO_NATS_CREDS; none: connect anonymously. */
  creds?: string | undefined;
  /** A user held in memory instead (an instance's own, minted by the controller): takes the place of `creds`. */
  credential?: { jwt: string; seed: string };
  /** Default: $TOPO_NATS_TLS_CA, $TOPO_NATS_TLS_CERT, $TOPO_NATS_TLS_KEY. */
  tls?: TlsFiles | undefined;
  /** Prefix of this connection's reply subjects (default `_INBOX`); a worker's user may only subscribe to its own. */
  inboxPrefix?: string;
  /** Called with asynchronous errors from the server, e.g. a permission violation on publish or subscribe. */
  onAsyncError?: (err: Error) => void;
}

/** Reads a creds file, failing with one line that names it. */
export function readCredsFile(file: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new Error(`cannot read NATS credentials file ${file}: ${why} (pass --creds FILE or set TOPO_NATS_CREDS)`, { cause: err });
  }
}

/** TLS files named by the environment (each process started by topo inherits them). */
export function tlsFromEnv(env: NodeJS.ProcessEnv = process.env): TlsFiles | undefined {
  const tls: TlsFiles = {
    ...(env.TOPO_NATS_TLS_CA ? { ca: env.TOPO_NATS_TLS_CA } : {}),
    ...(env.TOPO_NATS_TLS_CERT ? { cert: env.TOPO_NATS_TLS_CERT } : {}),
    ...(env.TOPO_NATS_TLS_KEY ? { key: env.TOPO_NATS_TLS_KEY } : {}),
  };
  return Object.keys(tls).length ? tls : undefined;
}

function tlsOptions(tls: TlsFiles | undefined): NodeConnectionOptions['tls'] | undefined {
  if (!tls || (!tls.ca && !tls.cert && !tls.key)) return undefined;
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new Error('--tls-cert and --tls-key go together (a client certificate needs its key)');
  for (const [what, file] of Object.entries(tls)) {
    if (file === undefined) continue;
    try {
      readFileSync(file);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
  }
  return { ...(tls.ca ? { caFile: tls.ca } : {}), ...(tls.cert ? { certFile: tls.cert } : {}), ...(tls.key ? { keyFile: tls.key } : {}) };
}

/** True for the server's answer to missing or refused credentials. */
export function isAuthorizationError(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: string } | undefined;
  return e?.name === 'AuthorizationError' || /authori[sz]ation violation|authentication/i.test(e?.message ?? '');
}

export async function connectNats(url: string, opts: ConnectOptions): Promise<NatsConnection> {
  const credsFile = opts.credential ? undefined : opts.creds ?? (process.env.TOPO_NATS_CREDS || undefined);
  const creds = credsFile ? readCredsFile(credsFile) : undefined;
  const authenticator = opts.credential
    ? jwtAuthenticator(opts.credential.jwt, new TextEncoder().encode(opts.credential.seed))
    : creds ? credsAuthenticator(creds) : undefined;
  const tls = tlsOptions(opts.tls ?? tlsFromEnv());
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: url.split(','),
      name: opts.name,
      timeout: opts.timeoutMs ?? 5_000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // Large batches: keep well under the server's default 1 MiB max_payload.
      pingInterval: 10_000,
      ...(authenticator ? { authenticator } : {}),
      ...(tls ? { tls } : {}),
      ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
    });
  } catch (err) {
    if (isAuthorizationError(err)) {
      const what = opts.credential ? `the user minted for ${opts.name} was refused` : credsFile ? `the credentials in ${credsFile} were refused` : 'this server needs credentials';
      throw new Error(`authorization violation at ${url}: ${what}; pass --creds FILE (or set TOPO_NATS_CREDS) with a topo .creds file, e.g. .topo/auth/admin.creds`, { cause: err });
    }
    throw new Error(`cannot connect to NATS at ${url}: ${(err as Error).message}. Is it running? Start one with \`topo up\` or pass --nats URL.`, { cause: err });
  }
  if (opts.onAsyncError) void watchErrors(nc, opts.onAsyncError);
  return nc;
}

async function watchErrors(nc: NatsConnection, onError: (err: Error) => void): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === 'error') onError(s.error);
  }
}

/**
 * Calls `down` when the connection to the server is lost and `up` once it is back (nats.js
 * reconnects by itself, for ever: see maxReconnectAttempts above). Ends with the connection.
 * A server that stops answering without closing the socket is seen only once pings fail (2 x pingInterval).
 */
export function followOutages(nc: NatsConnection, on: { down(): void; up(): void }): void {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') on.down();
      else if (s.type === 'reconnect') on.up();
    }
  })().catch(() => undefined);
}
