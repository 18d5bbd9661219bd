/** Percentiles of the swap bench: over a few samples (per swap) and over a latency histogram (per record). */

export interface Stats {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of samples (with 50 samples, p99 is the largest one). */
export function statsOf(samples: readonly number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const rank = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? NaN;
  return { n: s.length, p50: rank(0.5), p99: rank(0.99), max: s.at(-1) ?? NaN };
}

/** Latency histogram in whole milliseconds (Date.now() resolution); the last bucket holds everything beyond. */
export class LatencyHistogram {
  private readonly buckets: Uint32Array;
  n = 0;
  max = 0;

  constructor(readonly limitMs = 60_000) {
    this.buckets = new Uint32Array(limitMs + 1);
  }

  /** Adds `count` records of latency `ms`. */
  add(ms: number, count = 1): void {
    const b = ms < 0 ? 0 : ms > this.limitMs ? this.limitMs : Math.round(ms);
    this.buckets[b]! += count;
    this.n += count;
    if (ms > this.max) this.max = ms;
  }

  percentile(p: number): number {
    if (this.n === 0) return NaN;
    const target = Math.max(1, Math.ceil(p * this.n));
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i]!;
      if (seen >= target) return i;
    }
    return this.limitMs;
  }

  stats(): Stats {
    return { n: this.n, p50: this.percentile(0.5), p99: this.percentile(0.99), max: this.n ? this.max : NaN };
  }
}
