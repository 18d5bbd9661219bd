/**
 * Instance counts. Each computation starts from its `instances` (desired, or
 * current when the caller passes what runs now), then:
 *
 * 1. autoscale (only with hints.autoscale {min, max}): when the last
 *    AUTOSCALE_WINDOW samples of stats.busyWindow are all > SCALE_UP_BUSY the
 *    count doubles, all < SCALE_DOWN_BUSY it halves (rounded down), else it is
 *    kept; fewer samples than the window keep it. The result is always clamped
 *    to [min, max];
 * 2. a computation with a key-grouped istream is capped at PARTITIONS: an
 *    instance beyond the partition count would own no key;
 * 3. every count is a whole number >= 1.
 *
 * Every change from the starting count gets a note.
 */
import { PARTITIONS } from '../../protocol/index.js';
import { AUTOSCALE_WINDOW, SCALE_DOWN_BUSY, SCALE_UP_BUSY } from './limits.js';
import type { ComputationStats, OracleComputation, OracleInput } from './types.js';

export interface Scaling {
  instances: Record<string, number>;
  notes: string[];
}

export function scaleAll(input: OracleInput): Scaling {
  const instances: Record<string, number> = {};
  const notes: string[] = [];
  for (const c of [...input.computations].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    instances[c.name] = scaleOne(c, input.stats?.[c.name], notes);
  }
  return { instances, notes };
}

function scaleOne(c: OracleComputation, stats: ComputationStats | undefined, notes: string[]): number {
  let n = Math.max(1, Math.floor(Number.isFinite(c.instances) ? c.instances : 1));
  if (n !== c.instances) notes.push(`${c.name}: ${c.instances} instances is not a whole number >= 1, using ${n}`);
  const auto = c.hints?.autoscale;
  if (auto) {
    const min = Math.max(1, Math.floor(auto.min));
    const max = Math.max(min, Math.floor(auto.max));
    const window = stats?.busyWindow ?? [];
    const recent = window.slice(-AUTOSCALE_WINDOW);
    let next = n;
    if (recent.length >= AUTOSCALE_WINDOW && recent.every((b) => b > SCALE_UP_BUSY)) {
      next = n * 2;
      notes.push(`${c.name} scaled up ${n} -> ${Math.min(next, max)}: busy > ${SCALE_UP_BUSY} for the last ${AUTOSCALE_WINDOW} s`);
    } else if (recent.length >= AUTOSCALE_WINDOW && recent.every((b) => b < SCALE_DOWN_BUSY)) {
      next = Math.floor(n / 2);
      notes.push(`${c.name} scaled down ${n} -> ${Math.max(next, min)}: busy < ${SCALE_DOWN_BUSY} for the last ${AUTOSCALE_WINDOW} s`);
    }
    const clamped = Math.min(max, Math.max(min, next));
    if (clamped !== next) notes.push(`${c.name}: ${next} instances clamped to autoscale range [${min}, ${max}] -> ${clamped}`);
    n = clamped;
  }
  const keyed = c.istreams.find((s) => s.grouping === 'key');
  if (keyed && n > PARTITIONS) {
    notes.push(`${c.name}: ${n} instances capped at ${PARTITIONS}: key-grouped on stream ${keyed.stream}, an instance beyond ${PARTITIONS} partitions would own no key`);
    n = PARTITIONS;
  }
  return n;
}
