/**
 * Runs one live code change (swap, canary, promote, rollback) as the same
 * sequence of worker steps:
 *   preload -> pause upstreams -> release old -> adopt new -> resume -> health -> commit
 * A failed preload or pause fails it before anything changed. A failed
 * release, adopt or health check rolls it back: upstreams held again, abort
 * on every involved worker (old instances resume with their state and get
 * back the input the new ones took), upstreams resumed. Every step is timed
 * into the history entry. A journal in KV (topo_state `swap.<name>`) lets a
 * restarted controller finish a swap the previous one left half done (see
 * swapRecovery.ts). Runs inside the serial queue.
 */
import { randomBytes } from 'node:crypto';
import { Objm } from '@nats-io/obj';
import type { Logger } from 'pino';
import {
  SwapRolledBackError, buckets, fromWireError, toWireError, truncateError,
  type Assignment, type ComputationRecord, type HealthReply, type HistoryEntry, type HistoryStep, type Lang, type MetadataDiff,
  type AbortReply, type Handback, type NormalizedMetadata, type Placement, type Probation, type ReleaseReply, type SnapshotRef, type SwapReply, type WorkerControl,
} from '../../protocol/index.js';
import { controlWorker, type ControllerContext } from './context.js';
import { errorMessage, recordHistorySafely } from './lifecycle.js';
import type { ProgressSink } from './progress.js';
import type { SwapJournal } from './stateStore.js';
import { findUpstreams, UpstreamPause, type Upstream, type UpstreamFailure } from './upstreams.js';

export const DEFAULT_PROBATION: Probation = { records: 20, ms: 500, callbackTimeoutMs: 2_000 };
/** Base64 characters of inline snapshots one adopt request may carry (well under a 1 MiB max_payload with the rest). */
const MAX_CARRIED_CHARS = 600 * 1024;
/** How much earlier the swap lease of one abort group runs out than the next one's (leaseOf). */
const LEASE_STAGGER_MS = 400;
/** Extra time a health request gets beyond the probation itself. */
const HEALTH_SLACK_MS = 3_000;

export interface AdoptPlan {
  workerId: string;
  assignment: Assignment;
  from: SnapshotRef[];
  filterByPartition: boolean;
}

/** The code that runs once the change is done (written to history so a rollback can find it). */
export interface SwapTarget {
  sha: string;
  lang: Lang;
  metadata: NormalizedMetadata;
  source?: string;
}

export interface SwapPlan {
  action: 'swap' | 'canary' | 'promote' | 'rollback' | 'scale' | 'move' | 'fuse' | 'split';
  /** The record as it is now. */
  rec: ComputationRecord;
  /** Version reported and used as the history key. */
  version: number;
  fromVersion: number;
  target: SwapTarget;
  diff: MetadataDiff;
  /** Instances drained and snapshotted (kept on standby until commit). */
  releases: Placement[];
  /** Instances started from those snapshots, on probation until commit. */
  adopts: AdoptPlan[];
  /** Streams read by the old or the new code: their producers are paused. */
  istreams: ReadonlySet<string>;
  probation: Probation;
  /** Drain budget of each release (default: the controller's drainBudgetMs). */
  drainBudgetMs?: number;
  /** Desired state once every worker has committed. */
  committed: () => ComputationRecord;
  /** For messages: `swap of "counter" to v3`. */
  what: string;
  /** Steps recorded before the run (e.g. which version a rollback goes back to). */
  steps?: HistoryStep[];
  /**
   * Release in these stages, one after the other, instead of all at once: a
   * fused chain drains front to back, each stage's output reaching the next
   * stage's old instances before they drain.
   */
  releaseStages?: Placement[][];
  /** Other computations changed by the same run (fuse, split): saved and written to history with `rec`. */
  alsoChanged?: { rec: ComputationRecord; committed: () => ComputationRecord }[];
  /** Computations not paused as upstreams: they are released (in stages) by this run. */
  notUpstreams?: ReadonlySet<string>;
  /** Gets each step as it ends (the client that asked for the change prints them: progress.ts). */
  progress?: ProgressSink;
}

/** Every computation a plan changes: `rec` first. */
export function namesOf(plan: SwapPlan): string[] {
  return [plan.rec.name, ...(plan.alsoChanged ?? []).map((c) => c.rec.name)];
}

