/**
 * Output side of one instance on one stream: batches records per partition,
 * publishes them after a short linger, and applies credit-based flow control.
 *
 * A producer is *blocked* while some consumer group owes credit for more than
 * `window` records; then output is held here instead of published, and the
 * instance stops taking input (see Instance), so backpressure reaches sources.
 * Held output is bounded by what one callback produces.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { encodeBatch, partitionOf, subjects, PARTITIONS, PROTOCOL_VERSION, type WireRecord } from '../../protocol/index.js';
import type { TopologyView } from './topology.js';
import type { Outlet } from './edges.js';

export const MAX_BATCH_RECORDS = 256;
export const LINGER_MS = 1;
export const DEFAULT_WINDOW = 65_536;
/** A group that gives no credit for this long while we are blocked is presumed gone. */
export const STALL_RESET_MS = 5_000;
/** Keep published messages well under the server's max_payload. */
const MAX_BATCH_BYTES = 512 * 1024;
/**
 * While held by a pause, output accumulates up to this many records; then the
 * instance stops taking input, so backpressure reaches the sources.
 */
export const HOLD_LIMIT = 16_384;

/**
 * Sends batches somewhere other than core NATS: an at-least-once stream's JetStream publisher
 * (runtime/worker/jetstream.ts). One batch in flight per partition, so a partition's records are
 * stored in the order of their sequence numbers even when a publish has to be retried.
 */
export interface BatchSender {
  /** True when nothing is in flight on this partition. */
  idle(partition: number): boolean;
  send(partition: number, subject: string, bytes: Uint8Array, firstSeq: number, lastSeq: number): void;
  /** The lowest producer sequence in flight (Infinity when none). */
  lowestInFlight(): number;
  /** Resolves once nothing is in flight. */
  settled(): Promise<void>;
  close(): void;
}

export interface ProducerOptions {
  nc: NatsConnection;
  stream: string;
  producerId: string;
  view: TopologyView;
  window?: number;
  /** Called when the producer becomes unblocked, so the instance can resume input. */
  onUnblocked: () => void;
  onStallReset: (group: string, owed: number) => void;
  /** Consumer groups served another way (in-process, fused): they owe no credit here. */
  exclude?: ReadonlySet<string>;
  /** Where batches go instead of a core NATS publish (an at-least-once stream); called with the producer's onSent. */
  sender?: (onSent: (partition: number) => void) => BatchSender;
}

export class StreamProducer implements Outlet {
  readonly stream: string;
  private readonly nc: NatsConnection;
  private readonly producerId: string;
  private readonly view: TopologyView;
  private readonly window: number;
  private readonly onUnblocked: () => void;
  private readonly onStallReset: (group: string, owed: number) => void;
  private readonly exclude: ReadonlySet<string> | undefined;
  private readonly sender: BatchSender | undefined;
  /** Waiters of durableUpTo: resolved once every record up to their sequence is stored. */
  private durableWaiters: { seq: number; resolve: () => void }[] = [];

  /** Pending records per partition (index PARTITIONS is the unkeyed buffer). */
  private readonly buffers: WireRecord[][] = Array.from({ length: PARTITIONS + 1 }, () => []);
  private pendingCount = 0;
  private seq = 0;
  private bseq = 0;
  private rotate = 0;
  private linger: NodeJS.Timeout | undefined;

  /** Records each consumer group still owes credit for. */
  private readonly owed = new Map<string, number>();
  private viewVersion = -1;
  private groups: string[] = [];
  private keyed = false;
  private lastCreditAt = Date.now();
  /** Held by a pause (hot swap): nothing is published until release(). */
  private held = false;
  private blockedNow = false;
  /** Credit stall so far (ms), and since when the current one lasts. */
  private stallMs = 0;
  private stallSince: number | undefined;
  produced = 0;
  /** Producer sequence of the last record published (the fence reported by a pause). */
  private publishedSeq = 0;
  private readonly seqByPartition: number[] = new Array<number>(PARTITIONS).fill(0);
  private readonly atByPartition: number[] = new Array<number>(PARTITIONS).fill(0);
  published = 0;

  constructor(o: ProducerOptions) {
    this.nc = o.nc;
    this.stream = o.stream;
    this.producerId = o.producerId;
    this.view = o.view;
    this.window = o.window ?? DEFAULT_WINDOW;
    this.onUnblocked = o.onUnblocked;
    this.onStallReset = o.onStallReset;
    this.exclude = o.exclude;
    this.sender = o.sender?.((partition) => this.onSent(partition));
  }

  /** A batch of this partition was stored: the next may go, and durability waiters may be done. */
  private onSent(partition: number): void {
    const wasBlocked = this.blockedNow || this.pendingCount >= HOLD_LIMIT;
    if (this.buffers[partition]!.length > 0 || this.buffers[PARTITIONS]!.length > 0) this.flush();
    this.checkDurable();
    if (wasBlocked && !this.isBlocked()) this.onUnblocked();
  }

