/**
 * Raw baseline subscriber: decodes every message with msgpackr, counts the
 * records and times first to last. It learns the expected count from the
 * publisher's end marker, which NATS delivers after every data message the
 * publisher sent before it, so what is missing then is lost.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import { ackSubject, endSubject, parseRawConfig, type RunnerMessage, type SubscriberMessage } from './config.js';

const cfg = parseRawConfig(process.argv[2]);
const packr = new Packr({ useRecords: false });
const ackEvery = Math.max(1, Math.floor(cfg.window / 4));

let received = 0;
let messages = 0;
let firstMs = 0;
let lastMs = 0;
let nextAck = ackEvery;
let disconnects = 0;

async function watchStatus(nc: NatsConnection): Promise<void> {
  for await (const s of nc.status()) if (s.type === 'disconnect') disconnects++;
}

async function main(): Promise<void> {
  const nc = await connect({ servers: cfg.url, name: `bench-raw-sub-${cfg.mode}` });
  void watchStatus(nc);
  const ack = ackSubject(cfg.subject);
  const batched = cfg.mode === 'batched';
  nc.subscribe(cfg.subject, {
    callback: (_err, msg) => {
      const now = performance.now();
      if (messages++ === 0) firstMs = now;
      lastMs = now;
      const decoded = packr.unpack(msg.data) as unknown[];
      received += batched ? decoded.length : 1;
      if (cfg.window > 0 && received >= nextAck) {
        nc.publish(ack, String(received));
        nextAck = received + ackEvery;
      }
    },
  });
  const finish = (expected: number): void => {
    const done: SubscriberMessage = { type: 'done', received, expected, messages, firstMs, lastMs, disconnects };
    process.send?.(done, () => {
      void nc.close().then(() => process.exit(0));
    });
  };
  nc.subscribe(endSubject(cfg.subject), { max: 1, callback: (_err, msg) => finish(Number(msg.string())) });
  // The end marker itself can be lost (slow-consumer disconnect): then the runner asks.
  process.on('message', (m: RunnerMessage) => {
    if (m.type === 'report') finish(m.expected);
  });
  await nc.flush();
  process.send?.({ type: 'ready' } satisfies SubscriberMessage);
}

main().catch((err: unknown) => {
  console.error(`raw subscriber: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
