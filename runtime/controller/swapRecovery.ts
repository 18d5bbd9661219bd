/**
 * Finishes swaps a previous controller left half done (it stopped or
 * crashed mid-swap), from their journals in KV:
 * - 'started' (commit never sent): abort on the workers, so the old
 *   instances take over again with their state and the input the new ones
 *   took. Workers would also do this by themselves after their swap deadline.
 * - 'committing': commit again; then whatever the workers run decides: if
 *   the new instances show up in heartbeats, desired state becomes the new
 *   record, else (the workers rolled back on their own) it stays as it was.
 * An abort holds the swap's upstreams paused again meanwhile (after the
 * resume step they publish, and the new instances take their output): the
 * old instances are subscribed again and have back what the new ones took,
 * handed back across workers through the store, before anything new arrives.
 * A run that changed several computations (a fuse or split) is recovered as
 * one: every member gets its history entry and, if it committed, its record.
 * Runs first in the serial queue; the computations stay in ctx.swapping until done.
 */
import type { AbortReply, ComputationRecord, Handback, HistoryEntry, HistoryStep } from '../../protocol/index.js';
import { controlWorker, type ControllerContext } from './context.js';
import { errorMessage, recordHistorySafely } from './lifecycle.js';
import { placementsOf } from './records.js';
import type { SwapJournal } from './stateStore.js';
import { replayHandbacks } from './swapRunner.js';
import { UpstreamPause } from './upstreams.js';

async function sendAll(ctx: ControllerContext, j: SwapJournal, op: 'commit' | 'abort', handbacks: Handback[] = []): Promise<HistoryStep> {
  const at = Date.now();
  const ctl = op === 'commit' ? { op, swapId: j.swapId } : { op, swapId: j.swapId, reason: 'the controller stopped mid-swap' };
  // An abort goes group after group, as the swap's own rollback would have (downstream members of a fused chain first).
  const known = new Set((j.abortOrder ?? []).flat());
  const groups = op === 'abort' && j.abortOrder ? [...j.abortOrder, j.workers.filter((w) => !known.has(w))] : [j.workers];
  const failed: string[] = [];
  let reinstated = 0;
  for (const group of groups.map((g) => g.filter((w) => j.workers.includes(w))).filter((g) => g.length)) {
    const results = await Promise.allSettled(group.map((w) => controlWorker(ctx, w, ctl, ctx.settings.swapStepTimeoutMs)));
    results.forEach((r, i) => {
      if (r.status === 'rejected') failed.push(`${group[i]}: ${errorMessage(r.reason)}`);
      else {
        handbacks.push(...((r.value as AbortReply).handbacks ?? []));
        reinstated += (r.value as AbortReply).reinstated ?? 0;
      }
    });
  }
  if (failed.length) ctx.log.warn({ swapId: j.swapId, failed }, `recovering swap ${j.swapId}: ${op} failed on ${failed.join('; ')}`);
  return {
    step: op, at, ms: Date.now() - at, ok: failed.length === 0,
    detail: `by the restarted controller on ${j.workers.length} worker(s)` +
      (op === 'abort' ? (reinstated ? `, ${reinstated} old instance(s) reinstated` : ' (the workers had rolled it back by themselves when its lease ran out)') : '') +
      (failed.length ? `; failed on ${failed.join('; ')}` : ''),
  };
}

/** Upstreams paused again, abort (group by group), hand-backs replayed, upstreams resumed: the steps taken. */
async function abortHeld(ctx: ControllerContext, j: SwapJournal): Promise<HistoryStep[]> {
  const steps: HistoryStep[] = [];
  const log = ctx.log.child({ computation: j.name, swapId: j.swapId });
  const pause = new UpstreamPause(ctx, j.swapId, (j.upstreams ?? []).filter((u) => u.bridge || ctx.workers.isAlive(u.workerId)));
  let at = Date.now();
  const notPaused = await pause.pause();
  if (pause.upstreams.length) {
    steps.push({
      step: 'pause', at, ms: Date.now() - at, ok: notPaused.length === 0,
      detail: `again, for the rollback: ${pause.upstreams.length} upstream instance(s)` +
        (notPaused.length ? `; could not pause ${notPaused.map((f) => `${f.upstream.instanceId}: ${errorMessage(f.error)}`).join('; ')}` : ''),
    });
  }
  const handbacks: Handback[] = [];
  steps.push(await sendAll(ctx, j, 'abort', handbacks));
  const replayed = await replayHandbacks(ctx, j.swapId, handbacks, log, `recovery of swap ${j.swapId}`);
  if (replayed) steps.push(replayed);
  at = Date.now();
  const notResumed = await pause.resume();
  if (pause.upstreams.length) {
    steps.push({ step: 'resume', at, ms: Date.now() - at, ok: notResumed.length === 0, ...(notResumed.length ? { detail: 'resume failed (their lease ends the pause)' } : {}) });
  }
  return steps;
}