interface Outcome<T, R> {
  item: T;
  value?: R;
  error?: unknown;
}

/** Runs `fn` on every item in parallel and reports each outcome. */
async function each<T, R>(items: readonly T[], fn: (t: T) => Promise<R>): Promise<Outcome<T, R>[]> {
  const results = await Promise.allSettled(items.map(fn));
  return results.map((r, i) => (r.status === 'fulfilled' ? { item: items[i]!, value: r.value } : { item: items[i]!, error: r.reason }));
}

const failed = <T, R>(outcomes: Outcome<T, R>[]): Outcome<T, R>[] => outcomes.filter((o) => 'error' in o);

function describeUpstreams(us: readonly Upstream[]): string {
  return us.map((u) => `${u.computation}/${u.instanceId}@${u.workerId}`).join(', ');
}

function describeFailures(fs: UpstreamFailure[]): string {
  return fs.map((f) => `${f.upstream.instanceId} on ${f.upstream.workerId}: ${errorMessage(f.error)}`).join('; ');
}

/** The same error class with a message that says where it happened. */
function withContext(err: unknown, prefix: string): Error {
  const wire = toWireError(err);
  return fromWireError({ ...wire, message: `${prefix}${wire.message}` });
}

/** `counter-v3-1a2b3c4d`: names the swap in worker logs and lets workers tell swaps apart. */
export function newSwapId(name: string, version: number): string {
  return `${name}-v${version}-${randomBytes(4).toString('hex')}`;
}

/**
 * Where each released snapshot is needed: in memory when every instance
 * adopting it runs on the same worker, else in the store (another worker fetches it).
 */
function exportOf(release: Placement, adopts: readonly AdoptPlan[]): 'memory' | 'store' {
  const readers = adopts.filter((a) => a.from.some((f) => f.instanceId === release.instanceId));
  return readers.every((a) => a.workerId === release.workerId) ? 'memory' : 'store';
}

/**
 * Groups of `involved` workers in the order a rollback aborts them. Aborting
 * reinstates the old instances, and a reinstated member of a fused chain
 * (fuse, split) publishes at once to the next member's old instances, on
 * another worker maybe: those must be subscribed again first, or what it
 * publishes meanwhile is lost (core NATS). So workers go by the last release
 * stage they hold an old instance of, downstream first; workers with only new
 * instances go first. Upstreams outside the plan are paused during the abort;
 * a plan without stages is one group.
 */
export function abortOrderOf(plan: Pick<SwapPlan, 'releaseStages'>, involved: readonly string[]): string[][] {
  const stages = plan.releaseStages;
  if (!stages || stages.length < 2) return [[...involved]];
  const lastStage = new Map<string, number>();
  stages.forEach((stage, i) => {
    for (const p of stage) lastStage.set(p.workerId, Math.max(i, lastStage.get(p.workerId) ?? -1));
  });
  const groups = new Map<number, string[]>();
  for (const w of involved) {
    const at = lastStage.get(w) ?? stages.length;
    groups.set(at, [...(groups.get(at) ?? []), w]);
  }
  return [...groups].sort(([a], [b]) => b - a).map(([, ws]) => ws);
}

/**
 * Input the new instances took on one worker for old instances on another (a scale, move or regroup)
 * was stored by their abort; the old instances' workers take it back before the upstreams resume.
 * Returns the step to record (undefined when there was nothing to hand back).
 */
export async function replayHandbacks(ctx: ControllerContext, swapId: string, handbacks: Handback[], log: Logger, what: string): Promise<HistoryStep | undefined> {
  if (handbacks.length === 0) return undefined;
  const at = Date.now();
  const sends = handbacks.flatMap((h) => [...new Set(h.from.map((r) => r.workerId))].filter((w) => ctx.workers.isAlive(w)).map((w) => ({ h, w })));
  const outcomes = await each(sends, ({ h, w }) =>
    controlWorker(ctx, w, { op: 'replay', swapId, handback: h.name, from: h.from }, ctx.settings.swapStepTimeoutMs) as Promise<{ replayed?: number }>);
  const bad = failed(outcomes);
  const replayed = outcomes.reduce((n, o) => n + (o.value?.replayed ?? 0), 0);
  const total = handbacks.reduce((n, h) => n + h.batches, 0);
  if (replayed !== total) log.error({ replayed, total }, `${what}: ${total - replayed} handed-back input batch(es) did not reach an old instance: lost`);
  try {
    const os = await new Objm(ctx.nc).open(buckets.snapshots);
    for (const h of handbacks) await os.delete(h.name).catch(() => undefined);
  } catch {
    /* cleanup only */
  }
  return {
    step: 'replay', at, ms: Date.now() - at, ok: bad.length === 0 && replayed === total,
    detail: `${replayed} of ${total} input batch(es) taken by new instances handed back to old ones on other workers` +
      (bad.length ? `; failed on ${bad.map((o) => `${o.item.w}: ${errorMessage(o.error)}`).join('; ')}` : ''),
  };
}

