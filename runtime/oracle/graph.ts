/** Lookups over the topology: computations by name, producers by stream. */
import type { OracleComputation, OracleInput } from './types.js';

export interface Graph {
  byName: ReadonlyMap<string, OracleComputation>;
  /** Stream -> the names of the computations producing it, sorted. */
  producers: ReadonlyMap<string, readonly string[]>;
  /** Computation names, sorted. */
  names: readonly string[];
}

export function buildGraph(input: OracleInput): Graph {
  const byName = new Map<string, OracleComputation>();
  const producers = new Map<string, string[]>();
  for (const c of input.computations) {
    if (byName.has(c.name)) throw new Error(`oracle: computation "${c.name}" is listed twice`);
    byName.set(c.name, c);
    for (const s of c.ostreams) {
      const list = producers.get(s) ?? [];
      list.push(c.name);
      producers.set(s, list);
    }
  }
  for (const list of producers.values()) list.sort();
  return { byName, producers, names: [...byName.keys()].sort() };
}

/** The first stream (by name) that a produces and b reads, if any: the edge `topo fuse a b` means. */
export function streamBetween(a: string, b: string, g: Graph): string | undefined {
  const A = g.byName.get(a);
  const B = g.byName.get(b);
  if (!A || !B) return undefined;
  return [...A.ostreams].sort().find((s) => B.istreams.some((i) => i.stream === s));
}

/** Sorted copy, by a string key: the one tie-breaker used everywhere, so plans are deterministic. */
export function sortBy<T>(items: readonly T[], key: (t: T) => string): T[] {
  return [...items].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
}