  /** The lowest sequence not yet stored (buffered or in flight); Infinity when everything produced is stored. */
  private lowestUnstored(): number {
    let low = this.sender ? this.sender.lowestInFlight() : Infinity;
    for (const b of this.buffers) if (b.length && b[0]![3] < low) low = b[0]![3];
    return low;
  }

  private checkDurable(): void {
    if (!this.durableWaiters.length) return;
    const low = this.lowestUnstored();
    const still: { seq: number; resolve: () => void }[] = [];
    for (const w of this.durableWaiters) (w.seq < low ? w.resolve() : still.push(w));
    this.durableWaiters = still;
  }

  /** The sequence of the last record produced (what a checkpoint keeps). */
  get producedSeq(): number {
    return this.seq;
  }

  /** Continues the sequence of a predecessor (a restart from a checkpoint): records it produces again get the same numbers. */
  restoreSeq(seq: number): void {
    this.seq = Math.max(this.seq, seq);
  }

  /**
   * Resolves once every record up to `seq` is stored (JetStream acknowledged it). Core NATS
   * stores nothing: it resolves at once, the output being at-most-once.
   */
  durableUpTo(seq: number): Promise<void> {
    if (!this.sender || seq < this.lowestUnstored()) return Promise.resolve();
    return new Promise((resolve) => this.durableWaiters.push({ seq, resolve }));
  }

  /** Sends everything pending, ignoring the credit window, and resolves once it is out (stored, for JetStream). */
  async settle(): Promise<void> {
    for (;;) {
      const done = this.flush(true);
      if (!this.sender) return;
      await this.sender.settled();
      if (done && this.pendingCount === 0) return;
      if (this.held) return;
    }
  }

  private refreshRoutes(): void {
    if (this.viewVersion === this.view.version) return;
    this.viewVersion = this.view.version;
    const c = this.view.consumersOf(this.stream);
    const exclude = this.exclude;
    this.groups = exclude ? c.groups.filter((g) => !exclude.has(g)) : c.groups;
    this.keyed = c.keyed;
    for (const g of [...this.owed.keys()]) if (!c.groups.includes(g)) this.owed.delete(g);
  }

  /** Appends one record; publishes full batches at once and the rest after the linger. */
  produce(key: string, value: unknown, traceId?: string): void {
    this.refreshRoutes();
    const rec: WireRecord = traceId === undefined ? [key, value, Date.now(), ++this.seq] : [key, value, Date.now(), ++this.seq, traceId];
    const idx = this.keyed ? partitionOf(key) : PARTITIONS;
    const buf = this.buffers[idx]!;
    buf.push(rec);
    this.pendingCount++;
    this.produced++;
    if (buf.length >= MAX_BATCH_RECORDS && this.canPublish()) this.publishBuffer(idx);
    else if (this.linger === undefined) this.linger = setTimeout(this.onLinger, LINGER_MS);
  }

  private readonly onLinger = (): void => {
    this.linger = undefined;
    this.flush();
  };

  /** True while some consumer group owes more credit than the window. */
  private creditBlocked(): boolean {
    let blocked = false;
    for (const n of this.owed.values()) {
      if (n > this.window) {
        blocked = true;
        break;
      }
    }
    if (blocked !== this.blockedNow) this.stallChanged(blocked);
    return (this.blockedNow = blocked);
  }

  private stallChanged(blocked: boolean): void {
    const now = performance.now();
    if (blocked) this.stallSince = now;
    else if (this.stallSince !== undefined) {
      this.stallMs += now - this.stallSince;
      this.stallSince = undefined;
    }
  }

  get creditStallMs(): number {
    return this.stallMs + (this.stallSince === undefined ? 0 : performance.now() - this.stallSince);
  }

  private canPublish(): boolean {
    return !this.held && !this.creditBlocked();
  }

  /**
   * True while the instance must stop taking input: output is held back by
   * flow control, or by a pause whose bounded buffer is full.
   */
  isBlocked(): boolean {
    if (this.held) return this.pendingCount >= HOLD_LIMIT;
    // JetStream not storing (a server restart): what waits is bounded like a pause.
    if (this.sender && this.pendingCount >= HOLD_LIMIT) return true;
    return this.creditBlocked();
  }

  /**
   * Publishes everything pending that may go out now. `force` ignores the
   * credit window (used when an instance hands over or stops, so nothing it
   * produced is stranded). Returns true when nothing is left pending.
   */
  flush(force = false): boolean {
    if (this.pendingCount === 0) return true;
    let all = true;
    for (let i = 0; i <= PARTITIONS; i++) {
      while (this.buffers[i]!.length > 0) {
        if (this.held || (!force && this.creditBlocked())) return false;
        if (!this.publishBuffer(i)) {
          all = false;
          break;
        }
      }
    }
    return all;
  }

