/**
 * The producers a swap holds still: every instance (canaries included) of
 * every other computation that writes to a stream the swapped computation
 * reads. Their pauses are leases, renewed while the swap holds them, so a
 * controller that dies mid-swap cannot leave them paused for long.
 */
import { schemas, type PauseReply, type ProducerFence, type WorkerControl } from '../../protocol/index.js';
import { controlWorker, type ControllerContext } from './context.js';
import { bridgesOf, controlBridge } from './bridges.js';

export interface Upstream {
  computation: string;
  workerId: string;
  instanceId: string;
  /** The streams it writes that the swapped computation reads: only these are held. */
  streams: string[];
  /** A registered bridge producer (controlled on topo.bridge.ctl.<id>; workerId and instanceId are its id). */
  bridge?: true;
}

/** Pause or resume of one upstream: a worker's instance, or a registered bridge producer. */
function controlUpstream(ctx: ControllerContext, u: Upstream, ctl: WorkerControl): Promise<object> {
  return u.bridge
    ? controlBridge(ctx, u.instanceId, ctl, ctx.settings.swapStepTimeoutMs)
    : controlWorker(ctx, u.workerId, ctl, ctx.settings.swapStepTimeoutMs);
}

/**
 * Upstreams of `name` for the given istreams. Those on a worker that is not
 * alive are returned apart: they publish nothing, so there is nothing to pause.
 * A computation that reads its own output (a self-loop) is its own upstream:
 * its old instances' output to those streams is held while they drain (no one
 * reads it then) and published on resume, to the new instances.
 */
export function findUpstreams(ctx: ControllerContext, name: string, istreams: ReadonlySet<string>): { live: Upstream[]; skipped: Upstream[] } {
  const live: Upstream[] = [];
  const skipped: Upstream[] = [];
  for (const rec of ctx.store.all()) {
    const groups = [{ ostreams: rec.metadata.ostreams, placements: rec.placements }];
    if (rec.canary) groups.push({ ostreams: rec.canary.metadata.ostreams, placements: rec.canary.placements });
    for (const g of groups) {
      const streams = g.ostreams.filter((s) => istreams.has(s));
      if (streams.length === 0) continue;
      for (const p of g.placements) {
        const u = { computation: rec.name, workerId: p.workerId, instanceId: p.instanceId, streams };
        (ctx.workers.isAlive(p.workerId) ? live : skipped).push(u);
      }
    }
  }
  // Registered bridge producers (bridges.ts) are paused like any upstream; only live ones are listed.
  for (const b of bridgesOf(ctx).liveProducers()) {
    const streams = b.streams.filter((s) => istreams.has(s));
    if (streams.length) live.push({ computation: `bridge:${b.id}`, workerId: b.id, instanceId: b.id, streams, bridge: true });
  }
  return { live, skipped };
}

export interface UpstreamFailure {
  upstream: Upstream;
  error: unknown;
}

