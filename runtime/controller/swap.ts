/**
 * The live-change API: swap (optionally as a canary or a dry run), promote,
 * rollback and history. Each checks its request, builds a plan and hands it
 * to runSwap. Everything but dry runs and history runs in the serial queue.
 */
import { ensureDataStreams } from './infrastructure.js';
import {
  BadRequestError, ConflictError, NotFoundError, parseRequest, schemas, validateMetadata,
  type ComputationRecord, type HistoryEntry, type HistoryReply, type HistoryRequest, type Probation, type PromoteRequest,
  type RollbackRequest, type SwapReply, type SwapRequest,
} from '../../protocol/index.js';
import { canaryPlan, canaryRollbackPlan, istreamsOf, promotePlan } from './canary.js';
import type { ControllerContext } from './context.js';
import { checkTypeConflicts, metadataDiff } from './diff.js';
import { checkTypeDecls } from '../../protocol/types.js';
import { leaveGroup } from './fusion.js';
import { newInstanceId } from './placement.js';
import { progressSink } from './progress.js';
import { DEFAULT_PROBATION, namesOf, runSwap, type AdoptPlan, type SwapPlan, type SwapTarget } from './swapRunner.js';
import { isLang } from './workerTable.js';

/** DEFAULT_PROBATION with the request's overrides (already checked by schemas.api.swap). */
export function probationOf(p: Partial<Probation> | undefined): Probation {
  const out = { ...DEFAULT_PROBATION };
  if (p) for (const k of Object.keys(DEFAULT_PROBATION) as (keyof Probation)[]) if (p[k] !== undefined) out[k] = p[k];
  return out;
}

function deployed(ctx: ControllerContext, name: string): ComputationRecord {
  const rec = ctx.store.get(name);
  if (!rec) throw new NotFoundError(`computation "${name}" is not deployed`);
  return rec;
}

/** The new code must be able to run where the old one does, and be in the object store. */
async function checkTarget(ctx: ControllerContext, rec: ComputationRecord, target: SwapTarget): Promise<void> {
  if (target.lang !== rec.lang) {
    throw new BadRequestError(
      `"${rec.name}" runs on ${rec.lang} workers; a ${target.lang} version cannot take over its state live (kill it and deploy the new version)`,
    );
  }
  const info = await ctx.artifacts.info(target.sha);
  if (!info || info.deleted) throw new NotFoundError(`artifact ${target.sha} is not in the object store; upload it before swapping "${rec.name}"`);
}

export function noCanaryRunning(rec: ComputationRecord): void {
  if (rec.canary) {
    throw new ConflictError(
      `a canary of "${rec.name}" (v${rec.canary.version} on ${rec.canary.percent}% of keys) is running; promote or roll back the canary first`,
    );
  }
}

/** Swap every instance of `rec` to `target`, each adopting its predecessor's state on the same worker. */
async function fullSwapPlan(
  ctx: ControllerContext, rec: ComputationRecord, target: SwapTarget, probation: Probation,
  opts: { action: 'swap' | 'rollback'; what?: (version: number) => string; steps?: SwapPlan['steps'] } = { action: 'swap' },
): Promise<SwapPlan> {
  const version = await ctx.store.nextVersion(rec.name);
  const olds = [...rec.placements].sort((a, b) => a.index - b.index);
  const adopts: AdoptPlan[] = olds.map((p) => ({
    workerId: p.workerId,
    assignment: {
      instanceId: newInstanceId(rec.name, p.index), computation: rec.name, version, sha: target.sha, lang: target.lang,
      index: p.index, count: rec.instances, metadata: target.metadata,
      // A fused computation stays in its group: the new version takes over its in-process edges.
      ...(rec.fusion ? { fusion: rec.fusion } : {}),
    },
    from: [{ workerId: p.workerId, instanceId: p.instanceId }],
    filterByPartition: false,
  }));
  return {
    action: opts.action, rec, version, fromVersion: rec.version, target,
    diff: metadataDiff(rec.metadata, target.metadata, ctx.store.all()),
    releases: olds, adopts, istreams: istreamsOf(rec.metadata, target.metadata), probation,
    what: opts.what?.(version) ?? `swap of "${rec.name}" to v${version}`,
    ...(opts.steps ? { steps: opts.steps } : {}),
    committed: () => ({
      name: rec.name, version, sha: target.sha, lang: target.lang, metadata: target.metadata, instances: rec.instances,
      placements: adopts.map((a) => ({ index: a.assignment.index, instanceId: a.assignment.instanceId, workerId: a.workerId })),
      ...(target.source !== undefined ? { source: target.source } : {}), deployedAt: Date.now(),
      ...(rec.fusion ? { fusion: rec.fusion } : {}), ...(rec.noFuse ? { noFuse: true } : {}),
    }),
  };
}

