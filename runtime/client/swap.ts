/**
 * Hot swap on the client side: option checks, the SwapRequest, and reading a
 * SwapReply back out of a rolled-back swap's error. TopoClient.swap/rollback/
 * promote/history use these; the controller does the swap itself.
 */
import {
  BadRequestError,
  SwapRolledBackError,
  TopoError,
  type HistoryEntry,
  type CanaryRecord,
  type ComputationStatus,
  type NormalizedMetadata,
  type Probation,
  type ScaleReply,
  type StatusReply,
  type SwapReply,
  type SwapRequest,
} from '../../protocol/index.js';
import type { BundledComputation } from './bundle.js';
import type { OnProgress } from './progress.js';

export interface SwapOptions {
  /** Route this share of key partitions (an integer 1..99) to the new version, as a canary, instead of all of them. */
  canary?: number;
  /** Only compute what would change (the metadata diff); change nothing. */
  dryRun?: boolean;
  /** Override the controller's probation (health gate) of the new version. */
  probation?: Partial<Probation>;
  /** How long each old instance may drain its backlog before the swap is rolled back instead (ms). */
  drainBudgetMs?: number;
  /**
   * Reply timeout (ms). The controller replies only once every worker has
   * finished its steps and the probation is over; default: the larger of 60 s
   * and probation.ms + 30 s.
   */
  timeoutMs?: number;
  /** Gets each step (preload, pause, release, adopt, resume, health, commit; abort on a rollback) as the controller ends it. */
  onProgress?: OnProgress;
}

/** A SwapReply plus how long the controller took to answer, as seen by the client. */
export interface SwapOutcome extends SwapReply {
  elapsedMs: number;
}

/** What `topo status` shows of a canary running beside the current version. */
export interface CanarySummary {
  version: number;
  sha: string;
  percent: number;
  /** Key partitions routed to the canary. */
  partitions: number[];
  /** Instances of the canary and where they run. */
  placements: { index: number; instanceId: string; workerId: string }[];
  startedAt: number;
}

export type ComputationStatusView = ComputationStatus & { canary?: CanarySummary };
/** StatusReply with each computation's running canary, if any. */
export type StatusView = Omit<StatusReply, 'computations'> & { computations: ComputationStatusView[] };

/** What `scale` resolves with: the ScaleReply plus how long the controller took to answer, as seen by the client. */
export interface ScaleOutcome extends ScaleReply {
  elapsedMs: number;
}

/** Rollbacks and promotes wait on workers like a swap does. */
export const SWAP_API_TIMEOUT_MS = 60_000;

export function swapTimeoutMs(opts: SwapOptions): number {
  return opts.timeoutMs ?? Math.max(SWAP_API_TIMEOUT_MS, (opts.probation?.ms ?? 0) + 30_000, (opts.drainBudgetMs ?? 0) + 30_000);
}

/** Throws BadRequestError naming the first bad option. */
export function checkSwapOptions(opts: SwapOptions): void {
  const { canary, probation } = opts;
  if (canary !== undefined && (!Number.isInteger(canary) || canary < 1 || canary > 99)) {
    throw new BadRequestError(`canary must be an integer percentage from 1 to 99, got ${canary}`);
  }
  for (const [field, value] of Object.entries(probation ?? {})) {
    if (value === undefined) continue;
    if (!['records', 'ms', 'callbackTimeoutMs'].includes(field)) throw new BadRequestError(`unknown probation field "${field}" (records, ms, callbackTimeoutMs)`);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new BadRequestError(`probation.${field} must be an integer >= 0, got ${String(value)}`);
    }
  }
  if (opts.timeoutMs !== undefined && !(opts.timeoutMs > 0)) throw new BadRequestError(`timeoutMs must be positive, got ${opts.timeoutMs}`);
  if (opts.drainBudgetMs !== undefined && !(Number.isSafeInteger(opts.drainBudgetMs) && opts.drainBudgetMs > 0)) {
    throw new BadRequestError(`drainBudgetMs must be a positive integer (ms), got ${opts.drainBudgetMs}`);
  }
}

/** A swap replaces the code of one named computation: the file must define that same name. */
export function checkSwapTarget(name: string, metadata: NormalizedMetadata, file: string): void {
  if (metadata.name !== name) {
    throw new BadRequestError(
      `${file} defines the computation "${metadata.name}", not "${name}": a swap replaces a computation by one of the same name` +
        ` (to add "${metadata.name}" next to it, use \`topo deploy\`)`,
    );
  }
}

export function swapRequest(name: string, bundle: Pick<BundledComputation, 'sha' | 'lang' | 'metadata'>, opts: SwapOptions & { source?: string }): SwapRequest {
  return {
    name,
    sha: bundle.sha,
    lang: bundle.lang,
    metadata: bundle.metadata,
    ...(opts.source !== undefined ? { source: opts.source } : {}),
    ...(opts.canary !== undefined ? { canary: opts.canary } : {}),
    ...(opts.dryRun ? { dryRun: true } : {}),
    ...(opts.probation !== undefined ? { probation: opts.probation } : {}),
    ...(opts.drainBudgetMs !== undefined ? { drainBudgetMs: opts.drainBudgetMs } : {}),
  };
}

