/**
 * The oracle: a pure planner. Given the topology, the live workers, live
 * statistics, user overrides and the plan running now, `plan` answers the
 * fusion groups, the instance count of each computation and the placement of
 * every instance, with a note for each decision. No I/O, no clock: the same
 * input gives the same plan.
 *
 *   scaling.ts   instance counts (autoscale, key-grouped cap)
 *   fusion.ts    the chaining rules and the fusion groups
 *   strategy.ts  the placement strategy interface
 *   placement.ts the default strategy, 'spread'
 *   diff.ts      the live changes from one plan to the next
 */
import { buildGraph, sortBy } from './graph.js';
import { fuse } from './fusion.js';
import { heavyReason } from './limits.js';
import { spread } from './placement.js';
import { scaleAll } from './scaling.js';
import { canHost, type PlacementStrategy, type PlacementUnit } from './strategy.js';
import type { InstancePlacement, InstanceRef, OracleComputation, OracleInput, Plan, Runner } from './types.js';

export function plan(input: OracleInput, strategy: PlacementStrategy = spread): Plan {
  const g = buildGraph(input);
  const notes: string[] = [];
  for (const name of input.overrides?.split ?? []) if (!g.byName.has(name)) notes.push(`split ${name} ignored: unknown computation`);
  const scaling = scaleAll(input);
  notes.push(...scaling.notes);
  const fusion = fuse(input, scaling.instances);
  notes.push(...fusion.notes);

  const units: PlacementUnit[] = [];
  for (const grp of fusion.groups) {
    const head = g.byName.get(grp.members[0]!)!;
    for (let index = 0; index < scaling.instances[head.name]!; index++) {
      units.push({ id: `${grp.id}#${index}`, group: grp.id, index, members: grp.members, lang: head.lang });
    }
  }
  const assignment = strategy.place(units, input.workers, input.current?.placements ?? []);
  notes.push(...assignment.notes);

  const workers = new Map(input.workers.map((w) => [w.workerId, w]));
  const placements: InstancePlacement[] = [];
  const unplaced: InstanceRef[] = [];
  for (const u of units) {
    const w = workers.get(assignment.workers[u.id] ?? '');
    if (assignment.workers[u.id] !== undefined && (!w || !canHost(w, u))) {
      notes.push(`${u.id} unplaced: strategy ${strategy.name} chose ${assignment.workers[u.id]}, which cannot host it`);
    }
    for (const m of u.members) {
      if (w && canHost(w, u)) {
        placements.push({ computation: m, index: u.index, workerId: w.workerId, host: w.host, group: u.group, runner: runnerOf(g.byName.get(m)!, input) });
      } else unplaced.push({ computation: m, index: u.index });
    }
  }
  const order = (p: InstanceRef): string => `${p.computation}\0${String(p.index).padStart(9, '0')}`;
  return {
    groups: fusion.groups,
    instances: scaling.instances,
    placements: sortBy(placements, order),
    unplaced: sortBy(unplaced, order),
    notes,
  };
}

/** 'external' for a non-TS operator, 'thread' for a CPU-heavy one, else 'inline'. */
export function runnerOf(c: OracleComputation, input: OracleInput): Runner {
  if (c.lang !== 'ts') return 'external';
  return heavyReason(c, input.stats?.[c.name]) ? 'thread' : 'inline';
}

export { chainable, fuse } from './fusion.js';
export type { Verdict, Fusion } from './fusion.js';
export { scaleAll } from './scaling.js';
export { buildGraph, streamBetween } from './graph.js';
export type { Graph } from './graph.js';
export type { Scaling } from './scaling.js';
export { spread } from './placement.js';
export { canHost, capacityOf } from './strategy.js';
export type { PlacementStrategy, PlacementUnit, Assignment } from './strategy.js';
export { diffPlans } from './diff.js';
export { HEAVY_CPU_MICROS, SATURATED_BUSY, AUTOSCALE_WINDOW, SCALE_UP_BUSY, SCALE_DOWN_BUSY } from './limits.js';
export type * from './types.js';
