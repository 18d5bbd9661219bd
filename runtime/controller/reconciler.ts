/**
 * Keeps what workers run in line with desired state:
 * - placements on a worker that is not alive (lease expired, or never seen
 *   since the controller started) are re-placed on a live worker of the same lang;
 * - a live worker that does not report an instance KV gives it is assigned it again;
 * - a live worker that reports an instance KV does not give it is told to unassign it.
 * The two heartbeat checks wait reconcileGraceMs so in-between states settle first.
 * A computation whose instances keep failing (assign/init throws on re-placement,
 * or stuck reports: a synchronous hang that cost its worker) is in cool-down
 * (incidents.ts): its instances are not re-placed or re-assigned until it ends.
 * Every correction runs in the serial queue and re-checks its reason there.
 * Canary placements count like any other; computations with a swap under way
 * (ctx.swapping) are left alone, since their workers run instances KV does not list yet.
 */
import type { ComputationRecord } from '../../protocol/index.js';
import { controlWorker, type ControllerContext } from './context.js';
import { chooseWorkers, newInstanceId } from './placement.js';
import { assignmentFor, placementsOf, withPlacement } from './records.js';
import type { WorkerEntry } from './workerTable.js';
import { incidentsOf } from './incidents.js';

interface Backoff {
  retryAt: number;
  delayMs: number;
}

