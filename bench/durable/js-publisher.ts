/**
 * Hand-written JetStream publisher of the durable bench (no topo code): the
 * records of bench/records.ts over `partitions` subjects, BATCH records per
 * message in topo's envelope shape, msgpack-encoded with msgpackr, published
 * with `js.publish` and a `Nats-Msg-Id`, one message in flight per partition
 * (retried until stored), as topo's at-least-once producer does.
 */
import { connect, credsAuthenticator } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { readFileSync } from 'node:fs';
import { Packr } from 'msgpackr';
import { benchKey, benchValue } from '../records.js';
import { parseJsConfig, type JsPublisherMessage } from './js-config.js';

const cfg = parseJsConfig(process.argv[2]);
const packr = new Packr({ useRecords: false });

async function main(): Promise<void> {
  const nc = await connect({
    servers: cfg.url, name: 'bench-js-publisher', authenticator: credsAuthenticator(readFileSync(cfg.creds)), inboxPrefix: cfg.inboxPrefix,
  });
  const js = jetstream(nc);
  let bseq = 0;
  let messages = 0;
  let retries = 0;
  // Record i goes to partition i mod partitions; each partition publishes its next batch once the last is stored.
  const partition = async (p: number): Promise<void> => {
    const subject = `${cfg.subjectPrefix}.${p}`;
    for (let i = p; i < cfg.count;) {
      const ts = Date.now();
      const recs: unknown[] = [];
      const first = i + 1;
      for (; i < cfg.count && recs.length < cfg.batch; i += cfg.partitions) recs.push([benchKey(i), benchValue(i), ts, i + 1]);
      const last = i - cfg.partitions + 1;
      const bytes = packr.pack({ v: 1, src: 'bench-js', stream: cfg.stream, bseq: ++bseq, recs });
      for (let attempt = 0; ; attempt++) {
        try {
          await js.publish(subject, bytes, { msgID: `bench-js:${first}-${last}`, timeout: 5_000 });
          break;
        } catch {
          retries++;
          await new Promise((r) => setTimeout(r, Math.min(2_000, 50 * 2 ** Math.min(attempt, 6))));
        }
      }
      messages++;
    }
  };
  await Promise.all(Array.from({ length: cfg.partitions }, (_, p) => partition(p)));
  await nc.drain();
  process.send?.({ type: 'done', sent: cfg.count, messages, retries } satisfies JsPublisherMessage);
}

main().catch((err: unknown) => {
  console.error(`bench js publisher: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