/** Holds a set of upstreams paused for one swap, renewing their leases until resumed. */
export class UpstreamPause {
  private renewTimer: NodeJS.Timeout | undefined;
  private pausedAt: number | undefined;
  private heldMs = 0;
  /** Per instanceId: when its latest pause (or renewal) was acknowledged. */
  private readonly ackedAt = new Map<string, number>();
  /** Per instanceId: its fences, from its latest pause reply. */
  private readonly fenceOf = new Map<string, { producer: string; byStream: Record<string, Record<string, number>>; ages: Record<string, Record<string, number>>; at: number }>();
  private readonly renewing = new Set<string>();
  /** Renewals sent so far (for logs and tests). */
  renewals = 0;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly swapId: string,
    readonly upstreams: readonly Upstream[],
  ) {}

  get paused(): boolean {
    return this.pausedAt !== undefined;
  }

  /** Total time upstreams were held, over every pause of this swap. */
  get pausedMs(): number {
    return this.heldMs + (this.pausedAt !== undefined ? Date.now() - this.pausedAt : 0);
  }

  /** Pauses every upstream in parallel and starts renewing; returns those that could not be paused. */
  async pause(): Promise<UpstreamFailure[]> {
    if (this.pausedAt !== undefined) return [];
    this.pausedAt = Date.now();
    this.startRenewing();
    const results = await Promise.allSettled(this.upstreams.map((u) => this.sendPause(u)));
    return this.failures(results);
  }

  /** Stops renewing and resumes every upstream in parallel; returns those whose resume failed (their lease ends it). */
  async resume(): Promise<UpstreamFailure[]> {
    this.stopRenewing();
    if (this.pausedAt === undefined) return [];
    this.heldMs += Date.now() - this.pausedAt;
    this.pausedAt = undefined;
    const results = await Promise.allSettled(
      this.upstreams.map((u) => controlUpstream(this.ctx, u, { op: 'resume', instanceId: u.instanceId, swapId: this.swapId })),
    );
    return this.failures(results);
  }

  /** Upstreams whose pause was not acknowledged for a whole lease: they may have resumed by themselves. */
  expired(now: number = Date.now()): Upstream[] {
    if (this.pausedAt === undefined) return [];
    const lease = this.ctx.settings.pauseLeaseMs;
    return this.upstreams.filter((u) => now - (this.ackedAt.get(u.instanceId) ?? this.pausedAt!) > lease);
  }

  /** Stops renewing without resuming (the leases then run out on the workers). */
  stopRenewing(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
  }

  private startRenewing(): void {
    if (this.upstreams.length === 0) return;
    this.renewTimer = setInterval(() => {
      for (const u of this.upstreams) {
        // One renewal at a time per upstream: a slow worker must not pile them up.
        if (this.renewing.has(u.instanceId)) continue;
        this.renewing.add(u.instanceId);
        this.renewals++;
        this.sendPause(u)
          .catch((err: unknown) => {
            this.ctx.log.warn({ err, swapId: this.swapId, instanceId: u.instanceId, workerId: u.workerId },
              `swap ${this.swapId}: could not renew the pause of ${u.instanceId} on ${u.workerId}: ${(err as Error).message}`);
          })
          .finally(() => this.renewing.delete(u.instanceId));
      }
    }, this.ctx.settings.pauseRenewMs);
  }

  private async sendPause(u: Upstream): Promise<PauseReply> {
    const ctl: WorkerControl = {
      op: 'pause', instanceId: u.instanceId, swapId: this.swapId, streams: u.streams, leaseMs: this.ctx.settings.pauseLeaseMs,
    };
    const reply = (await controlUpstream(this.ctx, u, ctl)) as PauseReply;
    // A late reply after resume must not make the pause look alive.
    if (this.pausedAt !== undefined) this.ackedAt.set(u.instanceId, Date.now());
    const checked = schemas.controlReplies.pause.safeParse({ ok: true, ...reply });
    if (checked.success && checked.data.partitionFences) {
      this.fenceOf.set(u.instanceId, { producer: checked.data.producer, byStream: checked.data.partitionFences, ages: checked.data.partitionAgesMs ?? {}, at: Date.now() });
    }
    return reply;
  }

  /** What each paused producer published last, per stream and partition subject (from its latest pause reply). */
  fences(): ProducerFence[] {
    const out: ProducerFence[] = [];
    const now = Date.now();
    for (const f of this.fenceOf.values()) {
      for (const [stream, partitions] of Object.entries(f.byStream)) {
        if (Object.keys(partitions).length === 0) continue;
        // Ages as of now: the time since the pause reply is added.
        const agesMs: Record<string, number> = {};
        for (const [p, age] of Object.entries(f.ages[stream] ?? {})) agesMs[p] = age + (now - f.at);
        out.push({ producer: f.producer, stream, partitions, agesMs });
      }
    }
    return out;
  }

  private failures(results: PromiseSettledResult<unknown>[]): UpstreamFailure[] {
    const out: UpstreamFailure[] = [];
    results.forEach((r, i) => {
      if (r.status === 'rejected') out.push({ upstream: this.upstreams[i]!, error: r.reason });
    });
    return out;
  }
}
