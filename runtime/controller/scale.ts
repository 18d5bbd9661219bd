/**
 * Live placement changes, as swap plans (see swapRunner.ts) that keep the
 * code and the version:
 * - scale: every current instance is released; n new instances (index
 *   0..n-1 of n) adopt from all of them, each keeping the keyed state of the
 *   partitions it owns (state belongs to the partition of its key);
 * - move: one instance goes to another worker with its whole state (same
 *   index and count); rebalance.ts uses it.
 * Upstreams are paused and the old instances drain to their fences before
 * the new ones start, so per-key order holds and nothing is lost; a new
 * instance that fails its probation rolls the change back like a swap.
 */
import {
  BadRequestError, ConflictError, NoWorkersError, NotFoundError, PARTITIONS, parseRequest, schemas, MAX_INSTANCES,
  type ComputationRecord, type Placement, type Probation, type ScaleReply, type ScaleRequest, type SwapReply,
} from '../../protocol/index.js';
import { istreamsOf } from './canary.js';
import type { ControllerContext } from './context.js';
import { metadataDiff } from './diff.js';
import { chooseWorkers, newInstanceId } from './placement.js';
import { assignmentFor, withPlacement } from './records.js';
import { execute, noCanaryRunning } from './swap.js';
import { leaveGroup } from './fusion.js';
import { DEFAULT_PROBATION, type AdoptPlan, type SwapPlan, type SwapTarget } from './swapRunner.js';

/**
 * Probation of a scale, move, fuse or split: the code is the one already running (it passed its
 * probation when it was deployed or swapped in), so the new instances pass at their first record, or
 * 200 ms after the upstreams resume without a record. What such a change can break is code that
 * depends on its index, count or place: an init that rejects them fails the adopt step, before
 * anything resumes; a processRecord that throws on its first record within those 200 ms rolls the
 * change back. The output held meanwhile is released at commit: keep it short.
 */
export const PLACEMENT_PROBATION: Probation = { records: 1, ms: 200, callbackTimeoutMs: DEFAULT_PROBATION.callbackTimeoutMs };

const targetOf = (rec: ComputationRecord): SwapTarget => ({
  sha: rec.sha, lang: rec.lang, metadata: rec.metadata, ...(rec.source !== undefined ? { source: rec.source } : {}),
});

/** Key-grouped istreams of `rec` (a key lives in one partition, so at most PARTITIONS instances can share them). */
export function keyedIstreams(rec: ComputationRecord): string[] {
  return rec.metadata.istreams.filter((s) => s.grouping === 'key').map((s) => s.stream);
}

/** Why `rec` cannot run on `n` instances, or undefined. */
export function scaleProblem(rec: ComputationRecord, n: number): string | undefined {
  if (!Number.isInteger(n) || n < 1 || n > MAX_INSTANCES) return `instances must be an integer from 1 to ${MAX_INSTANCES}, got ${n}`;
  const keyed = keyedIstreams(rec);
  if (keyed.length && n > PARTITIONS) {
    return `"${rec.name}" reads ${keyed.map((s) => `"${s}"`).join(', ')} grouped by key, and a key-grouped stream has ${PARTITIONS} partitions: ` +
      `it can run on at most ${PARTITIONS} instances (one per partition), not ${n}`;
  }
  return undefined;
}

/** The plan of a scale of `rec` to `workers.length` instances, instance i on workers[i]. */
export function scalePlan(rec: ComputationRecord, workers: readonly string[]): SwapPlan {
  const n = workers.length;
  const olds = [...rec.placements].sort((a, b) => a.index - b.index);
  const from = olds.map((p) => ({ workerId: p.workerId, instanceId: p.instanceId }));
  const adopts: AdoptPlan[] = workers.map((workerId, index) => ({
    workerId,
    assignment: {
      instanceId: newInstanceId(rec.name, index), computation: rec.name, version: rec.version, sha: rec.sha, lang: rec.lang,
      index, count: n, metadata: rec.metadata,
    },
    from,
    filterByPartition: true,
  }));
  const where = [...new Set(workers)].join(', ');
  return {
    action: 'scale', rec, version: rec.version, fromVersion: rec.version, target: targetOf(rec),
    diff: metadataDiff(rec.metadata, rec.metadata, []),
    releases: olds, adopts, istreams: istreamsOf(rec.metadata), probation: PLACEMENT_PROBATION,
    what: `scale of "${rec.name}" v${rec.version} from ${rec.instances} to ${n} instance(s)`,
    steps: [{ step: 'target', at: Date.now(), ms: 0, ok: true, detail: `${rec.instances} -> ${n} instance(s), on ${where}` }],
    committed: () => ({
      ...rec,
      instances: n,
      placements: adopts.map((a) => ({ index: a.assignment.index, instanceId: a.assignment.instanceId, workerId: a.workerId })),
    }),
  };
}

