/**
 * Hand-written JetStream consumer of the durable bench (no topo code): one
 * durable pull consumer per partition (filter subject, ack policy all,
 * topo's ack wait, max ack pending and pull batch), every message decoded
 * with msgpackr and its records counted; the last message of each partition
 * is acked every `ackEveryMs` (topo acks after each checkpoint, by default
 * every second) and at the end. Times its first and its count-th record.
 */
import { connect, credsAuthenticator } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { readFileSync } from 'node:fs';
import { Packr } from 'msgpackr';
import { parseJsConfig, type JsConsumerMessage } from './js-config.js';

const cfg = parseJsConfig(process.argv[2]);
const packr = new Packr({ useRecords: false });

async function main(): Promise<void> {
  const nc = await connect({
    servers: cfg.url, name: 'bench-js-consumer', authenticator: credsAuthenticator(readFileSync(cfg.creds)), inboxPrefix: cfg.inboxPrefix,
  });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  let received = 0;
  let messages = 0;
  let firstMs = 0;
  let lastMs = 0;
  let finished = false;
  const lastOf: (JsMsg | undefined)[] = [];
  const ackAll = (): void => {
    for (let p = 0; p < lastOf.length; p++) {
      lastOf[p]?.ack();
      lastOf[p] = undefined;
    }
  };
  const acker = setInterval(ackAll, cfg.ackEveryMs);
  const finish = (): void => {
    if (finished) return;
    finished = true;
    clearInterval(acker);
    ackAll();
    void nc.flush().then(() => {
      process.send?.({ type: 'done', received, messages, firstMs, lastMs } satisfies JsConsumerMessage, () => {
        void nc.close().then(() => process.exit(0));
      });
    });
  };
  await Promise.all(Array.from({ length: cfg.partitions }, async (_, p) => {
    const name = `bench_js_p${p}`;
    await jsm.consumers.add(cfg.stream, {
      durable_name: name,
      filter_subject: `${cfg.subjectPrefix}.${p}`,
      ack_policy: AckPolicy.All,
      ack_wait: 60_000 * 1_000_000,
      max_ack_pending: cfg.maxAckPending,
      deliver_policy: DeliverPolicy.All,
    });
    const consumer = await js.consumers.get(cfg.stream, name);
    await consumer.consume({
      max_messages: cfg.pullBatch,
      callback: (m) => {
        const recs = (packr.unpack(m.data) as { recs: unknown[] }).recs;
        const now = performance.now();
        if (received === 0) firstMs = now;
        received += recs.length;
        messages++;
        lastOf[p] = m;
        if (received >= cfg.count) {
          lastMs = now;
          finish();
        }
      },
    });
  }));
  process.send?.({ type: 'ready' } satisfies JsConsumerMessage);
}

main().catch((err: unknown) => {
  console.error(`bench js consumer: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