export async function runSwap(ctx: ControllerContext, plan: SwapPlan): Promise<SwapReply> {
  return new SwapRun(ctx, plan).run();
}

/** One run of a plan; holds the steps and timings that end up in the reply and the history entry. */
class SwapRun {
  private readonly swapId: string;
  private readonly steps: HistoryStep[];
  private readonly log: Logger;
  /** Workers with released or adopted instances: commit and abort go to them. */
  private readonly involved: string[];
  /** The order in which aborts go to them (see abortOrderOf). */
  private readonly abortOrder: string[][];
  private loadMs: number | undefined;
  private pauseMs: number | undefined;
  private pause: UpstreamPause | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  /** Reasons of the rollback, the first one reported. */
  private readonly failures: { step: string; message: string }[] = [];
  /** Journal writes, one after the other (progress is written without waiting for it). */
  private journalWrites: Promise<void> = Promise.resolve();
  /** Phase of the journal in KV; undefined once it is dropped. */
  private journalPhase: SwapJournal['phase'] | undefined;

  constructor(private readonly ctx: ControllerContext, private readonly plan: SwapPlan) {
    this.swapId = newSwapId(plan.rec.name, plan.version);
    this.steps = [...(plan.steps ?? [])];
    this.log = ctx.log.child({ computation: plan.rec.name, swapId: this.swapId });
    this.involved = [...new Set([...plan.releases.map((p) => p.workerId), ...plan.adopts.map((a) => a.workerId)])];
    this.abortOrder = abortOrderOf(plan, this.involved);
  }

  async run(): Promise<SwapReply> {
    const { plan } = this;
    this.log.info({ action: plan.action, fromVersion: plan.fromVersion, version: plan.version, releases: plan.releases.length, adopts: plan.adopts.length },
      `${plan.what}: starting (swap ${this.swapId})`);
    for (const step of this.steps) plan.progress?.(step); // recorded while planning
    await this.journal('started');
    try {
      await this.preload();
      await this.pauseUpstreams();
      await this.transfer();
      if (this.ok()) await this.confirmLease();
      if (this.failures.length) return await this.rollBack();
      return await this.commit();
    } finally {
      // Whatever happens, this swap stops renewing (a forgotten timer would hold the upstreams until their lease ends).
      this.pause?.stopRenewing();
      if (this.leaseTimer) clearInterval(this.leaseTimer);
      await this.dropJournal();
      void this.removeStoredSnapshots();
    }
  }

  // ---- steps -----------------------------------------------------------

  /** a. Load the new code where it will run, before anything waits for it. A failure ends the swap here. */
  private async preload(): Promise<void> {
    const at = Date.now();
    const key = (a: AdoptPlan): string => `${a.workerId} ${a.assignment.sha}`;
    const targets = [...new Map(this.plan.adopts.map((a) => [key(a), a])).values()];
    const countOf = (t: AdoptPlan): number => this.plan.adopts.filter((a) => key(a) === key(t)).length;
    // Each new instance's own NATS user goes with the preload: its worker signs in now, not inside the pause.
    const credentials = this.ctx.credentials;
    const instancesOf = async (t: AdoptPlan) => credentials
      ? { instances: await Promise.all(this.plan.adopts.filter((a) => key(a) === key(t)).map(async (a) => ({ instanceId: a.assignment.instanceId, credential: await credentials.mint(a.assignment) }))) }
      : {};
    const loaded = await each(targets, async (a) =>
      this.send(a.workerId, {
        op: 'preload', sha: a.assignment.sha, metadata: a.assignment.metadata, lang: a.assignment.lang, count: countOf(a), ...(await instancesOf(a)),
      }, this.ctx.settings.assignTimeoutMs) as Promise<{ loadMs?: number }>);
    this.loadMs = Math.round(Math.max(0, ...loaded.map((o) => (typeof o.value?.loadMs === 'number' ? o.value.loadMs : Date.now() - at))));
    const first = failed(loaded)[0];
    if (first) {
      this.time('preload', at, false, `worker ${first.item.workerId}: ${errorMessage(first.error)}`);
      this.log.error({ err: first.error, workerId: first.item.workerId },
        `${this.plan.what} failed: worker ${first.item.workerId} could not load the new code: ${errorMessage(first.error)}`);
      await recordHistorySafely(this.ctx, this.history('failed', errorMessage(first.error)));
      throw first.error;
    }
    this.time('preload', at, true, `${targets.length} worker(s), slowest load ${this.loadMs} ms`);
  }

