/**
 * Raw baseline publisher: hand-written @nats-io/transport-node code, no topo.
 * Builds the same records as the topo source, encodes them with msgpackr and
 * publishes them one per message or in arrays of BATCH_SIZE.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import { BATCH_SIZE, benchKey, benchValue } from '../records.js';
import { ackSubject, endSubject, parseRawConfig, type PublisherMessage } from './config.js';

const cfg = parseRawConfig(process.argv[2]);
// The same options topo's envelope codec uses: plain msgpack, no record extension.
const packr = new Packr({ useRecords: false });
/** Records built and published between two yields to the event loop. */
const CHUNK = cfg.mode === 'batched' ? 16 * BATCH_SIZE : 4096;

let acked = 0;
let wake: (() => void) | undefined;
let disconnects = 0;

async function watchStatus(nc: NatsConnection): Promise<void> {
  for await (const s of nc.status()) if (s.type === 'disconnect') disconnects++;
}

async function main(): Promise<void> {
  const nc = await connect({ servers: cfg.url, name: `bench-raw-pub-${cfg.mode}` });
  void watchStatus(nc);
  if (cfg.window > 0) {
    nc.subscribe(ackSubject(cfg.subject), {
      callback: (_err, msg) => {
        acked = Number(msg.string());
        const w = wake;
        wake = undefined;
        w?.();
      },
    });
    await nc.flush();
  }
  let sent = 0;
  while (sent < cfg.count) {
    const end = Math.min(cfg.count, sent + CHUNK);
    const ts = Date.now();
    if (cfg.mode === 'batched') {
      for (let i = sent; i < end; i += BATCH_SIZE) {
        const n = Math.min(BATCH_SIZE, end - i);
        const recs = new Array<unknown>(n);
        for (let j = 0; j < n; j++) recs[j] = [benchKey(i + j), benchValue(i + j), ts, i + j + 1];
        nc.publish(cfg.subject, packr.pack(recs));
      }
    } else {
      for (let i = sent; i < end; i++) nc.publish(cfg.subject, packr.pack([benchKey(i), benchValue(i), ts, i + 1]));
    }
    sent = end;
    if (cfg.window > 0) {
      while (sent - acked > cfg.window) await new Promise<void>((resolve) => (wake = resolve));
      // Let the socket write what was just queued.
      await new Promise<void>((resolve) => setImmediate(resolve));
    } else {
      await nc.flush();
    }
  }
  nc.publish(endSubject(cfg.subject), String(sent));
  await nc.flush();
  await nc.close();
  const msg: PublisherMessage = { type: 'done', sent, disconnects };
  process.send?.(msg);
}

main().catch((err: unknown) => {
  console.error(`raw publisher: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
