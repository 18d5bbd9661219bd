/**
 * Canaries: a new version on a share of the key partitions beside the
 * current one. Instance 0 gives up the partitions; `promote` makes the canary
 * the version on all keys, a rollback gives the partitions back. All three
 * are swap plans (see swapRunner.ts): state moves with its keys.
 */
import {
  BadRequestError, PARTITIONS, partitionsOwnedBy,
  type ComputationRecord, type NormalizedMetadata, type Placement, type Probation, type SnapshotRef,
} from '../../protocol/index.js';
import type { ControllerContext } from './context.js';
import { metadataDiff } from './diff.js';
import { newInstanceId } from './placement.js';
import type { AdoptPlan, SwapPlan, SwapTarget } from './swapRunner.js';

const ref = (p: Placement): SnapshotRef => ({ workerId: p.workerId, instanceId: p.instanceId });

/** Partitions a canary of `percent` % takes: max(1, round(PARTITIONS * percent / 100)). */
export function canaryPartitionCount(percent: number): number {
  return Math.max(1, Math.round((PARTITIONS * percent) / 100));
}

/** Istreams of both versions: their producers are paused. */
export function istreamsOf(...ms: NormalizedMetadata[]): Set<string> {
  return new Set(ms.flatMap((m) => m.istreams.map((s) => s.stream)));
}

export function placementZero(rec: ComputationRecord): Placement {
  const p = rec.placements.find((x) => x.index === 0);
  if (!p) throw new Error(`"${rec.name}" has no instance 0 in desired state`);
  return p;
}

/**
 * Which partitions go to the canary: the first k of those instance 0 owns.
 * Key grouping is required so that each key's records reach exactly one version.
 */
export function canarySplit(rec: ComputationRecord, next: NormalizedMetadata, percent: number): { canary: number[]; rest: number[] } {
  for (const [which, m] of [['running', rec.metadata], ['new', next]] as const) {
    if (m.istreams.length === 0) {
      throw new BadRequestError(`a canary splits "${rec.name}" by key hash, but the ${which} version reads no streams; swap it without --canary`);
    }
    const notKeyed = m.istreams.filter((s) => s.grouping !== 'key');
    if (notKeyed.length) {
      throw new BadRequestError(
        `a canary splits "${rec.name}" by key hash, which needs every istream key-grouped so a key's records reach one version; ` +
          `the ${which} version reads ${notKeyed.map((s) => `"${s.stream}" (${s.grouping})`).join(', ')}; swap it without --canary`,
      );
    }
  }
  const owned0 = partitionsOwnedBy(0, rec.instances);
  const k = canaryPartitionCount(percent);
  if (k > owned0.length) {
    let max = 0;
    for (let p = 1; p <= 99; p++) if (canaryPartitionCount(p) <= owned0.length) max = p;
    throw new BadRequestError(
      `a ${percent}% canary needs ${k} of the ${PARTITIONS} key partitions, but the canary takes them from instance 0 of "${rec.name}", ` +
        `which owns ${owned0.length} (${rec.instances} instances share ${PARTITIONS}); use --canary ${max} or less, or run fewer instances`,
    );
  }
  return { canary: owned0.slice(0, k), rest: owned0.slice(k) };
}

/** Old instance 0 is released; the old version (rest of its partitions) and the new one (the canary's) adopt its state there. */
export async function canaryPlan(
  ctx: ControllerContext, rec: ComputationRecord, target: SwapTarget, percent: number, probation: Probation,
): Promise<SwapPlan> {
  const split = canarySplit(rec, target.metadata, percent);
  const version = await ctx.store.nextVersion(rec.name);
  const old0 = placementZero(rec);
  const from = [ref(old0)];
  const keep: AdoptPlan = {
    workerId: old0.workerId,
    assignment: {
      instanceId: newInstanceId(rec.name, 0), computation: rec.name, version: rec.version, sha: rec.sha, lang: rec.lang,
      index: 0, count: rec.instances, metadata: rec.metadata, partitions: split.rest,
    },
    from, filterByPartition: true,
  };
  const canary: AdoptPlan = {
    workerId: old0.workerId,
    assignment: {
      instanceId: newInstanceId(`${rec.name}-canary`, 0), computation: rec.name, version, sha: target.sha, lang: target.lang,
      index: 0, count: 1, metadata: target.metadata, partitions: split.canary,
    },
    from, filterByPartition: true,
  };
  return {
    action: 'canary', rec, version, fromVersion: rec.version, target,
    diff: metadataDiff(rec.metadata, target.metadata, ctx.store.all()),
    releases: [old0], adopts: [keep, canary], istreams: istreamsOf(rec.metadata, target.metadata), probation,
    what: `canary of "${rec.name}" v${version} on ${percent}% of keys`,
    committed: () => ({
      ...rec,
      placements: rec.placements.map((p) => (p.index === 0 ? { index: 0, instanceId: keep.assignment.instanceId, workerId: old0.workerId, partitions: split.rest } : p)),
      canary: {
        version, sha: target.sha, lang: target.lang, metadata: target.metadata, percent, partitions: split.canary,
        placements: [{ index: 0, instanceId: canary.assignment.instanceId, workerId: old0.workerId, partitions: split.canary }],
        ...(target.source !== undefined ? { source: target.source } : {}), startedAt: Date.now(),
      },
    }),
  };
}