  /** b. Hold every producer of what the old and new code read. A failure resumes them and ends the swap here. */
  private async pauseUpstreams(): Promise<void> {
    const found = findUpstreams(this.ctx, this.plan.rec.name, this.plan.istreams);
    const not = this.plan.notUpstreams;
    const live = not ? found.live.filter((u) => !not.has(u.computation)) : found.live;
    const skipped = not ? found.skipped.filter((u) => !not.has(u.computation)) : found.skipped;
    const pause = (this.pause = new UpstreamPause(this.ctx, this.swapId, live));
    let at = Date.now();
    const pauseFailed = await pause.pause();
    const skippedNote = skipped.length ? `; skipped (worker not alive): ${describeUpstreams(skipped)}` : '';
    if (pauseFailed.length === 0) {
      this.time('pause', at, true, `${live.length} upstream instance(s)${live.length ? `: ${describeUpstreams(live)}` : ''}${skippedNote}`);
      return;
    }
    this.time('pause', at, false, `could not pause ${describeFailures(pauseFailed)}${skippedNote}`);
    at = Date.now();
    const resumeFailed = await pause.resume();
    this.pauseMs = pause.pausedMs;
    this.time('resume', at, resumeFailed.length === 0, resumeFailed.length ? `resume failed (their lease ends the pause): ${describeFailures(resumeFailed)}` : undefined);
    const first = pauseFailed[0]!;
    const err = withContext(first.error,
      `${this.plan.what} failed before anything changed: could not pause upstream ${first.upstream.instanceId} (${first.upstream.computation}) on ${first.upstream.workerId}: `);
    this.log.error({ err: first.error }, err.message);
    await recordHistorySafely(this.ctx, this.history('failed', err.message));
    throw err;
  }

