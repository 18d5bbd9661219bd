/**
 * In-process edges between the instances of a fusion group (protocol
 * Fusion): the producer's FusedOutlet hands decoded batches straight to the
 * consumer instance's queue, with no serialization and no NATS hop. The
 * consumer is found on the FusionBus by (group, index, stream), so a swap
 * can put a new consumer in place (bind) and take it away again (unbind on
 * release, abandon or stop) while the producer keeps its outlet.
 *
 * Flow control in-process is a window of records handed over and not yet
 * processed (Inbound.done is the credit). A producer with no consumer bound
 * (between a release and an adopt) keeps what it produces and reports
 * itself blocked, so its instance stops taking input: nothing is dropped.
 *
 * The stream stays observable: records also go to a NATS producer while
 * another consumer group reads the stream on NATS or a tap announces
 * interest (TapInterest). Nobody listening costs one Map lookup per batch.
 */
import {
  PROTOCOL_VERSION, type Assignment, type Batch, type Fusion, type WireRecord,
} from '../../protocol/index.js';
import type { EdgeFactory, Inbound, Inlet, Outlet, OutletOptions } from './edges.js';
import { HOLD_LIMIT, MAX_BATCH_RECORDS, StreamProducer } from './producer.js';
import type { TapInterest } from './taps.js';

/** Records handed over in-process and not yet processed, before the producer stops taking input. */
export const LOCAL_WINDOW = 8_192;

interface Binding {
  deliver(item: Inbound): void;
}

const keyOf = (group: string, index: number, stream: string) => `${group}\u0000${index}\u0000${stream}`;

/** Who consumes each fused stream in this worker, and who waits for a consumer. */
export class FusionBus {
  private readonly consumers = new Map<string, Binding>();
  private readonly producers = new Map<string, Set<FusedOutlet>>();

  bind(key: string, b: Binding): void {
    this.consumers.set(key, b);
    for (const p of this.producers.get(key) ?? []) p.consumerChanged();
  }

  unbind(key: string, b: Binding): void {
    if (this.consumers.get(key) !== b) return;
    this.consumers.delete(key);
    for (const p of this.producers.get(key) ?? []) p.consumerChanged();
  }

  consumer(key: string): Binding | undefined {
    return this.consumers.get(key);
  }

  attach(key: string, p: FusedOutlet): void {
    let set = this.producers.get(key);
    if (!set) this.producers.set(key, (set = new Set()));
    set.add(p);
  }

  detach(key: string, p: FusedOutlet): void {
    this.producers.get(key)?.delete(p);
  }
}

export class FusedOutlet implements Outlet {
  private buffer: WireRecord[] = [];
  private seq = 0;
  private bseq = 0;
  private delivered = 0;
  private outstanding = 0;
  private held = false;
  private wasBlocked = false;
  private flushQueued = false;
  produced = 0;
  /** In-process stall so far (ms; the NATS copy's is its producer's), and since when the current one lasts. */
  private stallMs = 0;
  private stallSince: number | undefined;
  private readonly key: string;

  constructor(
    readonly stream: string,
    private readonly producerId: string,
    group: string,
    index: number,
    private readonly bus: FusionBus,
    /** Publishes for other consumer groups and taps. */
    private readonly nats: StreamProducer,
    private readonly taps: TapInterest,
    private readonly onUnblocked: () => void,
  ) {
    this.key = keyOf(group, index, stream);
    bus.attach(this.key, this);
  }