/** Waits until each worker has sent a heartbeat after `since` (at most one lease). */
async function heartbeatsAfter(ctx: ControllerContext, workers: string[], since: number): Promise<void> {
  const deadline = Date.now() + ctx.settings.leaseMs;
  while (Date.now() < deadline && workers.some((w) => (ctx.workers.get(w)?.lastSeen ?? 0) <= since)) {
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Every computation of a journal: its own, then the others the same run changed (fuse, split). */
export function membersOf(j: SwapJournal): { name: string; history: HistoryEntry; record?: ComputationRecord }[] {
  return [{ name: j.name, history: j.history, ...(j.record ? { record: j.record } : {}) }, ...(j.also ?? [])];
}

async function recoverOne(ctx: ControllerContext, j: SwapJournal): Promise<void> {
  const members = membersOf(j);
  const finish = async (h: Partial<HistoryEntry>, ...steps: HistoryStep[]): Promise<void> => {
    for (const m of members) await recordHistorySafely(ctx, { ...m.history, ...h, at: Date.now(), steps: [...(m.history.steps ?? []), ...steps] });
  };
  const names = members.map((m) => `"${m.name}"`).join(', ');
  const committing = j.phase === 'committing' && members.every((m) => m.record && ctx.store.get(m.name));
  if (committing) {
    const step = await sendAll(ctx, j, 'commit');
    await heartbeatsAfter(ctx, j.workers, step.at + step.ms);
    const fresh = members.flatMap((m) => {
      const before = new Set(placementsOf(ctx.store.get(m.name)!).map((p) => p.instanceId));
      return placementsOf(m.record!).map((p) => p.instanceId).filter((id) => !before.has(id));
    });
    const running = fresh.some((id) => j.workers.some((w) => ctx.workers.get(w)?.reported.has(id)));
    if (running) {
      for (const m of members) {
        const err = await ctx.store.saveOrRetry(m.record!);
        if (err) ctx.log.error({ err, computation: m.name }, `could not write desired state of "${m.name}" to KV (will retry): ${err.message}`);
      }
      await finish({ result: 'ok' }, step);
      ctx.log.warn({ computation: j.name, swapId: j.swapId }, `swap ${j.swapId} of ${names} was committing when the controller stopped: committed now`);
    } else {
      const error = 'the controller stopped while the swap committed, and the workers had rolled it back by then';
      await finish({ result: 'rolled-back', error }, step);
      ctx.log.warn({ computation: j.name, swapId: j.swapId }, `swap ${j.swapId} of ${names}: ${error}; desired state unchanged`);
    }
  } else {
    const steps = await abortHeld(ctx, j);
    const error = 'the controller stopped during the swap; rolled back when it restarted';
    await finish({ result: 'rolled-back', error }, ...steps);
    ctx.log.warn({ computation: j.name, swapId: j.swapId }, `swap ${j.swapId} of ${names} was under way when the controller stopped: rolled back`);
  }
}

export async function recoverInterruptedSwaps(ctx: ControllerContext, journals: SwapJournal[]): Promise<void> {
  for (const j of journals) {
    try {
      await recoverOne(ctx, j);
      await ctx.store.deleteSwapJournal(j.name);
    } catch (err) {
      ctx.log.error({ err, computation: j.name, swapId: j.swapId }, `could not recover swap ${j.swapId} of "${j.name}": ${errorMessage(err)}`);
    } finally {
      for (const m of membersOf(j)) ctx.swapping.delete(m.name);
    }
  }
}
