/**
 * The swaps under way on one worker, each with its roles (which instances
 * are the old version, released; which the new, adopted) and its lease: a
 * swap neither committed, aborted nor renewed within its lease is rolled back
 * here by the worker itself (the controller is gone).
 */
import type { SnapshotRef, UpstreamRef } from '../../protocol/index.js';

/** Lease of a swap whose controller sent none (an older controller): its old fixed deadline. */
export const DEFAULT_SWAP_LEASE_MS = 60_000;

export interface SwapSession {
  swapId: string;
  /** Instances asked to release: the old version, reinstated by an abort whatever state they are in. */
  old: Set<string>;
  /** Adopted instances (the new version), each with the instances it replaced. */
  adopted: Map<string, SnapshotRef[]>;
  /** Upstreams the swap paused, by instance id. */
  upstreams: UpstreamRef[];
}

interface Entry extends SwapSession {
  leaseMs: number;
  timer: NodeJS.Timeout | undefined;
}

export class SwapSessions {
  private readonly sessions = new Map<string, Entry>();

  constructor(private readonly onExpired: (swapId: string) => void) {}

  /** The session of `swapId`, created on first use; (re)arms its lease and learns its upstreams. */
  join(swapId: string, leaseMs: number | undefined, upstreams: UpstreamRef[] | undefined): SwapSession {
    let s = this.sessions.get(swapId);
    if (!s) {
      s = { swapId, old: new Set(), adopted: new Map(), upstreams: [], leaseMs: leaseMs ?? DEFAULT_SWAP_LEASE_MS, timer: undefined };
      this.sessions.set(swapId, s);
    }
    if (leaseMs !== undefined) s.leaseMs = leaseMs;
    for (const u of upstreams ?? []) if (!s.upstreams.some((k) => k.instanceId === u.instanceId)) s.upstreams.push(u);
    this.arm(s);
    return s;
  }

  /** Renews a swap's lease; false when this worker has no such swap (never joined, or already ended). */
  renew(swapId: string, leaseMs: number): boolean {
    const s = this.sessions.get(swapId);
    if (!s) return false;
    s.leaseMs = leaseMs;
    this.arm(s);
    return true;
  }

  get(swapId: string): SwapSession | undefined {
    return this.sessions.get(swapId);
  }

  /** The swap an instance takes part in, if any. */
  holding(instanceId: string): SwapSession | undefined {
    for (const s of this.sessions.values()) if (s.old.has(instanceId) || s.adopted.has(instanceId)) return s;
    return undefined;
  }

  /** Removes a swap (commit or abort) and stops its lease; undefined when it is not known here. */
  end(swapId: string): SwapSession | undefined {
    const s = this.sessions.get(swapId);
    if (!s) return undefined;
    if (s.timer) clearTimeout(s.timer);
    this.sessions.delete(swapId);
    return s;
  }

  private arm(s: Entry): void {
    if (s.timer) clearTimeout(s.timer);
    s.timer = setTimeout(() => {
      s.timer = undefined;
      this.onExpired(s.swapId);
    }, s.leaseMs);
    s.timer.unref();
  }
}