/** Runs a plan with the computation marked as swapping, so reconciliation leaves it alone. */
export async function execute(ctx: ControllerContext, plan: SwapPlan): Promise<SwapReply> {
  const dead = plan.releases.filter((p) => !ctx.workers.isAlive(p.workerId));
  if (dead.length) {
    throw new ConflictError(
      `${plan.what}: ${dead.map((p) => `instance ${p.instanceId} is on worker ${p.workerId}`).join(', ')}, which is not alive; ` +
        'wait until it is re-placed on a live worker, then try again',
    );
  }
  const names = namesOf(plan);
  for (const n of names) ctx.swapping.add(n);
  try {
    return await runSwap(ctx, plan);
  } finally {
    for (const n of names) ctx.swapping.delete(n);
  }
}

/** `topo.api.swap`. With dryRun it only reports the diff (safe outside the queue). */
export async function swap(ctx: ControllerContext, input: SwapRequest): Promise<SwapReply> {
  const req = parseRequest(schemas.api.swap, input, 'swap request');
  let rec = deployed(ctx, req.name);
  const declared = req.metadata.name;
  if (declared !== req.name) {
    throw new BadRequestError(`the file defines ${JSON.stringify(declared)}, not "${req.name}": a swap replaces a computation by one of the same name`);
  }
  const metadata = validateMetadata(req.metadata);
  // Typed streams: refused before anything changes (a dry run too) when a type differs from the running topology's.
  checkTypeDecls(metadata);
  checkTypeConflicts(metadata, ctx.store.all(), { self: req.canary !== undefined });
  const probation = probationOf(req.probation);
  if (!req.dryRun) await ensureDataStreams(ctx.nc, Object.keys(metadata.delivery ?? {}));
  const target: SwapTarget = { sha: req.sha, lang: req.lang, metadata, ...(req.source !== undefined ? { source: req.source } : {}) };
  await checkTarget(ctx, rec, target);
  noCanaryRunning(rec);
  // A canary reads a share of the partitions on NATS: a fused computation leaves its group first.
  if (req.canary !== undefined && !req.dryRun && rec.fusion) rec = await leaveGroup(ctx, rec.name);
  const plan = req.canary !== undefined
    ? await canaryPlan(ctx, rec, target, req.canary, probation)
    : await fullSwapPlan(ctx, rec, target, probation);
  if (req.drainBudgetMs !== undefined) plan.drainBudgetMs = req.drainBudgetMs;
  reporting(ctx, plan, req.progress, 'swap');
  if (req.dryRun) {
    return { name: rec.name, result: 'dry-run', fromVersion: rec.version, version: plan.version, sha: target.sha, steps: [], diff: plan.diff };
  }
  return execute(ctx, plan);
}

/** `topo.api.promote`: the canary's version takes every key. */
export async function promote(ctx: ControllerContext, input: PromoteRequest): Promise<SwapReply> {
  const req = parseRequest(schemas.api.promote, input, 'promote request');
  const rec = deployed(ctx, req.name);
  if (!rec.canary) throw new BadRequestError(`no canary running for "${rec.name}" (start one with \`topo swap ${rec.name} <file> --canary <percent>\`)`);
  return execute(ctx, reporting(ctx, promotePlan(ctx, rec, probationOf(undefined)), req.progress, 'promote'));
}

const PLACEMENT_ACTIONS: ReadonlySet<HistoryEntry['action']> = new Set(['scale', 'move', 'fuse', 'split']);

