/**
 * The placement strategy interface: as small as Piscina's TaskQueue. A
 * strategy gets the units to place (one per instance index of a fusion
 * group: its members run together on one worker, that is the point of
 * fusion), the workers, and the placements running now; it answers one worker
 * per unit. It must be pure and deterministic; the oracle checks nothing of
 * what it answers beyond dropping units given a worker that cannot host them.
 */
import type { InstancePlacement, Lang, OracleWorker } from './types.js';

export interface PlacementUnit {
  /** `<group id>#<index>`. */
  id: string;
  group: string;
  index: number;
  /** The group's members, in chain order. */
  members: readonly string[];
  /** The members' language: a unit goes only to a worker of this language. */
  lang: Lang;
}

export interface Assignment {
  /** Unit id -> worker id. A unit missing here is unplaced. */
  workers: Record<string, string>;
  /** Why: each decision in one human line. */
  notes: string[];
}

export interface PlacementStrategy {
  readonly name: string;
  place(units: readonly PlacementUnit[], workers: readonly OracleWorker[], current: readonly InstancePlacement[]): Assignment;
}

/** The capacity a strategy may use: `capacity` or 1; <= 0 means draining. */
export function capacityOf(w: OracleWorker): number {
  return w.capacity ?? 1;
}

/** Whether w can take unit u: alive, not draining, same language. */
export function canHost(w: OracleWorker, u: PlacementUnit): boolean {
  return w.alive && capacityOf(w) > 0 && w.lang === u.lang;
}