const MAX_BACKOFF_MS = 30_000;

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class Reconciler {
  /** Per worker: instanceId -> since when it has been missing from heartbeats. */
  private readonly missingSince = new Map<string, Map<string, number>>();
  /** Per worker: instanceId -> since when it has been reported without being desired. */
  private readonly straySince = new Map<string, Map<string, number>>();
  /** Corrections already in the queue, by `<kind>:<workerId>:<instanceId>`. */
  private readonly queued = new Set<string>();
  /** Instances whose last (re)assign failed or did not show up in heartbeats, by instanceId. */
  private readonly backoff = new Map<string, Backoff>();
  /** Computations for which "waiting for a worker" was already logged. */
  private readonly waitingLogged = new Set<string>();
  private orphanRunQueued = false;
  /** Instances of a restarted worker, to assign again: when their old process was last heard from (recovery time). */
  private readonly diedAt = new Map<string, number>();
  /** Cool-downs already logged, by computation: their end time. */
  private readonly coolLogged = new Map<string, number>();

  constructor(private readonly ctx: ControllerContext) {}

  /** Called after every heartbeat of a live worker. */
  onHeartbeat(worker: WorkerEntry, now: number): void {
    const { ctx } = this;
    const grace = ctx.settings.reconcileGraceMs;
    const expected = new Set<string>();
    const oldMissing = this.missingSince.get(worker.workerId);
    const missing = new Map<string, number>();
    for (const { rec, placement } of ctx.store.placementsOn(worker.workerId)) {
      const id = placement.instanceId;
      expected.add(id);
      if (ctx.inFlight.has(id) || ctx.swapping.has(rec.name)) continue;
      if (worker.reported.has(id)) {
        this.backoff.delete(id);
        continue;
      }
      const since = oldMissing?.get(id) ?? now;
      missing.set(id, since);
      if (now - since >= grace && !this.inBackoff(id, now) && !this.coolingDown(rec.name, now)) this.enqueueReassign(worker.workerId, id);
    }
    this.missingSince.set(worker.workerId, missing);

    const oldStray = this.straySince.get(worker.workerId);
    const stray = new Map<string, number>();
    for (const [id, report] of worker.reported) {
      if (expected.has(id) || ctx.inFlight.has(id) || ctx.swapping.has(report.computation)) continue;
      const since = oldStray?.get(id) ?? now;
      stray.set(id, since);
      if (now - since >= grace) this.enqueueUnassign(worker.workerId, id);
    }
    this.straySince.set(worker.workerId, stray);
  }

  /**
   * A worker came back as a new process (its supervisor restarted it): it runs nothing, so its
   * instances are assigned again at once rather than after the grace a heartbeat check waits.
   * They start from their checkpoints.
   */
  onWorkerRestarted(workerId: string, now: number, lastSeenBefore?: number): void {
    const { ctx } = this;
    this.forgetWorker(workerId);
    for (const { rec, placement } of ctx.store.placementsOn(workerId)) {
      const id = placement.instanceId;
      if (ctx.inFlight.has(id) || ctx.swapping.has(rec.name) || this.coolingDown(rec.name, now)) continue;
      this.backoff.delete(id);
      if (lastSeenBefore !== undefined) this.diedAt.set(id, lastSeenBefore);
      this.enqueueReassign(workerId, id);
    }
  }

  /** A worker died or was forgotten: its heartbeat bookkeeping is void. */
  forgetWorker(workerId: string): void {
    this.missingSince.delete(workerId);
    this.straySince.delete(workerId);
  }

  /**
   * Drops heartbeat bookkeeping of workers the table no longer knows (a pending id dropped
   * without a death: these maps must not grow with ids a flood of heartbeats made up), and
   * backoff entries of instances no longer in desired state.
   */
  prune(): void {
    // A killed computation's failures and cool-down go with it (a new deploy of the name starts afresh).
    const incidents = incidentsOf(this.ctx);
    for (const name of incidents.names()) if (!this.ctx.store.get(name)) incidents.forget(name);
    for (const m of [this.missingSince, this.straySince]) {
      for (const id of m.keys()) if (!this.ctx.workers.get(id)) m.delete(id);
    }
    if (this.backoff.size === 0) return;
    const live = new Set<string>();
    for (const rec of this.ctx.store.all()) for (const p of placementsOf(rec)) live.add(p.instanceId);
    for (const id of this.backoff.keys()) if (!live.has(id)) this.backoff.delete(id);
  }

  /** True when some placement sits on a worker that is not alive and may be re-placed now. */
  hasOrphans(now: number): boolean {
    for (const rec of this.ctx.store.all()) {
      if (this.ctx.swapping.has(rec.name)) continue;
      if (this.coolingDown(rec.name, now)) continue;
      for (const p of placementsOf(rec)) if (this.isOrphan(p.workerId, now) && !this.inBackoff(p.instanceId, now)) return true;
    }
    return false;
  }

  /** Queues one re-placement pass (coalesced: at most one waits in the queue). */
  requestOrphanPlacement(): void {
    if (this.orphanRunQueued) return;
    this.orphanRunQueued = true;
    void this.ctx.queue
      .run(async () => {
        this.orphanRunQueued = false;
        await this.placeOrphans();
      })
      .catch((err: unknown) => this.ctx.log.error({ err }, `re-placement pass failed: ${errorMessage(err)}`));
  }

  private isOrphan(workerId: string, now: number): boolean {
    const w = this.ctx.workers.get(workerId);
    if (w) return !w.alive;
    // Unknown worker: right after a controller restart it may simply not have sent a heartbeat yet.
    return now - this.ctx.startedAt > this.ctx.settings.leaseMs;
  }

  /** A computation whose instances keep failing is left alone for a while (see incidents.ts); logged once per cool-down. */
  private coolingDown(name: string, now: number): boolean {
    const c = incidentsOf(this.ctx).coolDownOf(name, now);
    if (!c) {
      this.coolLogged.delete(name);
      return false;
    }
    if (this.coolLogged.get(name) !== c.until) {
      this.coolLogged.set(name, c.until);
      this.ctx.log.warn({ computation: name, coolDown: c },
        `"${name}" is in cool-down until ${new Date(c.until).toISOString()} (${c.failures} failures within ${c.windowMs} ms; last: ${c.reason}): its instances are not re-placed meanwhile`);
    }
    return true;
  }

  /** Counts a failed (re)assign of an instance of `name` towards its cool-down. */
  private noteFailure(name: string, reason: string): void {
    if (incidentsOf(this.ctx).noteFailure(name, reason)) this.coolingDown(name, Date.now());
  }

  private inBackoff(instanceId: string, now: number): boolean {
    const b = this.backoff.get(instanceId);
    return b !== undefined && now < b.retryAt;
  }

  private noteAttempt(instanceId: string, now: number): void {
    const prev = this.backoff.get(instanceId);
    const delayMs = Math.min(MAX_BACKOFF_MS, prev ? prev.delayMs * 2 : Math.max(2 * this.ctx.settings.heartbeatMs, 250));
    this.backoff.set(instanceId, { retryAt: now + delayMs, delayMs });
  }

  private async placeOrphans(): Promise<void> {
    const { ctx } = this;
    for (const name of ctx.store.all().map((r) => r.name)) {
      const rec = ctx.store.get(name);
      if (rec && !ctx.swapping.has(name)) await this.placeOrphansOf(rec);
    }
  }

  private async placeOrphansOf(rec: ComputationRecord): Promise<void> {
    const { ctx } = this;
    const now = Date.now();
    if (this.coolingDown(rec.name, now)) return;
    const orphans = placementsOf(rec).filter((p) => this.isOrphan(p.workerId, now) && !this.inBackoff(p.instanceId, now));
    if (orphans.length === 0) return;
    const candidates = ctx.workers.alive(rec.lang).map((w) => w.workerId);
    if (candidates.length === 0) {
      if (!this.waitingLogged.has(rec.name)) {
        this.waitingLogged.add(rec.name);
        ctx.log.warn({ computation: rec.name, instances: orphans.map((p) => p.instanceId) },
          `no live ${rec.lang} worker: ${orphans.length} instance(s) of "${rec.name}" wait for one to register`);
      }
      return;
    }
    this.waitingLogged.delete(rec.name);

    let current = rec;
    let moved = 0;
    for (const orphan of orphans) {
      const same = new Map<string, number>();
      for (const p of placementsOf(current)) if (ctx.workers.isAlive(p.workerId)) same.set(p.workerId, (same.get(p.workerId) ?? 0) + 1);
      // A fused instance goes where the live instance of the same index of its group runs (they call each other directly).
      const [target] = this.fusedPartner(rec, orphan.index, now) ?? chooseWorkers({
        candidates, load: ctx.store.loadByWorker(), sameComputation: same, count: 1, hostOf: (w) => ctx.workers.get(w)?.host ?? '',
      });
      if (!target) continue;
      const instanceId = newInstanceId(rec.name, orphan.index);
      ctx.inFlight.add(instanceId);
      try {
        await controlWorker(ctx, target, { op: 'assign', assignment: assignmentFor(current, orphan, instanceId) });
        current = withPlacement(current, orphan.instanceId, { ...orphan, instanceId, workerId: target });
        moved++;
        this.backoff.delete(orphan.instanceId);
        const lastSeen = ctx.workers.get(orphan.workerId)?.lastSeen;
        const recoveredMs = lastSeen !== undefined ? Date.now() - lastSeen : undefined;
        if (recoveredMs !== undefined) incidentsOf(ctx).noteRecovery(rec.name, recoveredMs);
        ctx.log.warn({ computation: rec.name, index: orphan.index, from: orphan.workerId, to: target, oldInstanceId: orphan.instanceId, instanceId, recoveredMs },
          `re-placed instance ${orphan.index} of "${rec.name}" v${rec.version}: worker ${orphan.workerId} is not alive, now on ${target} as ${instanceId}` +
            (recoveredMs !== undefined ? ` (running again ${recoveredMs} ms after its worker's last heartbeat)` : ''));
        // Memory first, so the next heartbeat of the target does not see a stray.
        const err = await ctx.store.saveOrRetry(current);
        if (err) ctx.log.error({ err, computation: rec.name }, `could not write re-placement of "${rec.name}" to KV (will retry): ${err.message}`);
      } catch (err) {
        this.noteAttempt(orphan.instanceId, Date.now());
        this.noteFailure(rec.name, `re-placing instance ${orphan.index} on ${target} failed: ${errorMessage(err)}`);
        ctx.log.error({ err, computation: rec.name, index: orphan.index, workerId: target },
          `could not re-place instance ${orphan.index} of "${rec.name}" on ${target}: ${errorMessage(err)}; retrying later`);
      } finally {
        ctx.inFlight.delete(instanceId);
      }
    }
    if (moved > 0) ctx.log.info({ computation: rec.name, moved }, `"${rec.name}": ${moved} instance(s) re-placed`);
  }

  /** The live worker running instance `index` of another member of `rec`'s fusion group, if any. */
  private fusedPartner(rec: ComputationRecord, index: number, now: number): [string] | undefined {
    const group = rec.fusion?.group;
    if (!group) return undefined;
    for (const other of this.ctx.store.all()) {
      if (other.name === rec.name || other.fusion?.group !== group) continue;
      const p = other.placements.find((x) => x.index === index);
      if (p && !this.isOrphan(p.workerId, now) && this.ctx.workers.isAlive(p.workerId)) return [p.workerId];
    }
    return undefined;
  }

  private enqueueReassign(workerId: string, instanceId: string): void {
    const key = `assign:${workerId}:${instanceId}`;
    if (this.queued.has(key)) return;
    this.queued.add(key);
    void this.ctx.queue
      .run(() => this.reassign(workerId, instanceId))
      .finally(() => this.queued.delete(key))
      .catch((err: unknown) => this.ctx.log.error({ err }, `reassign failed: ${errorMessage(err)}`));
  }

  private async reassign(workerId: string, instanceId: string): Promise<void> {
    const { ctx } = this;
    const found = ctx.store.findInstance(instanceId);
    const worker = ctx.workers.get(workerId);
    // Re-check: things may have changed while this waited in the queue.
    if (!found || found.placement.workerId !== workerId || !worker?.alive || worker.reported.has(instanceId)) return;
    const { rec, placement } = found;
    ctx.log.warn({ computation: rec.name, workerId, instanceId },
      `worker ${workerId} does not run instance ${placement.index} of "${rec.name}" (${instanceId}) although desired state says so; assigning it again`);
    ctx.inFlight.add(instanceId);
    try {
      await controlWorker(ctx, workerId, { op: 'assign', assignment: assignmentFor(rec, placement) });
      // Backs off even on success: a worker that accepts but never reports it must not be asked every few heartbeats.
      // The backoff ends when a heartbeat reports the instance.
      this.noteAttempt(instanceId, Date.now());
      const died = this.diedAt.get(instanceId);
      this.diedAt.delete(instanceId);
      const recoveredMs = died !== undefined ? Date.now() - died : undefined;
      if (recoveredMs !== undefined) incidentsOf(ctx).noteRecovery(rec.name, recoveredMs);
      ctx.log.info({ computation: rec.name, workerId, instanceId, recoveredMs }, `worker ${workerId} accepted ${instanceId} again` +
        (recoveredMs !== undefined ? ` (running again ${recoveredMs} ms after its restarted worker's last heartbeat)` : ''));
    } catch (err) {
      this.noteAttempt(instanceId, Date.now());
      this.noteFailure(rec.name, `assigning ${instanceId} again on ${workerId} failed: ${errorMessage(err)}`);
      ctx.log.error({ err, computation: rec.name, workerId, instanceId }, `could not assign ${instanceId} again on ${workerId}: ${errorMessage(err)}; retrying later`);
    } finally {
      ctx.inFlight.delete(instanceId);
      // Missing time counts afresh from now on.
      this.missingSince.get(workerId)?.delete(instanceId);
    }
  }

  private enqueueUnassign(workerId: string, instanceId: string): void {
    const key = `unassign:${workerId}:${instanceId}`;
    if (this.queued.has(key)) return;
    this.queued.add(key);
    void this.ctx.queue
      .run(() => this.unassignStray(workerId, instanceId))
      .finally(() => this.queued.delete(key))
      .catch((err: unknown) => this.ctx.log.error({ err }, `unassign failed: ${errorMessage(err)}`));
  }

  private async unassignStray(workerId: string, instanceId: string): Promise<void> {
    const { ctx } = this;
    const worker = ctx.workers.get(workerId);
    const found = ctx.store.findInstance(instanceId);
    if (!worker?.alive || !worker.reported.has(instanceId) || ctx.inFlight.has(instanceId)) return;
    if (found && found.placement.workerId === workerId) return;
    const report = worker.reported.get(instanceId)!;
    ctx.log.warn({ workerId, instanceId, computation: report.computation },
      `worker ${workerId} runs ${instanceId} (${report.computation} v${report.version}) which desired state does not list; unassigning it`);
    ctx.inFlight.add(instanceId);
    try {
      await controlWorker(ctx, workerId, { op: 'unassign', instanceId });
    } catch (err) {
      ctx.log.warn({ err, workerId, instanceId }, `unassign of stray ${instanceId} on ${workerId} failed: ${errorMessage(err)}; retrying later`);
    } finally {
      ctx.inFlight.delete(instanceId);
      this.straySince.get(workerId)?.delete(instanceId);
    }
  }
}
