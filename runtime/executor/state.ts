/**
 * In-memory keyed state and the pending-timer table, with the snapshot and
 * restore hooks a hot swap uses to hand state to the next version. Shared by
 * the runtime and the test kit so both behave the same.
 */
import type { KeyedState } from '../../sdk/index.js';

export interface StateSnapshot {
  entries: [string, unknown][];
}

export class MemoryState implements KeyedState {
  private readonly map = new Map<string, unknown>();
  get<T = unknown>(key: string): T | undefined {
    return this.map.get(key) as T | undefined;
  }
  set(key: string, value: unknown): void {
    this.map.set(key, value);
  }
  delete(key: string): boolean {
    return this.map.delete(key);
  }
  has(key: string): boolean {
    return this.map.has(key);
  }
  keys(): IterableIterator<string> {
    return this.map.keys();
  }
  get size(): number {
    return this.map.size;
  }
  snapshot(): StateSnapshot {
    return { entries: [...this.map.entries()] };
  }
  restore(snapshot: StateSnapshot): void {
    this.map.clear();
    for (const [k, v] of snapshot.entries) this.map.set(k, v);
  }
}

/** Pending timers: one per key, as setTimer promises. */
export class TimerTable {
  private readonly pending = new Map<string, number>();
  set(key: string, atMs: number): void {
    if (!Number.isFinite(atMs)) throw new TypeError(`setTimer("${key}"): atMs must be a finite number of ms since the epoch`);
    this.pending.set(key, atMs);
  }
  /** Removes and returns timers due at `nowMs`, earliest first. */
  takeDue(nowMs: number): [key: string, atMs: number][] {
    const due: [string, number][] = [];
    for (const [k, at] of this.pending) if (at <= nowMs) due.push([k, at]);
    for (const [k] of due) this.pending.delete(k);
    return due.sort((a, b) => a[1] - b[1]);
  }
  has(key: string): boolean {
    return this.pending.has(key);
  }
  /** Earliest pending time, or undefined when none. */
  next(): number | undefined {
    let min: number | undefined;
    for (const at of this.pending.values()) if (min === undefined || at < min) min = at;
    return min;
  }
  get size(): number {
    return this.pending.size;
  }
  snapshot(): [string, number][] {
    return [...this.pending.entries()];
  }
  restore(entries: [string, number][]): void {
    this.pending.clear();
    for (const [k, at] of entries) this.pending.set(k, at);
  }
}
