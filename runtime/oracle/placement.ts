/**
 * The default placement strategy, 'spread':
 *
 * 1. keep: a unit stays on the worker its members run on now when that worker
 *    can still host it (alive, not draining, same language); members of a
 *    newly fused unit gather on the worker most of them run on (ties: the
 *    chain head's);
 * 2. place: every other unit (new, or on a dead or unfit worker) goes to the
 *    worker of its language with, in order, the fewest units of its group on
 *    the worker's host, then on the worker, then the lowest load after
 *    placing it (units / capacity), then the lowest id. No worker of its
 *    language: unplaced, with a note;
 * 3. rebalance (e.g. after a worker joined): move one unit from a loaded
 *    worker to a less loaded one while that strictly lowers sum(load^2 /
 *    capacity); with equal capacities, while max - min > 1. Each move takes
 *    the unit that helps the host spread most. Few moves: only what the
 *    imbalance needs.
 *
 * A unit (one index of a fusion group) weighs 1: its members run as one chain.
 */
import { sortBy } from './graph.js';
import { canHost, capacityOf, type Assignment, type PlacementStrategy, type PlacementUnit } from './strategy.js';
import type { OracleWorker } from './types.js';

class Tally {
  private readonly n = new Map<string, number>();
  get(k: string): number {
    return this.n.get(k) ?? 0;
  }
  add(k: string, d: number): void {
    this.n.set(k, this.get(k) + d);
  }
}

class Layout {
  readonly at = new Map<string, OracleWorker>(); // unit id -> worker
  private readonly load = new Tally(); // worker id -> units
  private readonly spread = new Tally(); // group + worker id / host -> units
  assign(u: PlacementUnit, w: OracleWorker, d = 1): void {
    if (d > 0) this.at.set(u.id, w);
    else this.at.delete(u.id);
    this.load.add(w.workerId, d);
    this.spread.add(`${u.group}\0w\0${w.workerId}`, d);
    this.spread.add(`${u.group}\0h\0${w.host}`, d);
  }
  units(w: OracleWorker): number {
    return this.load.get(w.workerId);
  }
  onWorker(group: string, w: OracleWorker): number {
    return this.spread.get(`${group}\0w\0${w.workerId}`);
  }
  onHost(group: string, host: string): number {
    return this.spread.get(`${group}\0h\0${host}`);
  }
  ratio(w: OracleWorker, extra = 0): number {
    return (this.units(w) + extra) / capacityOf(w);
  }
}

function lexLess(x: readonly (number | string)[], y: readonly (number | string)[]): boolean {
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! < y[i]!;
  return false;
}

function minBy<T>(items: readonly T[], key: (t: T) => (number | string)[]): T | undefined {
  let best: T | undefined;
  let bestKey: (number | string)[] = [];
  for (const t of items) {
    const k = key(t);
    if (best === undefined || lexLess(k, bestKey)) [best, bestKey] = [t, k];
  }
  return best;
}

export const spread: PlacementStrategy = {
  name: 'spread',
  place(units, workers, current): Assignment {
    const notes: string[] = [];
    const byId = new Map(workers.map((w) => [w.workerId, w]));
    const live = sortBy(workers.filter((w) => w.alive && capacityOf(w) > 0), (w) => w.workerId);
    const was = new Map<string, string>();
    for (const p of current) was.set(`${p.computation}#${p.index}`, p.workerId);
    const ordered = sortBy(units, (u) => `${u.group}\0${String(u.index).padStart(9, '0')}`);
    const layout = new Layout();

    for (const u of ordered) {
      const votes = new Map<string, number>();
      for (const m of u.members) {
        const w = byId.get(was.get(`${m}#${u.index}`) ?? '');
        if (w && canHost(w, u)) votes.set(w.workerId, (votes.get(w.workerId) ?? 0) + 1);
      }
      let keep: string | undefined;
      for (const [w, n] of votes) if (keep === undefined || n > votes.get(keep)!) keep = w; // insertion order = chain order
      if (keep !== undefined) layout.assign(u, byId.get(keep)!);
    }

    for (const u of ordered) {
      if (layout.at.has(u.id)) continue;
      const fit = live.filter((w) => canHost(w, u));
      const w = minBy(fit, (w) => [layout.onHost(u.group, w.host), layout.onWorker(u.group, w), layout.ratio(w, 1), w.workerId]);
      const prevId = was.get(`${u.members[0]}#${u.index}`);
      if (!w) {
        notes.push(`${u.id} unplaced: no live ${u.lang} worker`);
        continue;
      }
      layout.assign(u, w);
      if (prevId === undefined) notes.push(`${u.id} placed on ${w.workerId} (host ${w.host})`);
      else {
        const prev = byId.get(prevId);
        const why = !prev ? 'gone' : !prev.alive ? 'dead' : capacityOf(prev) <= 0 ? 'draining' : `a ${prev.lang} worker`;
        notes.push(`${u.id} moved off ${prevId} (${why}) to ${w.workerId} (host ${w.host})`);
      }
    }

    rebalance(ordered, live, layout, notes);
    const out: Record<string, string> = {};
    for (const [id, w] of layout.at) out[id] = w.workerId;
    return { workers: out, notes };
  },
};

function rebalance(units: readonly PlacementUnit[], live: readonly OracleWorker[], layout: Layout, notes: string[]): void {
  for (let guard = units.length * live.length; guard > 0; guard--) {
    const byId = (x: OracleWorker, y: OracleWorker): number => (x.workerId < y.workerId ? -1 : 1);
    const desc = [...live].sort((x, y) => layout.ratio(y) - layout.ratio(x) || byId(x, y));
    const asc = [...live].sort((x, y) => layout.ratio(x) - layout.ratio(y) || byId(x, y));
    let moved = false;
    for (const src of desc) {
      for (const dst of asc) {
        if (src === dst) continue;
        const lowers = (2 * layout.units(dst) + 1) / capacityOf(dst) < (2 * layout.units(src) - 1) / capacityOf(src);
        if (!lowers) continue;
        const movable = units.filter((u) => layout.at.get(u.id) === src && canHost(dst, u));
        const u = minBy(movable, (u) => [
          layout.onHost(u.group, dst.host) - layout.onHost(u.group, src.host),
          layout.onWorker(u.group, dst),
          -u.index,
          u.group,
        ]);
        if (!u) continue;
        const before = `${layout.units(src)}/${capacityOf(src)} vs ${layout.units(dst)}/${capacityOf(dst)}`;
        layout.assign(u, src, -1);
        layout.assign(u, dst);
        notes.push(`${u.id} moved ${src.workerId} -> ${dst.workerId} to rebalance (units/capacity ${before})`);
        moved = true;
        break;
      }
      if (moved) break;
    }
    if (!moved) return;
  }
}
