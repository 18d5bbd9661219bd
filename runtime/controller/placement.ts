/** Where instances go: pure functions, so the policy is testable without NATS. */
import { randomBytes } from 'node:crypto';

export interface PlacementInput {
  /** Live workers of the right language. */
  candidates: readonly string[];
  /** Instances each worker already runs (all computations). */
  load: ReadonlyMap<string, number>;
  /** Instances of this computation each worker already runs. */
  sameComputation?: ReadonlyMap<string, number>;
  /** How many instances to place. */
  count: number;
  /** The host of each candidate: instances of one computation spread over hosts before workers. */
  hostOf?: (workerId: string) => string;
}

/**
 * Picks a worker per instance: first a host with the fewest instances of this
 * computation (when the workers run on several), then the worker with the
 * fewest instances of it (spread, so one lost host or worker loses few
 * instances), then the least loaded overall, then by id so the result is deterministic.
 */
export function chooseWorkers(input: PlacementInput): string[] {
  if (input.candidates.length === 0) return [];
  const load = new Map<string, number>();
  const same = new Map<string, number>();
  for (const w of input.candidates) {
    load.set(w, input.load.get(w) ?? 0);
    same.set(w, input.sameComputation?.get(w) ?? 0);
  }
  const hostOf = input.hostOf ?? (() => '');
  const onHost = new Map<string, number>();
  for (const w of input.candidates) onHost.set(hostOf(w), (onHost.get(hostOf(w)) ?? 0) + same.get(w)!);
  const out: string[] = [];
  for (let i = 0; i < input.count; i++) {
    let best = input.candidates[0]!;
    for (const w of input.candidates) {
      const dh = onHost.get(hostOf(w))! - onHost.get(hostOf(best))!;
      const ds = same.get(w)! - same.get(best)!;
      const dl = load.get(w)! - load.get(best)!;
      if (dh < 0 || (dh === 0 && (ds < 0 || (ds === 0 && (dl < 0 || (dl === 0 && w < best)))))) best = w;
    }
    out.push(best);
    same.set(best, same.get(best)! + 1);
    load.set(best, load.get(best)! + 1);
    onHost.set(hostOf(best), onHost.get(hostOf(best))! + 1);
  }
  return out;
}

/** `<name>-<index>-<6 hex>`: unique per placement, so a re-placed instance never collides with its stale copy. */
export function newInstanceId(name: string, index: number): string {
  return `${name}-${index}-${randomBytes(3).toString('hex')}`;
}