  /** Drops pending output (a rolled-back probation: another instance redoes this work). */
  discard(): void {
    for (const b of this.buffers) b.length = 0;
    this.pendingCount = 0;
  }

  /** Publishes one batch of a buffer; false when its partition still has one in flight (an at-least-once stream). */
  private publishBuffer(idx: number): boolean {
    this.refreshRoutes();
    let partition: number;
    if (idx !== PARTITIONS) {
      partition = idx;
      if (this.sender && !this.sender.idle(partition)) return false;
    } else {
      partition = this.rotate++ % PARTITIONS;
      if (this.sender) {
        let tries = 0;
        while (!this.sender.idle(partition) && ++tries < PARTITIONS) partition = this.rotate++ % PARTITIONS;
        if (!this.sender.idle(partition)) return false;
      }
    }
    const buf = this.buffers[idx]!;
    const recs = buf.length > MAX_BATCH_RECORDS ? buf.splice(0, MAX_BATCH_RECORDS) : buf.splice(0);
    const sent = this.publishRecords(partition, recs);
    // What did not fit in one JetStream message goes back to the front, for the partition's next turn.
    if (sent < recs.length) buf.unshift(...recs.slice(sent));
    this.pendingCount -= sent;
    for (const g of this.groups) this.owed.set(g, (this.owed.get(g) ?? 0) + sent);
    return true;
  }

  /** Publishes `recs` (or, to a JetStream sender, as many as fit in one message); returns how many went. */
  private publishRecords(partition: number, recs: WireRecord[]): number {
    const bytes = encodeBatch({ v: PROTOCOL_VERSION, src: this.producerId, stream: this.stream, bseq: ++this.bseq, recs });
    if (bytes.length > MAX_BATCH_BYTES && recs.length > 1) {
      // Too big for one message: undo the batch number and send two halves in order.
      this.bseq--;
      const half = recs.length >> 1;
      const first = this.publishRecords(partition, recs.slice(0, half));
      if (this.sender) return first;
      return first + this.publishRecords(partition, recs.slice(half));
    }
    if (this.sender) {
      // A JetStream publish takes one batch per partition at a time: the two halves of an oversized batch go as two batches in turn.
      this.sender.send(partition, subjects.data(this.stream, partition), bytes, recs[0]![3], recs[recs.length - 1]![3]);
    } else this.nc.publish(subjects.data(this.stream, partition), bytes);
    this.published += recs.length;
    this.publishedSeq = recs[recs.length - 1]![3];
    this.seqByPartition[partition] = this.publishedSeq;
    this.atByPartition[partition] = performance.now();
    return recs.length;
  }

  /** True when some consumer group reads this stream on NATS. */
  hasConsumers(): boolean {
    this.refreshRoutes();
    return this.groups.length > 0;
  }

  /** A consumer group acknowledged `n` records. */
  credit(group: string, n: number): void {
    // Defends itself whatever the caller checked: NaN would make the debt NaN (never blocked again:
    // flow control off), a negative n would add debt (a stall).
    if (!Number.isSafeInteger(n) || n <= 0) return;
    this.lastCreditAt = Date.now();
    const cur = this.owed.get(group);
    if (cur === undefined) return;
    this.owed.set(group, Math.max(0, cur - n));
    if (this.blockedNow && !this.creditBlocked()) {
      this.flush();
      this.onUnblocked();
    }
  }

  /** Called periodically: forgives groups that stopped crediting while we are blocked. */
  checkStall(now: number): void {
    if (!this.blockedNow || this.held || now - this.lastCreditAt < STALL_RESET_MS) return;
    for (const [g, n] of this.owed) {
      if (n > this.window) {
        this.onStallReset(g, n);
        this.owed.set(g, 0);
      }
    }
    this.lastCreditAt = now;
    if (!this.creditBlocked()) {
      this.flush();
      this.onUnblocked();
    }
  }

  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.flush();
  }

  get isHeld(): boolean {
    return this.held;
  }

  get pending(): number {
    return this.pendingCount;
  }

  /** The fence: sequence of the last record published on this stream. */
  get lastPublishedSeq(): number {
    return this.publishedSeq;
  }

  get partitionAgesMs(): Record<string, number> {
    const now = performance.now();
    const out: Record<string, number> = {};
    this.seqByPartition.forEach((seq, p) => {
      if (seq > 0) out[String(p)] = Math.max(0, Math.round(now - this.atByPartition[p]!));
    });
    return out;
  }

  get partitionFences(): Record<string, number> {
    const out: Record<string, number> = {};
    this.seqByPartition.forEach((seq, p) => {
      if (seq > 0) out[String(p)] = seq;
    });
    return out;
  }

  close(): void {
    if (this.linger) clearTimeout(this.linger);
    this.linger = undefined;
    this.sender?.close();
  }
}
