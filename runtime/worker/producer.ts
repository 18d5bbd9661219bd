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
import { encodeBatch, partitionOf, subjects, PARTITIONS, PROTOCOL_VERSION, type WireRecord } from '../../sdk/protocol/index.js';
import type { TopologyView } from './topology.js';

export const MAX_BATCH_RECORDS = 256;
export const LINGER_MS = 1;
export const DEFAULT_WINDOW = 65_536;
/** A group that gives no credit for this long while we are blocked is presumed gone. */
export const STALL_RESET_MS = 5_000;
/** Keep published messages well under the server's max_payload. */
const MAX_BATCH_BYTES = 512 * 1024;

export interface ProducerOptions {
  nc: NatsConnection;
  stream: string;
  producerId: string;
  view: TopologyView;
  window?: number;
  /** Called when the producer becomes unblocked, so the instance can resume input. */
  onUnblocked: () => void;
  onStallReset: (group: string, owed: number) => void;
}

export class StreamProducer {
  readonly stream: string;
  private readonly nc: NatsConnection;
  private readonly producerId: string;
  private readonly view: TopologyView;
  private readonly window: number;
  private readonly onUnblocked: () => void;
  private readonly onStallReset: (group: string, owed: number) => void;

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
  /** Held by a pause (hot swap): nothing is published until resume(). */
  private held = false;
  private blockedNow = false;
  published = 0;

  constructor(o: ProducerOptions) {
    this.nc = o.nc;
    this.stream = o.stream;
    this.producerId = o.producerId;
    this.view = o.view;
    this.window = o.window ?? DEFAULT_WINDOW;
    this.onUnblocked = o.onUnblocked;
    this.onStallReset = o.onStallReset;
  }

  private refreshRoutes(): void {
    if (this.viewVersion === this.view.version) return;
    this.viewVersion = this.view.version;
    const c = this.view.consumersOf(this.stream);
    this.groups = c.groups;
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
    if (buf.length >= MAX_BATCH_RECORDS && !this.isBlocked()) this.publishBuffer(idx);
    else if (this.linger === undefined) this.linger = setTimeout(this.onLinger, LINGER_MS);
  }

  private readonly onLinger = (): void => {
    this.linger = undefined;
    this.flush();
  };

  /** True while output must be held (flow control or pause). */
  isBlocked(): boolean {
    if (this.held) return true;
    for (const n of this.owed.values()) if (n > this.window) return (this.blockedNow = true);
    return (this.blockedNow = false);
  }

  /** Publishes everything pending unless blocked. Returns true when nothing is left pending. */
  flush(): boolean {
    if (this.pendingCount === 0) return true;
    for (let i = 0; i <= PARTITIONS; i++) {
      while (this.buffers[i]!.length > 0) {
        if (this.isBlocked()) return false;
        this.publishBuffer(i);
      }
    }
    return true;
  }

  private publishBuffer(idx: number): void {
    this.refreshRoutes();
    const buf = this.buffers[idx]!;
    const recs = buf.length > MAX_BATCH_RECORDS ? buf.splice(0, MAX_BATCH_RECORDS) : buf.splice(0);
    this.pendingCount -= recs.length;
    const partition = idx === PARTITIONS ? this.rotate++ % PARTITIONS : idx;
    this.publishRecords(partition, recs);
    for (const g of this.groups) this.owed.set(g, (this.owed.get(g) ?? 0) + recs.length);
  }

  private publishRecords(partition: number, recs: WireRecord[]): void {
    const bytes = encodeBatch({ v: PROTOCOL_VERSION, src: this.producerId, stream: this.stream, bseq: ++this.bseq, recs });
    if (bytes.length > MAX_BATCH_BYTES && recs.length > 1) {
      // Too big for one message: undo the batch number and send two halves in order.
      this.bseq--;
      const half = recs.length >> 1;
      this.publishRecords(partition, recs.slice(0, half));
      this.publishRecords(partition, recs.slice(half));
      return;
    }
    this.nc.publish(subjects.data(this.stream, partition), bytes);
    this.published += recs.length;
  }

  /** A consumer group acknowledged `n` records. */
  credit(group: string, n: number): void {
    this.lastCreditAt = Date.now();
    const cur = this.owed.get(group);
    if (cur === undefined) return;
    this.owed.set(group, Math.max(0, cur - n));
    if (this.blockedNow && !this.isBlocked()) {
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
    if (!this.isBlocked()) {
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

  get pending(): number {
    return this.pendingCount;
  }

  get lastSeq(): number {
    return this.seq;
  }

  close(): void {
    if (this.linger) clearTimeout(this.linger);
    this.linger = undefined;
  }
}
