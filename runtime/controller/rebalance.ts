/**
 * Rebalancing when a worker joins: once a new (or revived, or restarted)
 * worker has heartbeated (and once after the controller starts), instances move one at a time from the most to the
 * least loaded live worker of a language until no two workers differ by more
 * than one instance. Each move is a swap plan (scale.ts movePlan: the
 * instance's state goes with it, upstreams paused meanwhile), run in the
 * serial queue, one queue task per move so API requests interleave.
 * chooseMove is the policy, pure; Rebalancer drives it.
 */
import type { Lang } from '../../protocol/index.js';
import type { ControllerContext } from './context.js';
import { incidentsOf } from './incidents.js';
import { errorMessage } from './lifecycle.js';
import { placementsOf } from './records.js';
import { movePlan } from './scale.js';
import { execute } from './swap.js';
import { chainOf, groupMovePlan } from './fusion.js';
import type { WorkerEntry } from './workerTable.js';

export interface RebalancePlacement {
  computation: string;
  instanceId: string;
  index: number;
  workerId: string;
  /** False when it must stay where it is for now (its computation is swapping, cooling down, starting...). */
  movable: boolean;
  /** Instances it stands for (default 1): instance i of every member of a fused group moves as one unit. */
  weight?: number;
  /** The members of that fused group, head first. */
  chain?: string[];
}

export interface RebalanceInput {
  /** Live workers of one language. */
  workers: readonly string[];
  /** Placements of that language's computations; those on other workers are ignored. */
  placements: readonly RebalancePlacement[];
}

export interface Move {
  computation: string;
  instanceId: string;
  index: number;
  from: string;
  to: string;
  /** Instances on `from` and `to` before the move. */
  fromLoad: number;
  toLoad: number;
  /** Set for a fused group's instance `index`: every member's instance moves. */
  chain?: string[];
}

export interface RebalanceChoice {
  /** The next move, if one is possible now. */
  move?: Move;
  /** True while some two workers differ by more than one instance (with or without a possible move). */
  uneven: boolean;
}

/**
 * The next instance to move: from the most loaded worker (ties: lowest id)
 * that has a movable instance and more than one instance above the least
 * loaded worker (ties: lowest id), an instance of the computation with the
 * most instances on it compared with the target (spreading each computation),
 * then by computation name and index.
 */
export function chooseMove(input: RebalanceInput): RebalanceChoice {
  const { workers } = input;
  if (workers.length < 2) return { uneven: false };
  const load = new Map<string, number>(workers.map((w) => [w, 0]));
  const on = input.placements.filter((p) => load.has(p.workerId));
  const weightOf = (p: RebalancePlacement): number => p.weight ?? 1;
  for (const p of on) load.set(p.workerId, load.get(p.workerId)! + weightOf(p));
  const byLoad = [...load].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const [to, toLoad] = [...byLoad].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))[0]!;
  const uneven = byLoad[0]![1] - toLoad > 1;
  if (!uneven) return { uneven };
  const count = (computation: string, worker: string): number => on.filter((p) => p.computation === computation && p.workerId === worker).length;
  for (const [from, fromLoad] of byLoad) {
    if (fromLoad - toLoad <= 1) break;
    // A unit moves only if that narrows the gap (a fused unit heavier than the gap would just move it elsewhere).
    const candidates = on.filter((p) => p.workerId === from && p.movable && weightOf(p) < fromLoad - toLoad);
    if (candidates.length === 0) continue;
    const scored = candidates.map((p) => ({ p, spread: count(p.computation, from) - count(p.computation, to) }));
    scored.sort((a, b) => b.spread - a.spread || (a.p.computation < b.p.computation ? -1 : a.p.computation > b.p.computation ? 1 : 0) || a.p.index - b.p.index);
    const { p } = scored[0]!;
    return { uneven, move: { computation: p.computation, instanceId: p.instanceId, index: p.index, from, to, fromLoad, toLoad, ...(p.chain ? { chain: p.chain } : {}) } };
  }
  return { uneven };
}

/** A failed move keeps its computation out of rebalancing for this long. */
const FAILED_MOVE_PAUSE_MS = 60_000;
/** While uneven with nothing movable (a swap, a starting instance), look again this often, at most RETRIES times. */
const RETRY_MS = 2_000;
const RETRIES = 30;

export class Rebalancer {
  /** Workers that joined and have not heartbeated since: workerId -> when they joined. */
  private readonly joined = new Map<string, number>();
  /** Computations whose last move failed: name -> when. */
  private readonly failedAt = new Map<string, number>();
  private queued = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private startTimer: NodeJS.Timeout | undefined;
  private retriesLeft = 0;
  private stopped = false;

  constructor(private readonly ctx: ControllerContext, private readonly enabled = true) {}

  /**
   * One look once the workers known before this controller started have had a lease to show up:
   * a load left uneven before (by an older controller, or one that died mid-rebalance) is evened out too.
   */
  startAfter(ms: number): void {
    if (!this.enabled) return;
    this.startTimer = setTimeout(() => {
      this.retriesLeft = RETRIES;
      this.request();
    }, ms);
    this.startTimer.unref();
  }

  /** A worker registered (new, revived or restarted): rebalance once it has heartbeated. */
  onWorkerJoined(workerId: string, now: number): void {
    if (this.enabled) this.joined.set(workerId, now);
  }

