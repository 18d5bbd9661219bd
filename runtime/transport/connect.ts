/** One place that opens NATS connections, so every process names itself and retries alike. */
import { connect, type NatsConnection } from '@nats-io/transport-node';

export interface ConnectOptions {
  /** Shown in `nats server report connections`, e.g. "topo-worker w-1". */
  name: string;
  /** Give up after this long when the server is not there (ms). */
  timeoutMs?: number;
}

export async function connectNats(url: string, opts: ConnectOptions): Promise<NatsConnection> {
  try {
    return await connect({
      servers: url.split(','),
      name: opts.name,
      timeout: opts.timeoutMs ?? 5_000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // Large batches: keep well under the server's default 1 MiB max_payload.
      pingInterval: 10_000,
    });
  } catch (err) {
    throw new Error(`cannot connect to NATS at ${url}: ${(err as Error).message}. Is it running? Start one with \`topo up\` or pass --nats URL.`, { cause: err });
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