/** Every old instance and the canary are released; the canary's version adopts all keys (instance 0 merges both snapshots). */
export function promotePlan(ctx: ControllerContext, rec: ComputationRecord, probation: Probation): SwapPlan {
  const c = rec.canary!;
  const olds = [...rec.placements].sort((a, b) => a.index - b.index);
  const adopts: AdoptPlan[] = olds.map((p) => ({
    workerId: p.workerId,
    assignment: {
      instanceId: newInstanceId(rec.name, p.index), computation: rec.name, version: c.version, sha: c.sha, lang: c.lang,
      index: p.index, count: rec.instances, metadata: c.metadata,
    },
    from: p.index === 0 ? [ref(p), ...c.placements.map(ref)] : [ref(p)],
    filterByPartition: p.index === 0,
  }));
  return {
    action: 'promote', rec, version: c.version, fromVersion: rec.version,
    target: { sha: c.sha, lang: c.lang, metadata: c.metadata, ...(c.source !== undefined ? { source: c.source } : {}) },
    diff: metadataDiff(rec.metadata, c.metadata, ctx.store.all()),
    releases: [...olds, ...c.placements], adopts, istreams: istreamsOf(rec.metadata, c.metadata), probation,
    what: `promote of "${rec.name}" canary v${c.version}`,
    committed: () => ({
      name: rec.name, version: c.version, sha: c.sha, lang: c.lang, metadata: c.metadata, instances: rec.instances,
      placements: adopts.map((a) => ({ index: a.assignment.index, instanceId: a.assignment.instanceId, workerId: a.workerId })),
      ...(c.source !== undefined ? { source: c.source } : {}), deployedAt: Date.now(),
    }),
  };
}

/** Instance 0 of the current version takes the canary's partitions (and their state) back. */
export function canaryRollbackPlan(ctx: ControllerContext, rec: ComputationRecord, probation: Probation): SwapPlan {
  const c = rec.canary!;
  const old0 = placementZero(rec);
  const back: AdoptPlan = {
    workerId: old0.workerId,
    assignment: {
      instanceId: newInstanceId(rec.name, 0), computation: rec.name, version: rec.version, sha: rec.sha, lang: rec.lang,
      index: 0, count: rec.instances, metadata: rec.metadata,
    },
    from: [ref(old0), ...c.placements.map(ref)],
    filterByPartition: true,
  };
  const { canary: _dropped, ...withoutCanary } = rec;
  return {
    action: 'rollback', rec, version: rec.version, fromVersion: c.version,
    target: { sha: rec.sha, lang: rec.lang, metadata: rec.metadata, ...(rec.source !== undefined ? { source: rec.source } : {}) },
    diff: metadataDiff(c.metadata, rec.metadata, ctx.store.all()),
    releases: [old0, ...c.placements], adopts: [back], istreams: istreamsOf(rec.metadata, c.metadata), probation,
    what: `rollback of "${rec.name}" canary v${c.version}`,
    steps: [{ step: 'target', at: Date.now(), ms: 0, ok: true, detail: `drop canary v${c.version} (${c.percent}% of keys); v${rec.version} takes its keys back` }],
    committed: () => ({
      ...withoutCanary,
      placements: rec.placements.map((p) => (p.index === 0 ? { index: 0, instanceId: back.assignment.instanceId, workerId: old0.workerId } : p)),
    }),
  };
}
