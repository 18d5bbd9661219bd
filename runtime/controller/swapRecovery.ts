/**
 * Finishes swaps a previous controller left half done (it stopped or
 * crashed mid-swap), from their journals in KV:
 * - 'started' (commit never sent): abort on the workers, so the old
 *   instances take over again with their state and the input the new ones
 *   took. Workers would also do this by themselves after their swap deadline.
 * - 'committing': commit again; then whatever the workers run decides: if
 *   the new instances show up in heartbeats, desired state becomes the new
 *   record, else (the workers rolled back on their own) it stays as it was.
 * Upstream pauses need nothing: they are leases and end by themselves.
 * Runs first in the serial queue; the computations stay in ctx.swapping until done.
 */
import type { HistoryEntry, HistoryStep } from '../../protocol/index.js';
import { controlWorker, type ControllerContext } from './context.js';
import { errorMessage, recordHistorySafely } from './lifecycle.js';
import { placementsOf } from './records.js';
import type { SwapJournal } from './stateStore.js';

async function sendAll(ctx: ControllerContext, j: SwapJournal, op: 'commit' | 'abort'): Promise<HistoryStep> {
  const at = Date.now();
  const ctl = op === 'commit' ? { op, swapId: j.swapId } : { op, swapId: j.swapId, reason: 'the controller stopped mid-swap' };
  const results = await Promise.allSettled(j.workers.map((w) => controlWorker(ctx, w, ctl, ctx.settings.swapStepTimeoutMs)));
  const failed: string[] = [];
  results.forEach((r, i) => {
    if (r.status === 'rejected') failed.push(`${j.workers[i]}: ${errorMessage(r.reason)}`);
  });
  if (failed.length) ctx.log.warn({ swapId: j.swapId, failed }, `recovering swap ${j.swapId}: ${op} failed on ${failed.join('; ')}`);
  return {
    step: op, at, ms: Date.now() - at, ok: failed.length === 0,
    detail: `by the restarted controller on ${j.workers.length} worker(s)${failed.length ? `; failed on ${failed.join('; ')}` : ''}`,
  };
}

/** Waits until each worker has sent a heartbeat after `since` (at most one lease). */
async function heartbeatsAfter(ctx: ControllerContext, workers: string[], since: number): Promise<void> {
  const deadline = Date.now() + ctx.settings.leaseMs;
  while (Date.now() < deadline && workers.some((w) => (ctx.workers.get(w)?.lastSeen ?? 0) <= since)) {
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function recoverOne(ctx: ControllerContext, j: SwapJournal): Promise<void> {
  const rec = ctx.store.get(j.name);
  const finish = (h: Partial<HistoryEntry>, step: HistoryStep): HistoryEntry => ({
    ...j.history, ...h, at: Date.now(), steps: [...(j.history.steps ?? []), step],
  });
  if (j.phase === 'committing' && j.record && rec) {
    const step = await sendAll(ctx, j, 'commit');
    await heartbeatsAfter(ctx, j.workers, step.at + step.ms);
    const before = new Set(placementsOf(rec).map((p) => p.instanceId));
    const fresh = placementsOf(j.record).map((p) => p.instanceId).filter((id) => !before.has(id));
    const running = fresh.some((id) => j.workers.some((w) => ctx.workers.get(w)?.reported.has(id)));
    if (running) {
      const err = await ctx.store.saveOrRetry(j.record);
      if (err) ctx.log.error({ err, computation: j.name }, `could not write desired state of "${j.name}" to KV (will retry): ${err.message}`);
      await recordHistorySafely(ctx, finish({ result: 'ok' }, step));
      ctx.log.warn({ computation: j.name, swapId: j.swapId }, `swap ${j.swapId} of "${j.name}" was committing when the controller stopped: committed now`);
    } else {
      const error = 'the controller stopped while the swap committed, and the workers had rolled it back by then';
      await recordHistorySafely(ctx, finish({ result: 'rolled-back', error }, step));
      ctx.log.warn({ computation: j.name, swapId: j.swapId }, `swap ${j.swapId} of "${j.name}": ${error}; desired state unchanged`);
    }
  } else {
    const step = await sendAll(ctx, j, 'abort');
    const error = 'the controller stopped during the swap; rolled back when it restarted';
    await recordHistorySafely(ctx, finish({ result: 'rolled-back', error }, step));
    ctx.log.warn({ computation: j.name, swapId: j.swapId }, `swap ${j.swapId} of "${j.name}" was under way when the controller stopped: rolled back`);
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
      ctx.swapping.delete(j.name);
    }
  }
}
