/**
 * The audit of the at-least-once fixtures (test/fixtures/alo-lib.ts): every tick gives each key one
 * record, so a count that is not its record's tick is a loss or a double count, and a tick missing at
 * the output is a loss. Used by test/at-least-once.test.ts and the chaos run (bench/chaos/durable.ts).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { atLeastOnceNames, decodeBatch, subjects } from '../protocol/index.js';
import type { CountValue } from './fixtures/alo-lib.js';
import { waitFor } from './harness.js';

export interface Out extends CountValue {
  key: string;
  producer: string;
}


/** What the output says: records whose count is not their tick (a loss or a double count), missing ticks, duplicates. */
export function exactness(out: readonly Out[]) {
  const ticks = new Map<string, Set<number>>();
  let wrong = 0;
  let duplicates = 0;
  const examples: string[] = [];
  for (const o of out) {
    if (o.count !== o.tick) {
      wrong++;
      if (examples.length < 5) examples.push(`${o.key}: tick ${o.tick} counted as ${o.count}`);
    }
    let s = ticks.get(o.key);
    if (!s) ticks.set(o.key, (s = new Set()));
    if (s.has(o.tick)) duplicates++;
    s.add(o.tick);
  }
  let missing = 0;
  let minMax = Infinity;
  for (const s of ticks.values()) {
    const max = Math.max(...s);
    minMax = Math.min(minMax, max);
    for (let t = 1; t <= max; t++) if (!s.has(t)) missing++;
  }
  return { keys: ticks.size, wrong, missing, duplicates, minMax, examples };
}


/**
 * A reader of an at-least-once stream as stored in JetStream (not a tap: a core subscriber misses what is
 * published while its own connection is down, e.g. across a nats-server restart). Its durable consumer
 * keeps the stream's messages (interest retention) until read; duplicates of a (producer, sequence) are dropped
 * and counted in `duplicates` (records stored twice: produced again after a restart, in a batch of another message id).
 */
export async function storedReader(nc: NatsConnection, stream: string): Promise<{ read(): Promise<Out[]>; duplicates: number }> {
  const name = atLeastOnceNames.stream(stream);
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.add(name, { durable_name: 'test-audit', ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, filter_subject: subjects.dataAll(stream) });
  const reader = {
    duplicates: 0,
    async read() {
      const c = await jetstream(nc).consumers.get(name, 'test-audit');
      const out: Out[] = [];
      const seen = new Set<string>();
      for (;;) {
        const pending = (await c.info()).num_pending;
        if (pending === 0) break;
        const batch = await c.fetch({ max_messages: Math.min(pending, 1_000), expires: 2_000 });
        for await (const m of batch) {
          const b = decodeBatch(m.data);
          for (const [key, value, , seq] of b.recs) {
            const id = `${b.src} ${seq}`;
            if (seen.has(id)) {
              reader.duplicates++;
              continue;
            }
            seen.add(id);
            out.push({ key, producer: b.src, ...(value as CountValue) });
          }
        }
      }
      return out;
    },
  };
  return reader;
}

/** Resolves once `records` stopped growing for one `intervalMs` (the source killed, everything published has arrived). */
export async function untilSettled(records: { length: number }, what = 'output settled', timeoutMs = 30_000, intervalMs = 1_000): Promise<void> {
  let last = -1;
  await waitFor(() => {
    const n = records.length;
    const stable = n === last;
    last = n;
    return stable;
  }, { what, timeoutMs, intervalMs });
}
