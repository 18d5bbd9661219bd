/**
 * The oracle at work: once a second the controller samples what every
 * computation measures (busy share of each second, records/s, CPU µs per
 * record, queue depth), asks the oracle (runtime/oracle) for its fusion
 * groups and instance counts, and carries out at most one difference per
 * pass, live, through the swap steps:
 * - a chain the oracle fuses that does not run fused is fused (by default
 *   every chainable edge: the oracle fuses by default; hints.fuse = false
 *   or `topo split` keep a computation apart);
 * - a group the oracle no longer fuses is split, e.g. around a member that
 *   saturates (busy above 0.8): that hot spot then stays apart for
 *   HOT_SPOT_HOLD_MS so it does not flap;
 * - a computation with hints.autoscale is scaled out when it saturates for
 *   a window and back in when it idles (the seed's instant bursting).
 * Only steady computations are touched: deployed for SETTLE_MS, every
 * instance running, no swap or canary under way, not cooling down.
 * TOPO_AUTOPILOT=0 turns it off (then only `topo fuse` / `topo scale` change
 * groups and counts).
 */
import type { ComputationRecord } from '../../protocol/index.js';
import { AUTOSCALE_WINDOW, fuse as oracleFuse, scaleAll, type ComputationStats, type OracleInput } from '../oracle/index.js';
import type { ControllerContext } from './context.js';
import { chainOf, fusionGroups, oracleInputOf, regroupPlan } from './fusion.js';
import { incidentsOf } from './incidents.js';
import { placeScaled, scalePlan } from './scale.js';
import { execute } from './swap.js';

const PASS_MS = 1_000;
/** A computation is left alone this long after it was deployed or changed. */
const SETTLE_MS = 3_000;
/** A member split out of its group because it saturated is not fused again before this. */
const HOT_SPOT_HOLD_MS = 60_000;
/** Records/s below which CPU per record is not measured. */
const MIN_RATE_FOR_CPU = 100;

export class Autopilot {
  private timer: NodeJS.Timeout | undefined;
  private queued = false;
  private readonly busy = new Map<string, number[]>();
  private readonly heldApart = new Map<string, number>();
  /** When a change last touched each computation (the autopilot's or anyone's: deployedAt covers the others). */
  private readonly changedAt = new Map<string, number>();

  constructor(private readonly ctx: ControllerContext, private readonly enabled: boolean) {}