const ranOk = (e: HistoryEntry): boolean => e.result === 'ok' && e.action !== 'kill';

/** The version `rec` came from: fromVersion of the entry that made it current, else the highest earlier version that ran. */
export function previousVersion(rec: ComputationRecord, entries: HistoryEntry[]): number | undefined {
  // Placement changes (scale, move, fuse, split) keep the version: the entry that made it current is the one before them.
  const current = entries.filter((e) => e.version === rec.version && ranOk(e) && !PLACEMENT_ACTIONS.has(e.action)).at(-1);
  if (current?.fromVersion !== undefined) return current.fromVersion;
  const earlier = entries.filter((e) => ranOk(e) && e.version < rec.version).map((e) => e.version);
  return earlier.length ? Math.max(...earlier) : undefined;
}

/** `topo.api.rollback`: drops a running canary, or swaps back to the code of an earlier version (as a new version). */
export async function rollback(ctx: ControllerContext, input: RollbackRequest): Promise<SwapReply> {
  const req = parseRequest(schemas.api.rollback, input, 'rollback request');
  const name = req.name;
  const rec = deployed(ctx, name);
  if (rec.canary) {
    if (req.to !== undefined && req.to !== rec.version) {
      throw new BadRequestError(
        `a canary of "${name}" is running: rollback drops it and keeps v${rec.version} on all keys; roll back without --to first`,
      );
    }
    return execute(ctx, reporting(ctx, canaryRollbackPlan(ctx, rec, probationOf(undefined)), req.progress, 'rollback'));
  }
  const entries = await ctx.store.history(name);
  const to = req.to ?? previousVersion(rec, entries);
  if (to === undefined) throw new NotFoundError(`"${name}" has no earlier version in history to roll back to`);
  if (to === rec.version) throw new BadRequestError(`"${name}" already runs version ${to}`);
  const ofVersion = entries.filter((e) => e.version === to);
  if (ofVersion.length === 0) throw new NotFoundError(`version ${to} of ${name} is not in history`);
  const usable = ofVersion.filter((e) => e.metadata !== undefined && isLang(e.lang));
  const entry = usable.filter(ranOk).at(-1);
  if (!entry) {
    throw new NotFoundError(
      usable.length
        ? `version ${to} of ${name} never ran (${usable.at(-1)!.action} ${usable.at(-1)!.result}); pick another with --to`
        : `version ${to} of ${name} is in history without its metadata (recorded before swaps existed); deploy that file again instead`,
    );
  }
  const target: SwapTarget = { sha: entry.sha, lang: entry.lang!, metadata: entry.metadata!, ...(entry.source !== undefined ? { source: entry.source } : {}) };
  await checkTarget(ctx, rec, target);
  checkTypeConflicts(target.metadata, ctx.store.all());
  const plan = await fullSwapPlan(ctx, rec, target, probationOf(undefined), {
    action: 'rollback',
    what: (version) => `rollback of "${name}" from v${rec.version} to the code of v${to} (as v${version})`,
    steps: [{ step: 'target', at: Date.now(), ms: 0, ok: true, detail: `back to the code of v${to} (sha ${entry.sha.slice(0, 12)})` }],
  });
  return execute(ctx, reporting(ctx, plan, req.progress, 'rollback'));
}

/** `plan` with its steps published to the client as they end, when the request named a progress id (progress.ts). */
function reporting(ctx: ControllerContext, plan: SwapPlan, progressId: string | undefined, request: 'swap' | 'rollback' | 'promote'): SwapPlan {
  const progress = progressSink(ctx, ctx.log, progressId, request, plan.rec.name);
  if (progress) plan.progress = progress;
  return plan;
}

/** `topo.api.history`: every entry of a name, every revision, oldest first. */
export async function history(ctx: ControllerContext, input: HistoryRequest): Promise<HistoryReply> {
  const { name } = parseRequest(schemas.api.history, input, 'history request');
  const entries = await ctx.store.history(name);
  if (entries.length === 0) throw new NotFoundError(`no history for "${name}": it was never deployed`);
  return { entries };
}
