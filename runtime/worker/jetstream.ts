/**
 * The at-least-once edge (PROTOCOL.md, "Delivery"): a stream declared
 * at-least-once lives in a JetStream stream (`TOPO_DATA_<stream>`, subjects
 * `topo.data.<stream>.*`, created by the controller), behind the same
 * Inlet/Outlet seam as core NATS, so the instance loop, swaps and scaling do
 * not change.
 *
 * - Output: batches are published with `Nats-Msg-Id` = producer:stream:first-last
 *   sequence, one batch in flight per partition, retried until stored. The
 *   server drops a retried publish that was stored already (within its
 *   duplicate window), and nothing of a partition overtakes an earlier batch,
 *   so consumers see each producer's records of a partition in order.
 * - Input: one durable pull consumer per partition and consumer group, ack
 *   policy "all", acked by the instance only once its checkpoint holds what
 *   the messages caused (runtime/worker/instance.ts). MaxAckPending bounds
 *   what is delivered and not yet checkpointed: flow control on top of the
 *   credits. Each opening makes a consumer of its own starting after the
 *   group's acknowledged floor, then deletes the group's older consumers of
 *   that partition: the messages past the floor are never without an
 *   interested consumer, and whoever had them before (a dead worker, the old
 *   version of a swap) gives them up at once instead of after an ack wait.
 *
 * Core subscribers of the subjects (taps, bridges, computations on at-most-once
 * semantics) still see every record: a JetStream publish is a NATS publish.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JetStreamClient, type JetStreamManager,
} from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { atLeastOnceNames, subjects, type Assignment, type NormalizedMetadata } from '../../protocol/index.js';
import type { EdgeFactory, Inbound, Inlet } from './edges.js';
import type { BatchSender } from './producer.js';
import { groupIdOf, type TopologyView } from './topology.js';

/** Messages delivered and not yet acknowledged, per partition consumer: a checkpoint's worth and more. */
export const MAX_ACK_PENDING = 20_000;
/** Unacknowledged messages are redelivered after this long: far beyond a checkpoint interval. */
const ACK_WAIT_MS = 60_000;
const PUBLISH_TIMEOUT_MS = 5_000;
const RETRY_MAX_MS = 2_000;
/** Pull requests per consumer: messages asked for at a time. */
const PULL_BATCH = 256;

const nanos = (ms: number): number => ms * 1_000_000;

/** Counters an at-least-once edge reports (instance metrics). */
export interface DeliveryCounters {
  /** Publishes retried (timeouts, a server restart). */
  publishRetries: number;
}

/** Per outlet: one JetStream publish in flight per partition, retried with the same message id until stored. */
export class JetStreamSender implements BatchSender {
  private readonly inflight: ({ first: number; last: number } | undefined)[] = [];
  private closed = false;
  private waiters: (() => void)[] = [];
  private problemLoggedAt = -Infinity;

  constructor(
    private readonly js: JetStreamClient,
    private readonly producerId: () => string,
    private readonly stream: string,
    private readonly onSent: (partition: number) => void,
    private readonly log: Logger,
    private readonly counters: DeliveryCounters,
  ) {}

  idle(partition: number): boolean {
    return this.inflight[partition] === undefined;
  }

  lowestInFlight(): number {
    let low = Infinity;
    for (const f of this.inflight) if (f && f.first < low) low = f.first;
    return low;
  }

  send(partition: number, subject: string, bytes: Uint8Array, firstSeq: number, lastSeq: number): void {
    this.inflight[partition] = { first: firstSeq, last: lastSeq };
    void this.publish(partition, subject, bytes, `${this.producerId()}:${this.stream}:${firstSeq}-${lastSeq}`);
  }