/** The SwapReply carried by a SWAP_ROLLED_BACK error (its steps and the new version's error), if it has one. */
export function swapReplyOf(err: unknown): SwapReply | undefined {
  if (!(err instanceof SwapRolledBackError)) return undefined;
  const d = err.detail as Partial<SwapReply> | null | undefined;
  if (d === null || typeof d !== 'object' || typeof d.name !== 'string' || !Array.isArray(d.steps)) return undefined;
  return d as SwapReply;
}

export function canarySummary(c: CanaryRecord): CanarySummary {
  return {
    version: c.version,
    sha: c.sha,
    percent: c.percent,
    partitions: [...c.partitions],
    placements: c.placements.map((p) => ({ index: p.index, instanceId: p.instanceId, workerId: p.workerId })),
    startedAt: c.startedAt,
  };
}

/** How often an interrupted swap's client looks at history, and how long it tolerates a silent controller. */
const WATCH_EVERY_MS = 1_000;
export const CONTROLLER_SILENCE_MS = 15_000;
const REPLY_GRACE_MS = 2_000;

const ACTION_OF = { swap: ['swap', 'canary'], rollback: ['rollback', 'swap'], promote: ['promote'], scale: ['scale'], fuse: ['fuse'], split: ['split'] } as const;

/** The history entry that records the outcome of a request sent at `sentAt`, if there is one yet. */
export function outcomeEntry(entries: readonly HistoryEntry[], verb: keyof typeof ACTION_OF, req: { sha?: string }, sentAt: number): HistoryEntry | undefined {
  const actions: readonly string[] = ACTION_OF[verb];
  return entries.filter((e) => e.at >= sentAt && actions.includes(e.action) && (req.sha === undefined || e.sha === req.sha)).at(-1);
}

/** A SwapReply rebuilt from its history entry; a rolled-back or failed one is thrown as SwapRolledBackError. */
export function replyFromHistory(e: HistoryEntry): SwapReply {
  const reply: SwapReply = {
    name: e.name, result: e.result === 'ok' ? 'ok' : 'rolled-back', fromVersion: e.fromVersion ?? e.version, version: e.version, sha: e.sha,
    ...(e.pauseMs !== undefined ? { pauseMs: e.pauseMs } : {}), ...(e.loadMs !== undefined ? { loadMs: e.loadMs } : {}),
    steps: e.steps ?? [], diff: { istreams: { gained: [], lost: [], regrouped: [] }, ostreams: { gained: [], lost: [] }, producersAffected: [], consumersAffected: [] },
    ...(e.error !== undefined ? { error: e.error } : {}),
  };
  if (reply.result !== 'ok' && (e.action === 'scale' || e.action === 'move' || e.action === 'fuse' || e.action === 'split')) {
    throw new SwapRolledBackError(`${e.action} of "${e.name}" v${e.version} rolled back: ${e.error ?? 'no reason recorded'}`, { detail: reply });
  }
  if (reply.result !== 'ok') throw new SwapRolledBackError(`${e.action} of "${e.name}" to v${e.version} rolled back: ${e.error ?? 'no reason recorded'}`, { detail: reply });
  return reply;
}

/**
 * Never resolves while the controller answers and history has no outcome
 * (the reply itself wins then). Resolves with the outcome found in history
 * (the controller restarted mid-swap and recovered it), or throws once the
 * controller has been silent for CONTROLLER_SILENCE_MS.
 */
export async function watchSwapOutcome(
  client: { historyIfAnswered(name: string, timeoutMs: number): Promise<HistoryEntry[] | undefined> },
  verb: keyof typeof ACTION_OF, req: { name: string; sha?: string }, sentAt: number, signal: AbortSignal,
): Promise<SwapReply> {
  let answeredAt = Date.now();
  while (!signal.aborted) {
    await new Promise((r) => setTimeout(r, WATCH_EVERY_MS));
    if (signal.aborted) break;
    const entries = await client.historyIfAnswered(req.name, 2_000).catch(() => undefined);
    if (entries === undefined) {
      if (Date.now() - answeredAt > CONTROLLER_SILENCE_MS) {
        throw new TopoError(
          `the controller stopped answering during the ${verb} of "${req.name}": the workers roll it back by themselves when its lease runs out ` +
            `(nothing is lost); start the controller again (\`topo up\`) and see \`topo history ${req.name}\` for the outcome`,
        );
      }
      continue;
    }
    answeredAt = Date.now();
    const e = outcomeEntry(entries, verb, req, sentAt);
    if (!e) continue;
    // The controller writes history just before it replies: give the reply (with the full diff) a moment to win.
    await new Promise((r) => setTimeout(r, REPLY_GRACE_MS));
    if (!signal.aborted) return replyFromHistory(e);
  }
  return new Promise<never>(() => undefined);
}