  start(): void {
    if (!this.enabled || this.timer) return;
    this.timer = setInterval(() => this.tick(), PASS_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const stats = this.sample();
    if (this.queued) return;
    this.queued = true;
    void this.ctx.queue
      .run(async () => {
        this.queued = false;
        await this.pass(stats, Date.now());
      })
      .catch((err: unknown) => this.ctx.log.error({ err }, `autopilot pass failed: ${(err as Error).message}`));
  }

  /** One sample per computation from the latest heartbeats; keeps the last AUTOSCALE_WINDOW busy ratios. */
  private sample(): Record<string, ComputationStats> {
    const { ctx } = this;
    const out: Record<string, ComputationStats> = {};
    for (const rec of ctx.store.all()) {
      let busyMs = 0, inPerSec = 0, queueDepth = 0, n = 0;
      for (const p of rec.placements) {
        const w = ctx.workers.get(p.workerId);
        const r = w?.alive ? w.reported.get(p.instanceId) : undefined;
        if (!r) continue;
        n++;
        busyMs += r.metrics.busyMs ?? 0;
        queueDepth += r.metrics.queueDepth ?? r.queued ?? 0;
        inPerSec += ctx.workers.rates(p.workerId, p.instanceId).inPerSec;
      }
      if (n === 0) continue;
      const busyRatio = Math.min(1, busyMs / n / 1_000);
      const window = [...(this.busy.get(rec.name) ?? []), busyRatio].slice(-AUTOSCALE_WINDOW);
      this.busy.set(rec.name, window);
      out[rec.name] = {
        recordsPerSec: inPerSec, busyRatio, busyWindow: window, queueDepth,
        // Per record only where there are records enough to say (a trickle makes timers and loop overhead look heavy).
        cpuMicrosPerRecord: inPerSec >= MIN_RATE_FOR_CPU ? Math.round((busyMs * 1_000) / inPerSec) : 0,
      };
    }
    for (const name of this.busy.keys()) if (!ctx.store.get(name)) this.busy.delete(name);
    return out;
  }

  private steady(rec: ComputationRecord, now: number): boolean {
    const { ctx } = this;
    if (ctx.swapping.has(rec.name) || rec.canary || incidentsOf(ctx).coolDownOf(rec.name, now)) return false;
    if (now - Math.max(rec.deployedAt, this.changedAt.get(rec.name) ?? 0) < SETTLE_MS) return false;
    return rec.placements.every((p) => {
      const w = ctx.workers.get(p.workerId);
      return w?.alive === true && !ctx.inFlight.has(p.instanceId) && w.reported.get(p.instanceId)?.state === 'running';
    });
  }

  private inputOf(stats: Record<string, ComputationStats>, now: number): OracleInput {
    const base = oracleInputOf(this.ctx);
    for (const [name, until] of this.heldApart) if (until <= now) this.heldApart.delete(name);
    // A canary reads a share of the partitions on NATS: never fused while it runs.
    const canaries = this.ctx.store.all().filter((r) => r.canary).map((r) => r.name);
    return { ...base, stats, overrides: { ...base.overrides, split: [...(base.overrides?.split ?? []), ...this.heldApart.keys(), ...canaries] } };
  }

  private async pass(stats: Record<string, ComputationStats>, now: number): Promise<void> {
    const { ctx } = this;
    if (ctx.store.all().length === 0) return;
    const input = this.inputOf(stats, now);
    const counts = scaleAll(input).instances;
    const wanted = oracleFuse(input, counts).groups.filter((g) => g.members.length > 1).map((g) => g.members);
    const current = fusionGroups(ctx).map((g) => g.members);
    const same = (a: string[], b: string[]) => a.length === b.length && a.every((n, i) => n === b[i]);
    const steadyAll = (names: string[]) => names.every((n) => {
      const r = ctx.store.get(n);
      return r !== undefined && this.steady(r, now);
    });

    // 1. A group the oracle no longer wants: split it into the oracle's pieces.
    for (const group of current) {
      if (wanted.some((w) => same(w, group))) continue;
      if (!steadyAll(group)) continue;
      const pieces = this.piecesOf(group, wanted);
      // The oracle wants it inside a longer chain: nothing to split, step 2 merges it.
      if (pieces.length === 1 && same(pieces[0]!, group)) continue;
      const saturated = group.filter((n) => (stats[n]?.busyRatio ?? 0) > 0.8);
      for (const n of saturated) this.heldApart.set(n, now + HOT_SPOT_HOLD_MS);
      ctx.log.info({ group, pieces, saturated }, `autopilot: splitting ${group.join('+')} into ${pieces.map((p) => p.join('+')).join(', ')}` +
        (saturated.length ? ` (${saturated.join(', ')} saturated)` : ''));
      await this.run(group, () => execute(ctx, regroupPlan(ctx, 'split', pieces, new Set(group.filter((n) => ctx.store.get(n)?.noFuse)))));
      return;
    }
    // 2. A chain the oracle fuses that does not run fused.
    for (const chain of wanted) {
      if (current.some((g) => same(g, chain))) continue;
      const touched = [...new Set(chain.flatMap((n) => chainOf(ctx, n)))];
      if (!steadyAll(touched)) continue;
      const rest = this.piecesOf(touched.filter((n) => !chain.includes(n)), []);
      ctx.log.info({ chain }, `autopilot: fusing ${chain.join(' -> ')}`);
      await this.run(touched, () => execute(ctx, regroupPlan(ctx, 'fuse', [chain, ...rest], new Set(touched.filter((n) => ctx.store.get(n)?.noFuse)))));
      return;
    }
    // 3. Autoscale.
    for (const rec of ctx.store.all()) {
      const target = counts[rec.name];
      if (!rec.metadata.hints?.autoscale || target === undefined || target === rec.instances || rec.fusion || !this.steady(rec, now)) continue;
      ctx.log.info({ computation: rec.name, from: rec.instances, to: target, busy: stats[rec.name]?.busyWindow },
        `autopilot: scaling "${rec.name}" from ${rec.instances} to ${target} instance(s) (busy ${stats[rec.name]?.busyWindow?.map((b) => b.toFixed(2)).join(' ')})`);
      await this.run([rec.name], () => execute(ctx, scalePlan(rec, placeScaled(ctx, rec, target))));
      this.busy.delete(rec.name);
      return;
    }
  }

  /** `members` cut into the parts of `wanted` they belong to (contiguous, in order); the others alone. */
  private piecesOf(members: string[], wanted: string[][]): string[][] {
    const pieces: string[][] = [];
    const done = new Set<string>();
    for (const n of members) {
      if (done.has(n)) continue;
      const w = wanted.find((g) => g.includes(n));
      const piece = w ? w.filter((m) => members.includes(m)) : [n];
      for (const m of piece) done.add(m);
      pieces.push(piece);
    }
    return pieces;
  }

  private async run(names: string[], change: () => Promise<unknown>): Promise<void> {
    const now = Date.now();
    for (const n of names) this.changedAt.set(n, now);
    try {
      await change();
    } catch (err) {
      this.ctx.log.warn({ err, computations: names }, `autopilot: change of ${names.join(', ')} failed (rolled back): ${(err as Error).message}`);
    } finally {
      const done = Date.now();
      for (const n of names) this.changedAt.set(n, done);
    }
  }
}
