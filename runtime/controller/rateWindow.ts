/**
 * Per-second rates of cumulative counters over a sliding window of heartbeats
 * (10 s by default). Two consecutive heartbeats alone make a sink at 1 record/s
 * flip between 0 and 2; over a window the same sink reads 1.
 */

export const RATE_WINDOW_MS = 10_000;
/** Samples kept at most per instance (a window of 1 s heartbeats needs 11; faster ones are thinned out by the window). */
const MAX_SAMPLES = 64;

interface Sample {
  at: number;
  values: Readonly<Record<string, number>>;
}

export class RateWindow {
  private samples: Sample[] = [];

  constructor(private readonly windowMs = RATE_WINDOW_MS) {}

  /** Adds the counters as of `at` (ms). A counter that went down (a restart) starts the window afresh. */
  add(at: number, values: Readonly<Record<string, number>>): void {
    const last = this.samples[this.samples.length - 1];
    if (last && at <= last.at) return;
    if (last && Object.keys(values).some((k) => (last.values[k] ?? 0) > values[k]!)) this.samples = [];
    this.samples.push({ at, values });
    // Keep one sample at or before the window's start, so the window is covered whole.
    while (this.samples.length > 2 && this.samples[1]!.at <= at - this.windowMs) this.samples.shift();
    if (this.samples.length > MAX_SAMPLES) this.samples.splice(1, 1);
  }

  /** Per second over the window (0 until there are two samples). */
  rate(name: string): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last === first) return 0;
    const secs = (last.at - first.at) / 1000;
    const d = (last.values[name] ?? 0) - (first.values[name] ?? 0);
    return secs > 0 && d > 0 ? d / secs : 0;
  }

  /** Every counter name of the latest sample that starts with `prefix`, without it, with its rate. */
  ratesOf(prefix: string): Record<string, number> {
    const last = this.samples[this.samples.length - 1];
    const out: Record<string, number> = {};
    if (!last) return out;
    for (const k of Object.keys(last.values)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = this.rate(k);
    return out;
  }
}