  produce(key: string, value: unknown, traceId?: string): void {
    const rec: WireRecord = traceId === undefined ? [key, value, Date.now(), ++this.seq] : [key, value, Date.now(), ++this.seq, traceId];
    this.buffer.push(rec);
    this.produced++;
    if (this.taps.has(this.stream) || this.nats.hasConsumers()) this.nats.produce(key, value, traceId);
    if (this.buffer.length >= MAX_BATCH_RECORDS) this.flush();
    else if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushSoon);
    }
  }

  private readonly flushSoon = (): void => {
    this.flushQueued = false;
    this.flush();
  };

  flush(_force = false): boolean {
    if (this.buffer.length === 0) return this.nats.flush(_force);
    const consumer = this.bus.consumer(this.key);
    if (this.held || !consumer) return false;
    const recs = this.buffer;
    this.buffer = [];
    const batch: Batch = { v: PROTOCOL_VERSION, src: this.producerId, stream: this.stream, bseq: ++this.bseq, recs };
    this.outstanding += recs.length;
    this.delivered = recs[recs.length - 1]![3];
    consumer.deliver({ batch, stream: this.stream, partition: 0, done: this.done });
    this.nats.flush(_force);
    return true;
  }

  private readonly done = (n: number): void => {
    this.outstanding = Math.max(0, this.outstanding - n);
    this.checkUnblocked();
  };

  private checkUnblocked(): void {
    if (this.wasBlocked && !this.isBlocked()) {
      this.wasBlocked = false;
      if (this.stallSince !== undefined) this.stallMs += performance.now() - this.stallSince;
      this.stallSince = undefined;
      this.flush();
      this.onUnblocked();
    }
  }

  /** The bus bound or unbound the consumer of this stream. */
  consumerChanged(): void {
    // A new consumer owes nothing for what its predecessor took (that is replayed or handed over).
    this.outstanding = 0;
    this.wasBlocked = true;
    this.checkUnblocked();
  }

  isBlocked(): boolean {
    let blocked: boolean;
    if (this.held) blocked = this.buffer.length >= HOLD_LIMIT;
    else if (!this.bus.consumer(this.key)) blocked = this.buffer.length > 0;
    else {
      blocked = this.outstanding > LOCAL_WINDOW;
      if (blocked) this.stallSince ??= performance.now();
    }
    blocked ||= this.nats.isBlocked();
    if (blocked) this.wasBlocked = true;
    return blocked;
  }

  hold(): void {
    this.held = true;
    this.nats.hold();
  }

  release(): void {
    this.held = false;
    this.nats.release();
    this.flush();
    this.checkUnblocked();
  }

  get isHeld(): boolean {
    return this.held;
  }

  discard(): void {
    this.buffer = [];
    this.nats.discard();
  }

  get lastPublishedSeq(): number {
    return this.delivered;
  }

  /** In-process deliveries need no fence (they are in the consumer's queue when made); the NATS copy's are the NATS producer's. */
  get partitionFences(): Record<string, number> {
    return this.nats.partitionFences;
  }

  get partitionAgesMs(): Record<string, number> {
    return this.nats.partitionAgesMs;
  }

  get pending(): number {
    return this.buffer.length + this.nats.pending;
  }

  credit(group: string, n: number): void {
    this.nats.credit(group, n);
  }

  checkStall(now: number): void {
    this.nats.checkStall(now);
  }

  get producedSeq(): number {
    return this.seq;
  }

  get creditStallMs(): number {
    return this.stallMs + (this.stallSince === undefined ? 0 : performance.now() - this.stallSince) + this.nats.creditStallMs;
  }

  restoreSeq(seq: number): void {
    this.seq = Math.max(this.seq, seq);
    this.nats.restoreSeq(seq);
  }

  durableUpTo(seq: number): Promise<void> {
    return this.nats.durableUpTo(seq);
  }

  async settle(): Promise<void> {
    this.flush(true);
    await this.nats.settle();
  }

  close(): void {
    this.bus.detach(this.key, this);
    this.nats.close();
  }
}

/** Binds an instance as the in-process consumer of its fused inputs while open. */
class LocalInlet implements Inlet {
  private readonly binding: Binding;

  constructor(private readonly bus: FusionBus, private readonly keys: string[], onItem: (item: Inbound) => void) {
    this.binding = { deliver: onItem };
  }

  open(): void {
    for (const k of this.keys) this.bus.bind(k, this.binding);
  }

  close(): void {
    for (const k of this.keys) this.bus.unbind(k, this.binding);
  }
}

class BothInlets implements Inlet {
  constructor(private readonly a: Inlet, private readonly b: Inlet) {}
  open(): void {
    this.a.open();
    this.b.open();
  }
  close(): void {
    this.a.close();
    this.b.close();
  }
}

/**
 * The edges of a fused instance: its fused inputs come from the bus (not
 * NATS), its fused outputs go to the bus (and to NATS for the others);
 * everything else is `base`.
 */
export function fusedEdges(base: EdgeFactory, bus: FusionBus, taps: TapInterest, fusion: Fusion, index: number): EdgeFactory {
  const localOut = new Map(fusion.outputs.map((o) => [o.stream, o.consumer]));
  const localIn = new Set(fusion.inputs);
  return {
    outlet(stream: string, o: OutletOptions): Outlet {
      const consumer = localOut.get(stream);
      if (consumer === undefined) return base.outlet(stream, o);
      // The fused consumer's group (shuffle/key: its name; broadcast: name#index) owes the NATS copy no credit.
      const nats = base.outlet(stream, { ...o, exclude: new Set([consumer, `${consumer}#${index}`]) });
      if (!(nats instanceof StreamProducer)) throw new Error('fused outlets publish their NATS copy through a StreamProducer');
      return new FusedOutlet(stream, o.producerId, fusion.group, index, bus, nats, taps, o.onUnblocked);
    },
    inlet(a: Assignment, partitions: readonly number[], onItem: (item: Inbound) => void): Inlet {
      const remote: Assignment = { ...a, metadata: { ...a.metadata, istreams: a.metadata.istreams.filter((s) => !localIn.has(s.stream)) } };
      const keys = [...localIn].map((s) => keyOf(fusion.group, index, s));
      return new BothInlets(base.inlet(remote, partitions, onItem), new LocalInlet(bus, keys, onItem));
    },
    listenCredits: (id, onCredit, onMalformed) => base.listenCredits(id, onCredit, onMalformed),
    sendCredit: (producer, group, n) => base.sendCredit(producer, group, n),
  };
}
