/**
 * The edges of an instance: where its input comes from (an Inlet) and where
 * its output goes (an Outlet per ostream), built by an EdgeFactory. The
 * instance's serial loop sees only these interfaces, so the same loop runs
 * over core NATS (natsEdges, today's wire: subjects per partition, queue
 * groups, credit flow control) and over in-process edges (fusion: records
 * handed over by direct calls, no serialization, no NATS hop).
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { packr, schemas, subjects, type Assignment, type Batch, type Credit } from '../../protocol/index.js';
import { StreamProducer, type ProducerOptions } from './producer.js';
import type { TopologyView } from './topology.js';

/** One unit of input taken from an edge: a batch, raw (from the wire) or already decoded (in-process). */
export interface Inbound {
  /** The encoded batch as it arrived on a subject. */
  data?: Uint8Array;
  /** A batch handed over in-process (no bytes): owes no credit. */
  batch?: Batch;
  stream: string;
  /** Partition of the subject it came on (routes replayed input after a rollback). */
  partition: number;
  /** In-process input: called with the number of records once they are processed (the in-process credit). */
  done?: (records: number) => void;
  /**
   * At-least-once input (a JetStream message): its stream sequence, and the ack that
   * acknowledges it and everything before it on its consumer (ack policy "all").
   */
  js?: { seq: number; ack?: () => void };
}

/** An item as it may cross a process (a snapshot's pending input, a hand-back): without its ack. */
export function portable(item: Inbound): Inbound {
  if (!item.js) return item;
  return { ...item, js: { seq: item.js.seq } };
}

/** The output side of one instance on one stream. */
export interface Outlet {
  readonly stream: string;
  produce(key: string, value: unknown, traceId?: string): void;
  /** Hold output (a pause): nothing is delivered until release(). */
  hold(): void;
  release(): void;
  readonly isHeld: boolean;
  /** Drops held output (a rolled-back probation: another instance redoes this work). */
  discard(): void;
  /** Delivers what may go out now (`force`: ignoring the credit window); true when nothing is left. */
  flush(force?: boolean): boolean;
  /** True while the instance must stop taking input (credit window, or a full pause buffer). */
  isBlocked(): boolean;
  /** The fence: sequence of the last record delivered on this stream. */
  readonly lastPublishedSeq: number;
  /** Per partition subject published to: the sequence of the last record published there. */
  readonly partitionFences: Record<string, number>;
  /** Per partition subject published to: how long ago (ms) that last record was published. */
  readonly partitionAgesMs: Record<string, number>;
  /** Records waiting in this outlet. */
  readonly pending: number;
  /** A consumer group acknowledged `n` records. */
  credit(group: string, n: number): void;
  /** Called every second: a consumer group that stopped crediting is presumed gone. */
  checkStall(now: number): void;
  /** The sequence of the last record produced (a checkpoint keeps it). */
  readonly producedSeq: number;
  /** Records produced onto this outlet since it opened (metrics). */
  readonly produced: number;
  /** How long (ms, since it opened) output waited for a consumer's credit: the edge's credit stall. */
  readonly creditStallMs: number;
  /** Continues a predecessor's sequence (a restart from a checkpoint). */
  restoreSeq(seq: number): void;
  /** Resolves once every record up to `seq` is stored (at once on at-most-once streams). */
  durableUpTo(seq: number): Promise<void>;
  /** Sends everything pending, ignoring the credit window, and resolves once it is out. */
  settle(): Promise<void>;
  close(): void;
}

/** The input side: subscriptions (or in-process bindings) that feed one instance. */
export interface Inlet {
  open(): void;
  close(): void;
}

export interface OutletOptions {
  producerId: string;
  /** Where an at-least-once stream's batches go (runtime/worker/jetstream.ts). */
  sender?: ProducerOptions['sender'];
  /** Consumer groups that owe this outlet no credit (served in-process). */
  exclude?: ReadonlySet<string>;
  window?: number;
  onUnblocked: () => void;
  onStallReset: (group: string, owed: number) => void;
}

export interface EdgeFactory {
  outlet(stream: string, o: OutletOptions): Outlet;
  /** Input of `a` on the given partitions of its key-grouped (or canary) istreams. */
  inlet(a: Assignment, partitions: readonly number[], onItem: (item: Inbound) => void): Inlet;
  /** Credits for this producer: valid ones go to `onCredit`, garbage to `onMalformed`. */
  listenCredits(producerId: string, onCredit: (c: Credit) => void, onMalformed: () => void): { close(): void };
  /** Returns credit to a producer. */
  sendCredit(producer: string, group: string, n: number): void;
}

/** Today's edges: core NATS subjects, queue groups and credit messages (PROTOCOL.md). */
export function natsEdges(nc: NatsConnection, view: TopologyView): EdgeFactory {
  return {
    outlet: (stream, o) => new StreamProducer({ nc, stream, view, ...o }),
    inlet: (a, partitions, onItem) => new NatsInlet(nc, a, partitions, onItem),
    listenCredits(producerId, onCredit, onMalformed) {
      const sub = nc.subscribe(subjects.credit(producerId), {
        callback: (err, msg) => {
          if (err) return;
          // Garbage on the credit subject (not msgpack, NaN, negative or huge n) is counted and ignored:
          // it must never turn flow control off or stall a producer.
          let raw: unknown;
          try {
            raw = packr.unpack(msg.data);
          } catch {
            raw = undefined;
          }
          const r = schemas.credit.safeParse(raw);
          if (r.success) onCredit(r.data);
          // (n = 0 is what an empty batch is owed: pointless, not garbage.)
          else if ((raw as { n?: unknown } | undefined)?.n !== 0) onMalformed();
        },
      });
      return { close: () => sub.unsubscribe() };
    },
    sendCredit(producer, group, n) {
      const credit: Credit = { g: group, n };
      nc.publish(subjects.credit(producer), packr.pack(credit));
    },
  };
}

/** Subscriptions per grouping: key -> one subject per owned partition; broadcast -> all; shuffle -> a queue group. */
class NatsInlet implements Inlet {
  private readonly subs: Subscription[] = [];

  constructor(
    private readonly nc: NatsConnection,
    private readonly a: Assignment,
    private readonly partitions: readonly number[],
    private readonly onItem: (item: Inbound) => void,
  ) {}

  open(): void {
    const a = this.a;
    for (const { stream, grouping } of a.metadata.istreams) {
      const onMsg = (err: Error | null, msg: { data: Uint8Array; subject: string }) => {
        if (err) return;
        const s = msg.subject;
        this.onItem({ data: msg.data, stream, partition: Number(s.slice(s.lastIndexOf('.') + 1)) });
      };
      const sub = (subject: string, queue?: string) => this.subs.push(this.nc.subscribe(subject, { callback: onMsg, ...(queue ? { queue } : {}) }));
      if (grouping === 'key') for (const p of this.partitions) sub(subjects.data(stream, p));
      else if (grouping === 'broadcast') sub(subjects.dataAll(stream));
      else if (a.partitions) for (const p of a.partitions) sub(subjects.data(stream, p), a.computation);
      else sub(subjects.dataAll(stream), a.computation);
    }
  }

  close(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs.length = 0;
  }
}
