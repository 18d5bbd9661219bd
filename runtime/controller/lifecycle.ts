/** deploy and kill: the two API verbs that change desired state. Both run inside the serial queue. */
import { ensureDataStreams, removeDataConsumers } from './infrastructure.js';
import { removeCheckpoints } from '../state/checkpointStore.js';
import {
  ConflictError, NoWorkersError, NotFoundError, TimeoutError, parseRequest, schemas, truncateError, validateMetadata, MAX_INSTANCES as MAX,
  type Assignment, type ComputationRecord, type DeployReply, type DeployRequest, type HistoryEntry, type KillRequest, type Placement,
} from '../../protocol/index.js';
import { checkTypeDecls } from '../../protocol/types.js';
import { controlWorker, type ControllerContext } from './context.js';
import { bridgesOf } from './bridges.js';
import { checkTypeConflicts } from './diff.js';
import { chooseWorkers, newInstanceId } from './placement.js';
import { placementsOf } from './records.js';
import { progressSink } from './progress.js';

export const MAX_INSTANCES = MAX;

export interface KillReply {
  name: string;
  version: number;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** History error strings are capped (schemas.historyEntry): a 180 KB error must not make the entry unwritable or unreadable. */
export function capHistory(entry: HistoryEntry): HistoryEntry {
  const out: HistoryEntry = { ...entry };
  if (out.error !== undefined) out.error = truncateError(out.error);
  if (out.steps) out.steps = out.steps.map((st) => (st.detail !== undefined ? { ...st, detail: truncateError(st.detail) } : st));
  return out;
}

export async function recordHistorySafely(ctx: ControllerContext, entry: HistoryEntry): Promise<void> {
  try {
    ctx.observeHistory?.(entry);
    await ctx.store.recordHistory(capHistory(entry));
  } catch (err) {
    ctx.log.warn({ err, computation: entry.name, version: entry.version }, `could not write history entry ${entry.name}.${entry.version}: ${errorMessage(err)}`);
  }
}

export async function deploy(ctx: ControllerContext, input: DeployRequest): Promise<DeployReply> {
  const startedAt = Date.now();
  const req = parseRequest(schemas.api.deploy, input, 'deploy request');
  const instances = req.instances ?? 1;
  const metadata = validateMetadata(req.metadata);
  const name = metadata.name;
  const running = ctx.store.get(name);
  if (running) throw new ConflictError(`computation "${name}" is already deployed (version ${running.version}); kill it first`);
  // Its consumer group id would be the bridge group's: their credits would mix.
  if (bridgesOf(ctx).membersOf(name).length) {
    throw new ConflictError(`"${name}" is the consumer group of a registered bridge consumer: deploy the computation under another name, or close that consumer first`);
  }
  // Typed streams: a descriptor that holds its message, and the same type as every other computation on the stream.
  checkTypeDecls(metadata);
  checkTypeConflicts(metadata, ctx.store.all());
  const info = await ctx.artifacts.info(req.sha);
  if (!info || info.deleted) {
    throw new NotFoundError(`artifact ${req.sha} is not in the object store; upload it before deploying "${name}"`);
  }
  // At-least-once streams it declares exist in JetStream before any of its instances publishes or subscribes.
  await ensureDataStreams(ctx.nc, Object.keys(metadata.delivery ?? {}));

  const version = await ctx.store.nextVersion(name);
  const history = (result: 'ok' | 'failed', error?: string): HistoryEntry => ({
    name, version, sha: req.sha, ...(req.source !== undefined ? { source: req.source } : {}),
    action: 'deploy', at: Date.now(), result, ...(error !== undefined ? { error } : {}), metadata, lang: req.lang,
  });

  const candidates = ctx.workers.alive(req.lang).map((w) => w.workerId);
  if (candidates.length === 0) {
    const err = new NoWorkersError(`no live ${req.lang} worker to run "${name}"; start a worker and deploy again`);
    await recordHistorySafely(ctx, history('failed', err.message));
    throw err;
  }
  const chosen = chooseWorkers({ candidates, load: ctx.store.loadByWorker(), count: instances, hostOf: (w) => ctx.workers.get(w)?.host ?? '' });
  const placements: Placement[] = chosen.map((workerId, index) => ({ index, instanceId: newInstanceId(name, index), workerId }));
  // The steps go to the client as they end (progress.ts); a deploy's history entry has none.
  const progress = progressSink(ctx, ctx.log, req.progress, 'deploy', name);
  const step = (s: string, at: number, ok: boolean, detail: string): void => progress?.({ step: s, at, ms: Date.now() - at, ok, detail });
  step('place', startedAt, true, `v${version}: ${instances} instance(s) on ${placements.map((p) => `${p.index}@${p.workerId}`).join(', ')}`);
  const assignmentOf = (p: Placement): Assignment => ({
    instanceId: p.instanceId, computation: name, version, sha: req.sha, lang: req.lang,
    index: p.index, count: instances, metadata,
  });

  for (const p of placements) ctx.inFlight.add(p.instanceId);
  try {
    const assignAt = Date.now();
    const results = await Promise.allSettled(placements.map((p) => controlWorker(ctx, p.workerId, { op: 'assign', assignment: assignmentOf(p) }).then(
      (r) => (step('start', assignAt, true, `instance ${p.index} on ${p.workerId}: init done, running`), r),
      (err: unknown) => {
        step('start', assignAt, false, `instance ${p.index} on ${p.workerId}: ${errorMessage(err)}`);
        throw err;
      },
    )));
    const failedAt = results.findIndex((r) => r.status === 'rejected');
    if (failedAt >= 0) {
      const failure = (results[failedAt] as PromiseRejectedResult).reason as unknown;
      const culprit = placements[failedAt]!;
      ctx.log.error({ computation: name, version, workerId: culprit.workerId, instanceId: culprit.instanceId, err: failure },
        `deploy of "${name}" v${version} failed: worker ${culprit.workerId} could not start instance ${culprit.index}: ${errorMessage(failure)}; undoing the other assigns`);
      // Undo what started; a timed-out assign may still finish on the worker, so it is undone too.
      const undoAt = Date.now();
      const undone = placements.filter((_, i) => results[i]!.status === 'fulfilled' || (results[i] as PromiseRejectedResult).reason instanceof TimeoutError);
      await Promise.allSettled(undone.map((p) => controlWorker(ctx, p.workerId, { op: 'unassign', instanceId: p.instanceId })));
      step('undo', undoAt, true, `stopped ${undone.length} started instance(s): nothing is deployed`);
      await recordHistorySafely(ctx, history('failed', errorMessage(failure)));
      throw failure;
    }

    const record: ComputationRecord = {
      name, version, sha: req.sha, lang: req.lang, metadata, instances, placements,
      ...(req.source !== undefined ? { source: req.source } : {}), deployedAt: Date.now(),
    };
    const saveAt = Date.now();
    try {
      await ctx.store.save(record);
      step('save', saveAt, true, 'desired state written');
    } catch (err) {
      step('save', saveAt, false, `could not write desired state: ${errorMessage(err)}`);
      await Promise.allSettled(placements.map((p) => controlWorker(ctx, p.workerId, { op: 'unassign', instanceId: p.instanceId })));
      await recordHistorySafely(ctx, history('failed', `could not write desired state: ${errorMessage(err)}`));
      throw new Error(`deploy of "${name}" failed: could not write desired state to KV: ${errorMessage(err)}`, { cause: err });
    }
    await recordHistorySafely(ctx, history('ok'));
    ctx.log.info({ computation: name, version, sha: req.sha, placements }, `deployed "${name}" v${version}: ${instances} instance(s) on ${[...new Set(chosen)].join(', ')}`);
    return { computation: record };
  } finally {
    for (const p of placements) ctx.inFlight.delete(p.instanceId);
  }
}

export async function kill(ctx: ControllerContext, input: KillRequest): Promise<KillReply> {
  const req = parseRequest(schemas.api.kill, input, 'kill request');
  const rec = ctx.store.get(req.name);
  if (!rec) throw new NotFoundError(`computation "${req.name}" is not deployed`);
  // KV first: producers watching topo_state stop waiting for credits from this group.
  await ctx.store.remove(rec.name);
  const live = placementsOf(rec).filter((p) => ctx.workers.isAlive(p.workerId));
  for (const p of live) ctx.inFlight.add(p.instanceId);
  try {
    const results = await Promise.allSettled(live.map((p) => controlWorker(ctx, p.workerId, { op: 'unassign', instanceId: p.instanceId })));
    results.forEach((r, i) => {
      if (r.status === 'rejected') {
        const p = live[i]!;
        // Reconciliation unassigns it later if the worker still reports it.
        ctx.log.warn({ computation: rec.name, workerId: p.workerId, instanceId: p.instanceId, err: r.reason },
          `kill "${rec.name}": unassign of ${p.instanceId} on ${p.workerId} failed: ${errorMessage(r.reason)}`);
      }
    });
  } finally {
    for (const p of live) ctx.inFlight.delete(p.instanceId);
  }
  await forgetDurableState(ctx, rec);
  await recordHistorySafely(ctx, {
    name: rec.name, version: rec.version, sha: rec.sha, ...(rec.source !== undefined ? { source: rec.source } : {}),
    action: 'kill', at: Date.now(), result: 'ok', metadata: rec.metadata, lang: rec.lang,
  });
  ctx.log.info({ computation: rec.name, version: rec.version }, `killed "${rec.name}" v${rec.version}`);
  return { name: rec.name, version: rec.version };
}

/**
 * A killed computation's checkpoints and at-least-once consumers go with it: a later deploy of the
 * name starts empty and from the streams' present, as a new computation does.
 */
async function forgetDurableState(ctx: ControllerContext, rec: ComputationRecord): Promise<void> {
  try {
    const checkpoints = ctx.checkpoints ? await removeCheckpoints(ctx.checkpoints, rec.name) : 0;
    const alo = rec.metadata.istreams.map((s) => s.stream).filter((s) => ctx.store.all().some((c) => c.metadata.delivery?.[s]) || rec.metadata.delivery?.[s]);
    const consumers = await removeDataConsumers(ctx.nc, rec.name, alo);
    if (checkpoints || consumers) ctx.log.info({ computation: rec.name, checkpoints, consumers }, `killed "${rec.name}": removed ${checkpoints} checkpoint entr(ies) and ${consumers} stream consumer(s)`);
  } catch (err) {
    ctx.log.warn({ computation: rec.name, err: errorMessage(err) }, `kill "${rec.name}": could not remove its checkpoints or stream consumers: ${errorMessage(err)}`);
  }
}
