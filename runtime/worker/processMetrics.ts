/** A worker process's own figures for its heartbeat: memory, CPU, and how late its event loop ran. */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { ProcessMetrics } from '../../protocol/index.js';

const NS_PER_MS = 1e6;

export class ProcessSampler {
  private readonly delay: IntervalHistogram;

  constructor() {
    // 10 ms resolution: finer costs a timer wakeup more often for little more truth about lag.
    this.delay = monitorEventLoopDelay({ resolution: 10 });
    this.delay.enable();
  }

  /** The figures now; the event-loop delay covers the time since the previous sample. */
  sample(): ProcessMetrics {
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    const d = this.delay;
    // Before the first 10 ms tick the histogram is empty (its mean is NaN, its min huge).
    const lag = d.count > 0
      ? { mean: round(d.mean / NS_PER_MS), p99: round(d.percentile(99) / NS_PER_MS), max: round(d.max / NS_PER_MS) }
      : { mean: 0, p99: 0, max: 0 };
    d.reset();
    return { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, cpuUserMicros: cpu.user, cpuSystemMicros: cpu.system, eventLoopLagMs: lag };
  }

  close(): void {
    this.delay.disable();
  }
}

function round(ms: number): number {
  return Number.isFinite(ms) ? Math.round(ms * 100) / 100 : 0;
}
