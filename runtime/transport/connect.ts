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
