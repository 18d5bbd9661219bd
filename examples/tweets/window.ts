/**
 * Window arithmetic and top-N ranking shared by every counter version, so a
 * new version (counter_v2.ts) changes behaviour, not the state layout a hot
 * swap hands over.
 */
import type { KeyedState } from '../../sdk/index.js';
import type { TagCount } from './model.js';

export const WINDOW_MS = 5_000;

/** Windows are aligned to multiples of WINDOW_MS, so all instances (and versions) share boundaries. */
export function nextWindowEnd(nowMs: number): number {
  return (Math.floor(nowMs / WINDOW_MS) + 1) * WINDOW_MS;
}

/** The keyed state holds exactly the counts of the current window: tag -> count. */
export function topTags(state: KeyedState, n: number): TagCount[] {
  const all: TagCount[] = [];
  for (const tag of state.keys()) all.push({ tag, count: state.get<number>(tag) ?? 0 });
  // Ties broken by name so the output does not depend on arrival order.
  all.sort((a, b) => b.count - a.count || (a.tag < b.tag ? -1 : 1));
  return all.slice(0, n);
}

/** Forgets the window that was just emitted. */
export function clearWindow(state: KeyedState): void {
  for (const tag of [...state.keys()]) state.delete(tag);
}