  private async publish(partition: number, subject: string, bytes: Uint8Array, msgID: string): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.js.publish(subject, bytes, { msgID, timeout: PUBLISH_TIMEOUT_MS });
        break;
      } catch (err) {
        if (this.closed) break;
        this.counters.publishRetries++;
        const now = Date.now();
        if (now - this.problemLoggedAt > 5_000) {
          this.problemLoggedAt = now;
          this.log.warn({ stream: this.stream, subject, err: (err as Error).message }, `at-least-once publish on "${this.stream}" not stored yet (${(err as Error).message}); retrying until it is`);
        }
        await new Promise((r) => setTimeout(r, Math.min(RETRY_MAX_MS, 50 * 2 ** Math.min(attempt, 6))));
      }
    }
    this.inflight[partition] = undefined;
    if (this.inflight.every((f) => f === undefined)) {
      const w = this.waiters;
      this.waiters = [];
      for (const r of w) r();
    }
    if (!this.closed) this.onSent(partition);
  }

  settled(): Promise<void> {
    if (this.inflight.every((f) => f === undefined)) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  close(): void {
    this.closed = true;
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}

/** Partitions an instance reads of an istream: key-grouped and shuffle by ownership (at-least-once shuffle is partitioned too), broadcast all. */
function partitionsRead(grouping: string, owned: readonly number[]): readonly number[] {
  if (grouping === 'broadcast') return Array.from({ length: 32 }, (_, i) => i);
  return owned;
}

/** The consumers of one instance on its at-least-once istreams. */
class JetStreamInlet implements Inlet {
  private readonly running: ConsumerMessages[] = [];
  private opening: Promise<void> | undefined;
  private generation = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: Promise<JetStreamManager>,
    private readonly a: Assignment,
    private readonly streams: { stream: string; grouping: string }[],
    private readonly partitions: readonly number[],
    private readonly onItem: (item: Inbound) => void,
    private readonly log: Logger,
  ) {}

  open(): void {
    const gen = ++this.generation;
    this.opening = this.openAll(gen).catch((err: unknown) => {
      this.log.error({ err: (err as Error).message }, `could not open the at-least-once consumers of "${this.a.computation}": ${(err as Error).message}`);
    });
  }

  /** Resolves once every consumer is consuming (or failed to): an instance waits for it before it counts as started. */
  get ready(): Promise<void> {
    return this.opening ?? Promise.resolve();
  }

  private async openAll(gen: number): Promise<void> {
    const jsm = await this.jsm;
    // A name of its own per opening: a reinstated instance (a rolled-back swap) must not share a consumer with
    // its earlier self, which the new version's opening may still be deleting.
    const incarnation = Math.random().toString(36).slice(2, 10);
    for (const { stream, grouping } of this.streams) {
      const group = groupIdOf(this.a.computation, grouping, this.a.index);
      const name = atLeastOnceNames.stream(stream);
      const existing = new Map<string, { name: string; floor: number }[]>();
      for await (const ci of jsm.consumers.list(name)) {
        const m = /_p(\d+)_[a-z0-9]+$/.exec(ci.name);
        if (!m) continue;
        const prefix = ci.name.slice(0, ci.name.length - m[0].length) + `_p${m[1]}_`;
        const list = existing.get(prefix) ?? [];
        list.push({ name: ci.name, floor: ci.ack_floor.stream_seq });
        existing.set(prefix, list);
      }
      await Promise.all(partitionsRead(grouping, this.partitions).map(async (p) => {
        const prefix = atLeastOnceNames.consumerPrefix(group, p);
        const older = existing.get(prefix) ?? [];
        const durable = `${prefix}${incarnation}`;
        // After the group's acknowledged floor: what a checkpoint does not hold yet. A new group starts with what is published from now on.
        const floor = older.length ? Math.max(...older.map((o) => o.floor)) : undefined;
        const info = await jsm.consumers.add(name, {
          durable_name: durable,
          filter_subject: subjects.data(stream, p),
          ack_policy: AckPolicy.All,
          ack_wait: nanos(ACK_WAIT_MS),
          max_ack_pending: MAX_ACK_PENDING,
          ...(floor !== undefined ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 } : { deliver_policy: DeliverPolicy.New }),
        });
        if (gen !== this.generation) return;
        // From the add's own reply: no second request per partition (32 of them on a restart's path).
        const consumer = this.js.consumers.getConsumerFromInfo(info);
        const messages = await consumer.consume({
          max_messages: PULL_BATCH,
          callback: (m) => {
            this.onItem({ data: m.data, stream, partition: p, js: { seq: m.seq, ack: () => m.ack() } });
          },
        });
        if (gen !== this.generation) {
          messages.stop();
          return;
        }
        this.running.push(messages);
        // The older ones go once this one consumes (off the path of a swap's pause: only their interest ends).
        void Promise.all(older.filter((o) => o.name !== durable).map((o) => jsm.consumers.delete(name, o.name).catch(() => undefined)));
      }));
    }
  }

  close(): void {
    this.generation++;
    for (const m of this.running.splice(0)) m.stop();
  }
}

/** Both at once: the at-least-once istreams through JetStream consumers, the others through the base edges. */
class SplitInlet implements Inlet {
  constructor(private readonly parts: Inlet[]) {}
  open(): void {
    for (const p of this.parts) p.open();
  }
  close(): void {
    for (const p of this.parts) p.close();
  }
  get ready(): Promise<void> {
    return Promise.all(this.parts.map((p) => (p as { ready?: Promise<void> }).ready)).then(() => undefined);
  }
}

/**
 * Edges that put at-least-once streams on JetStream and leave the others to `base`
 * (core NATS, or fused in-process edges on top of it).
 */
export function deliveryEdges(base: EdgeFactory, nc: NatsConnection, view: TopologyView, log: Logger, counters: DeliveryCounters, own: NormalizedMetadata): EdgeFactory {
  // Its own declaration counts before the topology lists it (a deploy saves desired state once its instances run).
  const atLeastOnce = (stream: string): boolean => view.isAtLeastOnce(stream) || own.delivery?.[stream] !== undefined;
  let js: JetStreamClient | undefined;
  let jsm: Promise<JetStreamManager> | undefined;
  const client = (): JetStreamClient => (js ??= jetstream(nc));
  const manager = (): Promise<JetStreamManager> => (jsm ??= jetstreamManager(nc));
  return {
    outlet(stream, o) {
      if (!atLeastOnce(stream)) return base.outlet(stream, o);
      return base.outlet(stream, {
        ...o,
        sender: (onSent) => new JetStreamSender(client(), () => o.producerId, stream, onSent, log, counters),
      });
    },
    inlet(a, partitions, onItem) {
      const fused = new Set(a.fusion?.inputs ?? []);
      const alo = a.metadata.istreams.filter((s) => atLeastOnce(s.stream) && !fused.has(s.stream));
      if (!alo.length) return base.inlet(a, partitions, onItem);
      const rest = a.metadata.istreams.filter((s) => !alo.includes(s));
      const restA: Assignment = { ...a, metadata: { ...a.metadata, istreams: rest } };
      const parts: Inlet[] = [new JetStreamInlet(client(), manager(), a, alo, a.partitions ?? partitions, onItem, log)];
      if (rest.length) parts.push(base.inlet(restA, partitions, onItem));
      return new SplitInlet(parts);
    },
    listenCredits: (producerId, onCredit, onMalformed) => base.listenCredits(producerId, onCredit, onMalformed),
    sendCredit: (producer, group, n) => base.sendCredit(producer, group, n),
  };
}