  /** c-f. Release, adopt, resume, health. A failure is noted (this.failures) for the rollback, not thrown. */
  private async transfer(): Promise<void> {
    const { plan, ctx } = this;
    const pause = this.pause!;
    const upstreams = pause.upstreams.map((u) => ({ workerId: u.workerId, instanceId: u.instanceId, streams: u.streams }));
    const swapLease = (workerId: string) => ({ leaseMs: this.leaseOf(workerId), upstreams });
    this.renewSwapLease();
    try {
      // c. Drain and snapshot the old instances; they stay on standby for a rollback. A drain that
      // makes progress may take up to its budget; the worker gives up after that, keeping everything.
      let at = Date.now();
      const budgetMs = plan.drainBudgetMs ?? ctx.settings.drainBudgetMs;
      // Each old instance drains until it has seen what the paused producers published last (the fences).
      let fences = pause.fences();
      const released: Outcome<Placement, ReleaseReply>[] = [];
      for (const stage of plan.releaseStages ?? [plan.releases]) {
        const before = released.length;
        released.push(...await each(stage, (p) =>
          this.send(p.workerId, { op: 'release', instanceId: p.instanceId, swapId: this.swapId, export: exportOf(p, plan.adopts), budgetMs, fences, ...swapLease(p.workerId) },
            budgetMs + ctx.settings.swapStepTimeoutMs) as Promise<ReleaseReply>));
        if (failed(released).length) break;
        // The next stage of a fused chain reads what this one published last.
        fences = [...fences, ...released.slice(before).flatMap((o) => o.value?.outputFences ?? [])];
      }
      for (const o of failed(released)) this.fail('release', `${o.item.instanceId} on ${o.item.workerId}`, o.error);
      const sum = (f: 'keys' | 'timers' | 'drained' | 'handedOver' | 'fencesMet' | 'bytes') => released.reduce((n, o) => n + (o.value?.[f] ?? 0), 0);
      const handedOver = sum('handedOver');
      const fencesMet = sum('fencesMet');
      this.time('release', at, this.ok(), this.ok()
        ? `${plan.releases.length} instance(s): ${sum('keys')} key(s), ${sum('timers')} timer(s), ${sum('drained')} record(s) drained` +
          (handedOver ? `, ${handedOver} record(s) of a stuck callback handed over` : '') +
          (fencesMet ? `, ${fencesMet} producer fence(s) seen` : '')
        : this.failures[0]!.message);
      if (!this.ok()) return;

      // d. Start the new instances from the snapshots, on probation. Small snapshots came back inline: they ride in the adopt.
      at = Date.now();
      const inline = new Map<string, string>();
      for (const o of released) if (o.value?.inline !== undefined) inline.set(o.item.instanceId, o.value.inline);
      const carriedFor = await this.carried(plan.adopts, inline);
      const adopted = await each(plan.adopts, (a) =>
        this.send(a.workerId, {
          op: 'adopt', swapId: this.swapId, assignment: a.assignment, from: a.from, filterByPartition: a.filterByPartition, probation: plan.probation,
          ...(carriedFor.get(a)?.length ? { snapshots: carriedFor.get(a) } : {}), ...swapLease(a.workerId),
        },
          ctx.settings.swapStepTimeoutMs + plan.probation.callbackTimeoutMs));
      for (const o of failed(adopted)) this.fail('adopt', `${o.item.assignment.instanceId} (v${o.item.assignment.version}) on ${o.item.workerId}`, o.error);
      this.time('adopt', at, this.ok(), this.ok()
        ? plan.adopts.map((a) => `${a.assignment.instanceId} (v${a.assignment.version}) on ${a.workerId}`).join(', ')
        : this.failures[0]!.message);
      this.noteExpiredLeases();
      if (!this.ok()) return;

      // e. Let the upstreams go: the new instances take the held output.
      at = Date.now();
      const resumeFailed = await pause.resume();
      this.pauseMs = pause.pausedMs;
      this.time('resume', at, resumeFailed.length === 0,
        resumeFailed.length ? `resume failed (their lease ends the pause): ${describeFailures(resumeFailed)}` : `paused ${this.pauseMs} ms`);

      // f. The health gate: init passed; now the first records (or a quiet deadline).
      at = Date.now();
      const timeoutMs = plan.probation.ms + plan.probation.callbackTimeoutMs + HEALTH_SLACK_MS;
      const health = await each(plan.adopts, (a) =>
        this.send(a.workerId, { op: 'health', instanceId: a.assignment.instanceId, timeoutMs }, timeoutMs) as Promise<HealthReply>);
      for (const o of failed(health)) this.fail('health', `${o.item.assignment.instanceId} on ${o.item.workerId}`, o.error);
      const processed = health.reduce((n, o) => n + (o.value?.processed ?? 0), 0);
      this.time('health', at, this.ok(), this.ok()
        ? `${plan.adopts.length} instance(s) passed probation, ${processed} record(s) handled`
        : this.failures[0]!.message);
    } catch (err) {
      // A bug here must not leave upstreams paused or the new version half in: roll back.
      this.fail('swap', 'controller', err);
    }
  }

  /**
   * The inline snapshots each adopt carries. An adopt that would carry more than fits one message gets
   * none: those snapshots are put in the Object Store, where the worker reads what it is not handed.
   */
  private async carried(adopts: readonly AdoptPlan[], inline: ReadonlyMap<string, string>): Promise<Map<AdoptPlan, { instanceId: string; data: string }[]>> {
    const out = new Map<AdoptPlan, { instanceId: string; data: string }[]>();
    const toStore = new Set<string>();
    for (const a of adopts) {
      const list = a.from.filter((r) => inline.has(r.instanceId)).map((r) => ({ instanceId: r.instanceId, data: inline.get(r.instanceId)! }));
      if (list.reduce((n, c) => n + c.data.length, 0) > MAX_CARRIED_CHARS) for (const c of list) toStore.add(c.instanceId);
      else out.set(a, list);
    }
    if (toStore.size) {
      const os = await new Objm(this.ctx.nc).create(buckets.snapshots);
      for (const id of toStore) await os.putBlob({ name: `${this.swapId}/${id}` }, Buffer.from(inline.get(id)!, 'base64'));
    }
    return out;
  }

