/**
 * The live changes from one plan to the next, in the order the controller
 * runs them one at a time:
 *
 * 1. split: every current group of 2+ members that is not a group of the next
 *    plan is dissolved (its members then run alone);
 * 2. scale: every computation whose instance count changes (from 0: added;
 *    to 0: removed); new instances start where the next plan places them;
 * 3. move: every instance kept by both plans whose worker changes;
 * 4. fuse: every next group of 2+ members that is not a current group (its
 *    members are on one worker per index by then).
 *
 * Within a kind, sorted by group id, or computation then index.
 */
import { sortBy } from './graph.js';
import type { Change, Plan } from './types.js';

export function diffPlans(current: Plan, next: Plan): Change[] {
  const changes: Change[] = [];
  const key = (members: readonly string[]): string => members.join('\0');
  const curGroups = new Set(current.groups.map((g) => key(g.members)));
  const nextGroups = new Set(next.groups.map((g) => key(g.members)));
  for (const g of sortBy(current.groups, (g) => g.id)) {
    if (g.members.length > 1 && !nextGroups.has(key(g.members))) changes.push({ kind: 'split', group: g.id, members: [...g.members] });
  }
  const names = [...new Set([...Object.keys(current.instances), ...Object.keys(next.instances)])].sort();
  for (const c of names) {
    const from = current.instances[c] ?? 0;
    const to = next.instances[c] ?? 0;
    if (from !== to) changes.push({ kind: 'scale', computation: c, from, to });
  }
  const was = new Map(current.placements.map((p) => [`${p.computation}#${p.index}`, p.workerId]));
  const moves = next.placements.filter((p) => {
    const from = was.get(`${p.computation}#${p.index}`);
    return from !== undefined && from !== p.workerId;
  });
  for (const p of sortBy(moves, (p) => `${p.computation}\0${String(p.index).padStart(9, '0')}`)) {
    changes.push({ kind: 'move', computation: p.computation, index: p.index, fromWorker: was.get(`${p.computation}#${p.index}`)!, toWorker: p.workerId });
  }
  for (const g of sortBy(next.groups, (g) => g.id)) {
    if (g.members.length > 1 && !curGroups.has(key(g.members))) changes.push({ kind: 'fuse', members: [...g.members] });
  }
  return changes;
}
