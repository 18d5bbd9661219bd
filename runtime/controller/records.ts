/**
 * Reading a ComputationRecord that may carry a canary: its placements, and
 * the assignment a worker needs to (re)start one of them.
 */
import type { Assignment, CanaryRecord, ComputationRecord, Placement } from '../../protocol/index.js';

/** Every placement of a computation: the current version's, then the canary's. */
export function placementsOf(rec: ComputationRecord): Placement[] {
  return rec.canary ? [...rec.placements, ...rec.canary.placements] : rec.placements;
}

/** The canary the placement belongs to, or undefined when it runs the current version. */
export function canaryOf(rec: ComputationRecord, instanceId: string): CanaryRecord | undefined {
  return rec.canary?.placements.some((p) => p.instanceId === instanceId) ? rec.canary : undefined;
}

/** The assignment that starts placement `p` of `rec` (the canary's version for a canary placement). */
export function assignmentFor(rec: ComputationRecord, p: Placement, instanceId: string = p.instanceId): Assignment {
  const canary = canaryOf(rec, p.instanceId);
  const v = canary ?? rec;
  return {
    instanceId, computation: rec.name, version: v.version, sha: v.sha, lang: v.lang,
    index: p.index, count: canary ? canary.placements.length : rec.instances, metadata: v.metadata,
    ...(p.partitions ? { partitions: [...p.partitions] } : {}),
    ...(rec.fusion && !canary ? { fusion: rec.fusion } : {}),
  };
}

/** A copy of `rec` with the placement `oldInstanceId` (current or canary) replaced by `next`. */
export function withPlacement(rec: ComputationRecord, oldInstanceId: string, next: Placement): ComputationRecord {
  const swapIn = (ps: Placement[]) => ps.map((p) => (p.instanceId === oldInstanceId ? next : p));
  return {
    ...rec,
    placements: swapIn(rec.placements),
    ...(rec.canary ? { canary: { ...rec.canary, placements: swapIn(rec.canary.placements) } } : {}),
  };
}