  /** Upstreams held again, abort everywhere (old instances resume with their state and the input the new ones took), upstreams resumed. */
  private async rollBack(): Promise<never> {
    const { plan, ctx } = this;
    const pause = this.pause!;
    const failure = this.failures[0]!;
    const reason = truncateError(failure.message);
    // The old instances must get back what the new ones took before anything new arrives.
    if (!pause.paused) {
      const at = Date.now();
      const again = await pause.pause();
      this.time('pause', at, again.length === 0,
        again.length ? `could not pause again: ${describeFailures(again)}` : `again, for the rollback: ${pause.upstreams.length} upstream instance(s)`);
    }
    let at = Date.now();
    const live = this.involved.filter((w) => ctx.workers.isAlive(w));
    const dead = this.involved.filter((w) => !live.includes(w));
    const outcomes: Outcome<string, AbortReply>[] = [];
    // Downstream members first: a reinstated producer publishes at once, to old instances that must be subscribed again.
    for (const group of this.abortOrder) {
      outcomes.push(...await each(group.filter((w) => live.includes(w)), (w) => this.send(w, { op: 'abort', swapId: this.swapId, reason }) as Promise<AbortReply>));
    }
    const aborted = failed(outcomes);
    for (const o of aborted) this.log.error({ err: o.error, workerId: o.item }, `${plan.what}: abort on ${o.item} failed: ${errorMessage(o.error)}`);
    const lost = outcomes.reduce((n, o) => n + (o.value?.lostBatches ?? 0), 0);
    this.time('abort', at, aborted.length === 0 && lost === 0,
      `${live.length} worker(s)` +
        (aborted.length ? `; failed on ${aborted.map((o) => `${o.item}: ${errorMessage(o.error)}`).join('; ')}` : '') +
        (lost ? `; ${lost} input batch(es) could not be handed back: lost` : '') +
        (dead.length ? `; not alive (their instances are re-placed from desired state): ${dead.join(', ')}` : ''));
    const replayed = await replayHandbacks(ctx, this.swapId, outcomes.flatMap((o) => o.value?.handbacks ?? []), this.log, plan.what);
    if (replayed) this.record(replayed);
    at = Date.now();
    const resumeFailed = await pause.resume();
    this.pauseMs = pause.pausedMs;
    this.time('resume', at, resumeFailed.length === 0,
      resumeFailed.length ? `resume failed (their lease ends the pause): ${describeFailures(resumeFailed)}` : undefined);
    await recordHistorySafely(ctx, this.history('rolled-back', reason));
    this.log.warn({ step: failure.step, pauseMs: this.pauseMs }, `${plan.what} rolled back (${failure.step} failed): ${reason}`);
    throw new SwapRolledBackError(`${plan.what} rolled back: ${reason}`, { detail: this.reply('rolled-back', reason) });
  }

  /** g. Point of no return: workers publish the held output and drop the standby instances; then desired state follows. */
  private async commit(): Promise<SwapReply> {
    const { plan, ctx } = this;
    const next = plan.committed();
    const alsoNext = (plan.alsoChanged ?? []).map((c) => c.committed());
    await this.journal('committing', next, alsoNext);
    const at = Date.now();
    const live = this.involved.filter((w) => ctx.workers.isAlive(w));
    const failures = failed(await each(live, (w) => this.send(w, { op: 'commit', swapId: this.swapId })));
    for (const o of failures) {
      this.log.error({ err: o.error, workerId: o.item }, `${plan.what}: commit on ${o.item} failed: ${errorMessage(o.error)}; reconciliation corrects it`);
    }
    this.time('commit', at, failures.length === 0,
      failures.length ? `failed on ${failures.map((o) => `${o.item}: ${errorMessage(o.error)}`).join('; ')}` : `${live.length} worker(s)`);
    const saveErr = await ctx.store.saveOrRetry(next);
    if (saveErr) this.log.error({ err: saveErr }, `${plan.what}: could not write desired state to KV (will retry): ${saveErr.message}`);
    await recordHistorySafely(ctx, this.history('ok'));
    for (const rec of alsoNext) {
      const err = await ctx.store.saveOrRetry(rec);
      if (err) this.log.error({ err }, `${plan.what}: could not write desired state of "${rec.name}" to KV (will retry): ${err.message}`);
      await recordHistorySafely(ctx, this.historyOf(rec, 'ok'));
    }
    this.log.info({ pauseMs: this.pauseMs, loadMs: this.loadMs, version: plan.version },
      `${plan.what}: done, upstreams paused ${this.pauseMs} ms, load ${this.loadMs} ms`);
    return this.reply('ok');
  }