  onHeartbeat(w: WorkerEntry, now: number): void {
    const at = this.joined.get(w.workerId);
    if (at === undefined || w.pending || !w.alive || now <= at) return;
    this.joined.delete(w.workerId);
    this.retriesLeft = RETRIES;
    this.ctx.log.info({ workerId: w.workerId }, `worker ${w.workerId} is heartbeating: checking whether instances should move to it`);
    this.request();
  }

  /** Queues one step (coalesced: at most one waits in the queue). */
  request(): void {
    if (this.queued || this.stopped) return;
    this.queued = true;
    void this.ctx.queue
      .run(async () => {
        this.queued = false;
        await this.step();
      })
      .catch((err: unknown) => this.ctx.log.error({ err }, `rebalance step failed: ${errorMessage(err)}`));
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.startTimer) clearTimeout(this.startTimer);
  }

  /** What chooseMove sees for the workers of `lang`, from desired state and the latest heartbeats. */
  inputFor(lang: Lang, now: number): RebalanceInput {
    const { ctx } = this;
    const live = ctx.workers.alive(lang).filter((w) => !w.pending);
    const workers = live.map((w) => w.workerId);
    const placements: RebalancePlacement[] = [];
    const units = new Set<string>();
    for (const rec of ctx.store.all()) {
      if (rec.lang !== lang) continue;
      if (rec.fusion) {
        // A fused group moves instance by instance as a whole: one unit per index, reported once, by its head.
        const chain = chainOf(ctx, rec.name);
        if (units.has(chain[0]!)) continue;
        units.add(chain[0]!);
        const recs = chain.map((n) => ctx.store.get(n)).filter((r): r is NonNullable<typeof r> => r !== undefined);
        const steadyGroup = recs.length === chain.length && recs.every((r) => !ctx.swapping.has(r.name) && !r.canary &&
          incidentsOf(ctx).coolDownOf(r.name, now) === undefined && !(this.failedAt.has(r.name) && now - this.failedAt.get(r.name)! < FAILED_MOVE_PAUSE_MS) &&
          r.placements.every((p) => ctx.workers.isAlive(p.workerId) && !ctx.inFlight.has(p.instanceId) && ctx.workers.get(p.workerId)?.reported.get(p.instanceId)?.state === 'running'));
        const head = recs[0]!;
        for (const p of head.placements) {
          const together = recs.every((r) => r.placements.find((x) => x.index === p.index)?.workerId === p.workerId);
          placements.push({ computation: head.name, instanceId: p.instanceId, index: p.index, workerId: p.workerId, movable: steadyGroup && together, weight: chain.length, chain });
        }
        continue;
      }
      const all = placementsOf(rec);
      const failed = this.failedAt.get(rec.name);
      const steady = !ctx.swapping.has(rec.name) && !rec.canary && incidentsOf(ctx).coolDownOf(rec.name, now) === undefined &&
        !(failed !== undefined && now - failed < FAILED_MOVE_PAUSE_MS) &&
        all.every((p) => ctx.workers.isAlive(p.workerId) && !ctx.inFlight.has(p.instanceId));
      for (const p of all) {
        const report = ctx.workers.get(p.workerId)?.reported.get(p.instanceId);
        placements.push({
          computation: rec.name, instanceId: p.instanceId, index: p.index, workerId: p.workerId,
          movable: steady && report?.state === 'running' && rec.placements.includes(p),
        });
      }
    }
    return { workers, placements };
  }

  /** One move at most; queues the next step after a move, or a later look while blocked. */
  private async step(): Promise<void> {
    const { ctx } = this;
    if (this.stopped) return;
    const now = Date.now();
    let blocked = false;
    const langs = [...new Set(ctx.workers.alive().map((w) => w.lang))].sort();
    for (const lang of langs) {
      const choice = chooseMove(this.inputFor(lang, now));
      if (!choice.move) {
        blocked ||= choice.uneven;
        continue;
      }
      await this.run(choice.move);
      this.request();
      return;
    }
    if (blocked && this.retriesLeft > 0 && !this.retryTimer) {
      this.retriesLeft--;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.request();
      }, RETRY_MS);
      this.retryTimer.unref();
    }
  }

  private async run(m: Move): Promise<void> {
    const { ctx } = this;
    const rec = ctx.store.get(m.computation);
    const p = rec?.placements.find((x) => x.instanceId === m.instanceId);
    if (!rec || !p) return;
    ctx.log.info({ computation: rec.name, index: m.index, instanceId: m.instanceId, from: m.from, to: m.to, fromLoad: m.fromLoad, toLoad: m.toLoad },
      `rebalance: moving instance ${m.index} of "${rec.name}" from ${m.from} (${m.fromLoad} instances) to ${m.to} (${m.toLoad} instances)`);
    try {
      const reply = await execute(ctx, m.chain ? groupMovePlan(ctx, m.chain, m.index, m.to) : movePlan(rec, p, m.to));
      ctx.log.info({ computation: rec.name, index: m.index, from: m.from, to: m.to, pauseMs: reply.pauseMs },
        `rebalance: moved instance ${m.index} of "${rec.name}" to ${m.to} (upstreams paused ${reply.pauseMs ?? 0} ms)`);
    } catch (err) {
      for (const n of m.chain ?? [rec.name]) this.failedAt.set(n, Date.now());
      ctx.log.error({ err, computation: rec.name, index: m.index, from: m.from, to: m.to },
        `rebalance: moving instance ${m.index} of "${rec.name}" to ${m.to} failed (it stays on ${m.from}): ${errorMessage(err)}`);
    }
  }
}
