/** Numbers and times as the UI shows them. */

export function rate(perSec: number): string {
  if (perSec >= 10_000) return `${(perSec / 1000).toFixed(0)}k/s`;
  if (perSec >= 1_000) return `${(perSec / 1000).toFixed(1)}k/s`;
  return `${perSec >= 10 ? perSec.toFixed(0) : perSec.toFixed(1).replace(/\.0$/, '')}/s`;
}

export function ms(v: number): string {
  return v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}

export function clock(at: number): string {
  const d = new Date(at);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function dayAndClock(at: number): string {
  const d = new Date(at);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')} ${clock(at)}`;
}

export function ago(at: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - at) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

/** How much of the last second an edge's producer held its output back (credit or pause): 0 to 1. */
export function backpressureShare(busyOrBp: number | undefined): number {
  return Math.min(1, Math.max(0, (busyOrBp ?? 0) / 1000));
}

export type Pressure = 'none' | 'some' | 'high';

export function pressureLevel(share: number): Pressure {
  return share >= 0.25 ? 'high' : share >= 0.05 ? 'some' : 'none';
}