  /**
   * Before the point of no return, every worker must still hold the swap: one
   * that let its lease run out has rolled it back by itself, and committing
   * the others would leave the new version running without that worker's part.
   */
  private async confirmLease(): Promise<void> {
    const replies = await each(this.involved, (w) => this.send(w, { op: 'renew', swapId: this.swapId, leaseMs: this.leaseOf(w) }) as Promise<{ renewed?: boolean }>);
    for (const o of replies) {
      if (o.error !== undefined) this.fail('lease', `worker ${o.item}`, o.error);
      else if (o.value?.renewed !== true) this.fail('lease', `worker ${o.item}`, new Error(`worker ${o.item} no longer holds swap ${this.swapId} (its swap lease ran out and it rolled back by itself)`));
    }
  }

  // ---- helpers ---------------------------------------------------------

  /**
   * Keeps the swap alive on its workers: each rolls it back by itself once
   * renewals stop for swapLeaseMs (this controller died), which is before the
   * upstream pauses run out, so the old instances are back before anything flows.
   */
  private renewSwapLease(): void {
    const leaseMs = Math.min(...this.involved.map((w) => this.leaseOf(w)));
    this.leaseTimer = setInterval(() => {
      for (const w of this.involved) {
        this.send(w, { op: 'renew', swapId: this.swapId, leaseMs: this.leaseOf(w) }).catch((err: unknown) =>
          this.log.warn({ err, workerId: w }, `${this.plan.what}: could not renew the swap lease on ${w}: ${errorMessage(err)}`));
      }
    }, Math.max(50, Math.floor(leaseMs / 3)));
  }

  /**
   * The swap lease of one worker. Workers roll a swap back by themselves in the order its own rollback
   * would abort them (abortOrderOf): the groups first in that order get a shorter lease, so that a
   * reinstated member of a fused chain publishes only to old instances that are subscribed again.
   */
  private leaseOf(workerId: string): number {
    const full = this.ctx.settings.swapLeaseMs;
    const groups = this.abortOrder.length;
    if (groups < 2) return full;
    const stagger = Math.min(LEASE_STAGGER_MS, Math.floor(full / 2 / (groups - 1)));
    const at = this.abortOrder.findIndex((g) => g.includes(workerId));
    return full - (groups - 1 - Math.max(0, at)) * stagger;
  }

  private send(workerId: string, ctl: WorkerControl, timeoutMs = this.ctx.settings.swapStepTimeoutMs): Promise<object> {
    return controlWorker(this.ctx, workerId, ctl, timeoutMs);
  }

  private ok(): boolean {
    return this.failures.length === 0;
  }

  private fail(step: string, where: string, err: unknown): void {
    this.failures.push({ step, message: errorMessage(err) });
    this.log.warn({ err, step }, `${this.plan.what}: ${step} failed (${where}): ${errorMessage(err)}`);
  }

  private time(step: string, at: number, ok: boolean, detail?: string): void {
    this.record({ step, at, ms: Date.now() - at, ok, ...(detail !== undefined ? { detail } : {}) });
    // The steps so far go to the journal (not waited for): a restarted controller records how far the swap got.
    if (this.journalPhase === 'started') void this.journal('started');
  }

  /** A step for the reply and history, and for the client watching (plan.progress) now. */
  private record(step: HistoryStep): void {
    this.steps.push(step);
    this.plan.progress?.(step);
  }

  /** A lease not renewed in time may have let an upstream resume while the swap still held it: recorded, not fatal. */
  private noteExpiredLeases(): void {
    const expired = this.pause?.expired() ?? [];
    if (expired.length === 0) return;
    this.record({
      step: 'lease-expired', at: Date.now(), ms: 0, ok: false,
      detail: `pause not renewed for ${this.ctx.settings.pauseLeaseMs} ms: ${describeUpstreams(expired)}`,
    });
    this.log.error({ upstreams: expired }, `${this.plan.what}: the pause lease of ${describeUpstreams(expired)} was not renewed in time; they may have resumed`);
  }

