/**
 * The figures every runner gets without asking, the way Benthos wraps every
 * processor: records in and out, errors, dead letters, a histogram of
 * processing latency, queue depth, and how each second was spent (busy in
 * callbacks, idle, or backpressured: input waiting while output was blocked).
 * The oracle plans from these (busy ratio, CPU per record, queue depth).
 *
 * Cost: two performance.now() calls per batch, not per record. TOPO_METRICS=0
 * turns it off (then the oracle sees every instance idle).
 */
import type { InstanceMetrics, LatencySummary } from '../../protocol/index.js';

/** Log-2 buckets of µs: bucket i counts latencies in [2^(i-1), 2^i) µs; the last one is open. */
export const LATENCY_BUCKETS = 28;
const BUCKETS = LATENCY_BUCKETS;
const WINDOW_MS = 1_000;

export class Observed {
  readonly metrics: InstanceMetrics = { recordsIn: 0, recordsOut: 0, errors: 0, deadLetters: 0, malformed: 0 };
  private readonly histogram = new Float64Array(BUCKETS);
  private samples = 0;
  private maxUs = 0;
  private sumUs = 0;
  private readonly startedAt = performance.now();
  /** Busy and backpressured time of the windows already closed (ms). */
  private busyTotal = 0;
  private backpressuredTotal = 0;

  constructor(readonly on = process.env.TOPO_METRICS !== '0') {}
  private windowStart = performance.now();
  private busy = 0;
  private backpressured = 0;
  private blockedSince: number | undefined;
  private yieldedAt: number | undefined;
  private last = { busyMs: 0, idleMs: WINDOW_MS, backpressuredMs: 0 };

  /** A batch (or timer round) of `records` took `ms` of callback time. */
  ran(ms: number, records: number): void {
    if (!this.on) return;
    const now = performance.now();
    this.roll(now);
    this.busy += ms;
    if (records > 0) {
      const us = (ms * 1_000) / records;
      this.histogram[bucketOf(us)]!++;
      this.samples++;
      this.sumUs += us;
      if (us > this.maxUs) this.maxUs = us;
    }
  }

  /** The loop gave the event loop a turn with work still queued: until it resumes, that time is busy. */
  yielded(): void {
    if (!this.on) return;
    this.yieldedAt = performance.now();
  }

  resumed(): void {
    if (this.yieldedAt === undefined) return;
    const now = performance.now();
    this.roll(now);
    this.busy += now - Math.max(this.yieldedAt, this.windowStart);
    this.yieldedAt = undefined;
  }

  /** Input is waiting and output is blocked (credit window or a full pause buffer): starts or ends backpressured time. */
  blocked(on: boolean): void {
    if (!this.on) return;
    const now = performance.now();
    if (on) {
      this.blockedSince ??= now;
      return;
    }
    if (this.blockedSince === undefined) return;
    this.roll(now);
    this.backpressured += now - Math.max(this.blockedSince, this.windowStart);
    this.blockedSince = undefined;
  }

  /** Counters plus the last full second and the latency percentiles. */
  report(queueDepth: number): InstanceMetrics {
    this.roll(performance.now());
    return {
      ...this.metrics,
      busyMs: Math.round(this.last.busyMs),
      idleMs: Math.round(this.last.idleMs),
      backpressuredMs: Math.round(this.last.backpressuredMs),
      queueDepth,
      ...(this.samples > 0 ? { latencyUs: this.latency(), latencyBuckets: this.buckets(), latencySumUs: Math.round(this.sumUs) } : {}),
      ...this.totals(performance.now()),
    };
  }

  /** Time since the instance started, split as the windows split it (ms, the open window's busy time included). */
  private totals(now: number): Partial<Pick<InstanceMetrics, 'busyTotalMs' | 'idleTotalMs' | 'backpressuredTotalMs'>> {
    if (!this.on) return {};
    const busy = this.busyTotal + this.busy;
    const bp = this.backpressuredTotal + this.backpressured;
    return { busyTotalMs: Math.round(busy), backpressuredTotalMs: Math.round(bp), idleTotalMs: Math.max(0, Math.round(now - this.startedAt - busy - bp)) };
  }

  /** The latency histogram's counts, bucket by bucket, trailing empty buckets left out. */
  private buckets(): number[] {
    let last = BUCKETS - 1;
    while (last > 0 && this.histogram[last] === 0) last--;
    return Array.from(this.histogram.subarray(0, last + 1));
  }

  /** Busy share of the last full second (0..1). */
  get busyRatio(): number {
    this.roll(performance.now());
    return Math.min(1, this.last.busyMs / WINDOW_MS);
  }

  latency(): LatencySummary {
    return {
      p50: this.percentile(0.5), p90: this.percentile(0.9), p99: this.percentile(0.99),
      max: Math.round(this.maxUs), n: this.samples,
    };
  }

  private percentile(q: number): number {
    const want = q * this.samples;
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.histogram[i]!;
      if (seen >= want) return Math.min(2 ** i, Math.ceil(this.maxUs));
    }
    return Math.ceil(this.maxUs);
  }

  /** Closes the windows that ended before `now`. */
  private roll(now: number): void {
    if (now - this.windowStart < WINDOW_MS) return;
    const elapsedWindows = Math.floor((now - this.windowStart) / WINDOW_MS);
    const end = this.windowStart + WINDOW_MS;
    let bp = this.backpressured;
    if (this.blockedSince !== undefined) bp += Math.max(0, end - Math.max(this.blockedSince, this.windowStart));
    const blockedAll = this.blockedSince !== undefined;
    if (elapsedWindows === 1) {
      const busyMs = Math.min(WINDOW_MS, this.busy);
      const backpressuredMs = Math.min(WINDOW_MS - busyMs, bp);
      this.last = { busyMs, backpressuredMs, idleMs: WINDOW_MS - busyMs - backpressuredMs };
    } else {
      // A whole second passed without a sample: it was spent waiting (or blocked throughout).
      this.last = { busyMs: 0, backpressuredMs: blockedAll ? WINDOW_MS : 0, idleMs: blockedAll ? 0 : WINDOW_MS };
    }
    // Totals keep a callback longer than a window whole (the per-second figures cap it).
    this.busyTotal += this.busy;
    this.backpressuredTotal += Math.min(Math.max(0, WINDOW_MS - this.busy), bp) + (blockedAll ? (elapsedWindows - 1) * WINDOW_MS : 0);
    this.windowStart += elapsedWindows * WINDOW_MS;
    this.busy = 0;
    this.backpressured = 0;
  }
}

function bucketOf(us: number): number {
  if (us < 1) return 0;
  return Math.min(BUCKETS - 1, Math.floor(Math.log2(us)) + 1);
}
