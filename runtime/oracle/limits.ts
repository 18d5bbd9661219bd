/** The thresholds the oracle decides by, and the predicates built on them. */
import type { ComputationStats, OracleComputation } from './types.js';

/** Measured CPU per record at or above which a computation is heavy: it runs in a thread and is not fused. */
export const HEAVY_CPU_MICROS = 200;
/** Busy ratio above which a computation is saturated: a hot spot is split out of its group. */
export const SATURATED_BUSY = 0.8;
/** Autoscale looks at this many of the most recent busy samples, and only when it has them all. */
export const AUTOSCALE_WINDOW = 5;
/** Every sample of the window above this: double. */
export const SCALE_UP_BUSY = 0.8;
/** Every sample of the window below this: halve. */
export const SCALE_DOWN_BUSY = 0.2;

/** Why c is CPU-heavy, or undefined when it is not: the hint, or a measurement at or above HEAVY_CPU_MICROS. */
export function heavyReason(c: OracleComputation, stats: ComputationStats | undefined): string | undefined {
  if (c.hints?.cpu === 'heavy') return `${c.name} is CPU-heavy (hint)`;
  const us = stats?.cpuMicrosPerRecord;
  if (us !== undefined && us >= HEAVY_CPU_MICROS) return `${c.name} is CPU-heavy (measured ${us} µs/record >= ${HEAVY_CPU_MICROS})`;
  return undefined;
}

export function isSaturated(stats: ComputationStats | undefined): boolean {
  return stats !== undefined && stats.busyRatio > SATURATED_BUSY;
}