/** The plan of moving placement `p` of `rec` to worker `to`, with its whole state (same index, count and partitions). */
export function movePlan(rec: ComputationRecord, p: Placement, to: string): SwapPlan {
  const instanceId = newInstanceId(rec.name, p.index);
  const adopt: AdoptPlan = {
    workerId: to,
    assignment: assignmentFor(rec, p, instanceId),
    from: [{ workerId: p.workerId, instanceId: p.instanceId }],
    filterByPartition: false,
  };
  const next: Placement = { ...p, instanceId, workerId: to };
  return {
    action: 'move', rec, version: rec.version, fromVersion: rec.version, target: targetOf(rec),
    diff: metadataDiff(rec.metadata, rec.metadata, []),
    releases: [p], adopts: [adopt], istreams: istreamsOf(rec.metadata), probation: PLACEMENT_PROBATION,
    what: `move of instance ${p.index} of "${rec.name}" v${rec.version} from ${p.workerId} to ${to}`,
    steps: [{ step: 'target', at: Date.now(), ms: 0, ok: true, detail: `instance ${p.index} (${p.instanceId}) ${p.workerId} -> ${to}` }],
    committed: () => withPlacement(rec, p.instanceId, next),
  };
}

/** Where n new instances of `rec` go: spread over the live workers of its lang, its current instances not counted as load. */
export function placeScaled(ctx: ControllerContext, rec: ComputationRecord, n: number): string[] {
  const candidates = ctx.workers.alive(rec.lang).map((w) => w.workerId);
  if (candidates.length === 0) throw new NoWorkersError(`no live ${rec.lang} worker to run the instances of "${rec.name}"; start a worker and scale again`);
  const load = ctx.store.loadByWorker();
  // Its current instances are released by the scale: they do not weigh on where the new ones go.
  for (const p of rec.placements) load.set(p.workerId, (load.get(p.workerId) ?? 1) - 1);
  return chooseWorkers({ candidates, load, count: n, hostOf: (w) => ctx.workers.get(w)?.host ?? '' });
}

const scaleReplyOf = (r: SwapReply, rec: ComputationRecord, placements: Placement[], n: number): ScaleReply => ({
  name: rec.name, result: 'ok', version: rec.version, fromInstances: rec.instances, instances: n, placements,
  ...(r.pauseMs !== undefined ? { pauseMs: r.pauseMs } : {}), ...(r.loadMs !== undefined ? { loadMs: r.loadMs } : {}),
  steps: r.steps,
});

/** `topo.api.scale`: run the computation on `instances` instances, live. Runs in the serial queue. */
export async function scale(ctx: ControllerContext, input: ScaleRequest): Promise<ScaleReply> {
  const req = parseRequest(schemas.api.scale, input, 'scale request');
  const rec = ctx.store.get(req.name);
  if (!rec) throw new NotFoundError(`computation "${req.name}" is not deployed`);
  const problem = scaleProblem(rec, req.instances);
  if (problem) throw new BadRequestError(problem);
  noCanaryRunning(rec);
  if (ctx.swapping.has(rec.name)) throw new ConflictError(`a live change of "${rec.name}" is under way; try again once it is done`);
  if (req.instances === rec.instances) {
    return {
      name: rec.name, result: 'unchanged', version: rec.version, fromInstances: rec.instances, instances: rec.instances,
      placements: [...rec.placements].sort((a, b) => a.index - b.index), steps: [],
    };
  }
  // The members of a fusion group share one parallelism: a fused computation leaves its group first.
  const alone = rec.fusion ? await leaveGroup(ctx, rec.name) : rec;
  const plan = scalePlan(alone, placeScaled(ctx, alone, req.instances));
  if (req.drainBudgetMs !== undefined) plan.drainBudgetMs = req.drainBudgetMs;
  const reply = await execute(ctx, plan);
  const placements = plan.committed().placements;
  return scaleReplyOf(reply, rec, placements, req.instances);
}