  private reply(result: SwapReply['result'], error?: string): SwapReply {
    const { plan } = this;
    return {
      name: plan.rec.name, result, fromVersion: plan.fromVersion, version: plan.version, sha: plan.target.sha,
      ...(this.pauseMs !== undefined ? { pauseMs: this.pauseMs } : {}), ...(this.loadMs !== undefined ? { loadMs: this.loadMs } : {}),
      steps: this.steps, diff: plan.diff, ...(error !== undefined ? { error } : {}),
    };
  }

  private history(result: HistoryEntry['result'], error?: string): HistoryEntry {
    const { plan } = this;
    const { target } = plan;
    return {
      name: plan.rec.name, version: plan.version, sha: target.sha, ...(target.source !== undefined ? { source: target.source } : {}),
      action: plan.action, at: Date.now(), result, ...(error !== undefined ? { error } : {}), fromVersion: plan.fromVersion,
      ...(this.pauseMs !== undefined ? { pauseMs: this.pauseMs } : {}), ...(this.loadMs !== undefined ? { loadMs: this.loadMs } : {}),
      steps: [...this.steps], metadata: target.metadata, lang: target.lang,
    };
  }

  /** The history entry of another computation the run changes (fuse, split): this run's, under its name and version. */
  private historyOf(rec: ComputationRecord, result: HistoryEntry['result']): HistoryEntry {
    return { ...this.history(result), name: rec.name, version: rec.version, sha: rec.sha, metadata: rec.metadata, lang: rec.lang, fromVersion: rec.version };
  }

  /**
   * Best effort: a journal that cannot be written only weakens recovery after a controller crash.
   * Writes are chained, so a late progress write never overwrites a later phase or a deletion.
   */
  private journal(phase: SwapJournal['phase'], record?: ComputationRecord, alsoRecords: ComputationRecord[] = []): Promise<void> {
    this.journalPhase = phase;
    const result = phase === 'committing' ? 'ok' : 'rolled-back';
    const also = (this.plan.alsoChanged ?? []).map((c, i) => ({
      name: c.rec.name, history: this.historyOf(c.rec, result), ...(alsoRecords[i] ? { record: alsoRecords[i] } : {}),
    }));
    const j: SwapJournal = {
      swapId: this.swapId, name: this.plan.rec.name, phase, workers: this.involved, startedAt: Date.now(),
      history: this.history(result), ...(record ? { record } : {}), ...(also.length ? { also } : {}),
      ...(this.abortOrder.length > 1 ? { abortOrder: this.abortOrder } : {}),
      ...(this.pause?.upstreams.length ? { upstreams: this.pause.upstreams.map((u) => ({ ...u })) } : {}),
    };
    this.journalWrites = this.journalWrites.then(async () => {
      if (this.journalPhase === undefined) return;
      try {
        await this.ctx.store.putSwapJournal(j);
      } catch (err) {
        this.log.warn({ err }, `${this.plan.what}: could not write the swap journal: ${errorMessage(err)}`);
      }
    });
    return this.journalWrites;
  }

  private async dropJournal(): Promise<void> {
    this.journalPhase = undefined;
    await this.journalWrites;
    try {
      await this.ctx.store.deleteSwapJournal(this.plan.rec.name);
    } catch (err) {
      this.log.warn({ err }, `${this.plan.what}: could not delete the swap journal: ${errorMessage(err)}`);
    }
  }

  /** Snapshots exported to the store are only needed during the swap. */
  private async removeStoredSnapshots(): Promise<void> {
    const stored = this.plan.releases.filter((p) => exportOf(p, this.plan.adopts) === 'store');
    if (stored.length === 0) return;
    try {
      const os = await new Objm(this.ctx.nc).open(buckets.snapshots);
      for (const p of stored) await os.delete(`${this.swapId}/${p.instanceId}`).catch(() => undefined);
    } catch (err) {
      this.log.debug({ err }, `could not clean up the snapshots of swap ${this.swapId}: ${errorMessage(err)}`);
    }
  }
}
