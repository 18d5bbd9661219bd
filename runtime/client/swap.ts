/**
 * Hot swap on the client side: option checks, the SwapRequest, and reading a
 * SwapReply back out of a rolled-back swap's error. TopoClient.swap/rollback/
 * promote/history use these; the controller does the swap itself.
 */
import {
  BadRequestError,
  SwapRolledBackError,
  type CanaryRecord,
  type ComputationStatus,
  type NormalizedMetadata,
  type Probation,
  type StatusReply,
  type SwapReply,
  type SwapRequest,
} from '../../sdk/protocol/index.js';
import type { BundledComputation } from './bundle.js';

export interface SwapOptions {
  /** Route this share of key partitions (an integer 1..99) to the new version, as a canary, instead of all of them. */
  canary?: number;
  /** Only compute what would change (the metadata diff); change nothing. */
  dryRun?: boolean;
  /** Override the controller's probation (health gate) of the new version. */
  probation?: Partial<Probation>;
  /**
   * Reply timeout (ms). The controller replies only once every worker has
   * finished its steps and the probation is over; default: the larger of 60 s
   * and probation.ms + 30 s.
   */
  timeoutMs?: number;
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

/** Rollbacks and promotes wait on workers like a swap does. */
export const SWAP_API_TIMEOUT_MS = 60_000;

export function swapTimeoutMs(opts: SwapOptions): number {
  return opts.timeoutMs ?? Math.max(SWAP_API_TIMEOUT_MS, (opts.probation?.ms ?? 0) + 30_000);
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
