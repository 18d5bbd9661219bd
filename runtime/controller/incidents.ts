/**
 * What went wrong with computations, beyond what heartbeats say:
 * - stuck reports: a worker's watchdog saw a callback block the event loop
 *   (a synchronous loop) and killed the worker process; its supervisor
 *   restarts it and the reconciler assigns its instances again, without the
 *   keyed state they held in memory;
 * - computation cool-down: a computation whose instances failed `limit` times
 *   within `windowMs` (assign/init failed on re-placement, or stuck) is not
 *   re-placed for `coolDownMs` instead of being retried in a loop.
 * Kept per controller context; status.ts shows it, reconciler.ts consults it.
 */
import type { Msg } from '@nats-io/transport-node';
import { subjects, type ComputationCoolDown, type InstanceReport, type StuckReport } from '../../protocol/index.js';
import type { ControllerContext } from './context.js';

const RECENT = 20;

export interface CoolDownSettings {
  limit: number;
  windowMs: number;
  coolDownMs: number;
}

export function coolDownFromEnv(env: NodeJS.ProcessEnv = process.env): CoolDownSettings {
  const num = (name: string, dflt: number): number => {
    const n = Number(env[name]);
    return env[name] !== undefined && env[name] !== '' && Number.isFinite(n) && n >= 0 ? n : dflt;
  };
  return {
    limit: num('TOPO_COMPUTATION_FAILURE_LIMIT', 3),
    windowMs: num('TOPO_COMPUTATION_FAILURE_WINDOW_MS', 120_000),
    coolDownMs: num('TOPO_COMPUTATION_COOLDOWN_MS', 120_000),
  };
}

export class Incidents {
  total = 0;
  readonly recent: StuckReport[] = [];
  private readonly stuckBy = new Map<string, number>();
  private readonly failures = new Map<string, number[]>();
  private readonly coolDowns = new Map<string, ComputationCoolDown>();
  /** Per computation: records its instances had processed since their last checkpoint when their worker died (at-most-once input: lost). */
  private readonly lostBy = new Map<string, number>();
  private readonly recoveries = new Map<string, { ms: number; at: number }>();

  constructor(readonly settings: CoolDownSettings = coolDownFromEnv()) {}

  /** Records a stuck report; true when its computation entered a cool-down. */
  noteStuck(r: StuckReport, now = Date.now()): boolean {
    this.total++;
    this.recent.push(r);
    if (this.recent.length > RECENT) this.recent.shift();
    if (!r.computation) return false;
    this.stuckBy.set(r.computation, (this.stuckBy.get(r.computation) ?? 0) + 1);
    return this.noteFailure(r.computation, `stuck in ${r.callback ?? 'a callback'} for ${r.forMs} ms on ${r.workerId} (worker restarted)`, now);
  }

  /**
   * A worker died (lease expired) or came back as a new process: what its instances had processed
   * since their last checkpoint on at-most-once input is gone from their state. Returns the total.
   */
  noteWorkerLost(reports: Iterable<InstanceReport>): number {
    let total = 0;
    for (const r of reports) {
      const n = r.metrics.sinceCheckpoint ?? 0;
      if (n <= 0) continue;
      this.lostBy.set(r.computation, (this.lostBy.get(r.computation) ?? 0) + n);
      total += n;
    }
    return total;
  }

  /** An instance of `computation` runs again after its worker died: `ms` from the worker's last heartbeat to its assign answered. */
  noteRecovery(computation: string, ms: number, at = Date.now()): void {
    this.recoveries.set(computation, { ms: Math.max(0, Math.round(ms)), at });
  }

  lastRecovery(computation: string): { ms: number; at: number } | undefined {
    return this.recoveries.get(computation);
  }

  lostSinceCheckpoint(computation: string): number {
    return this.lostBy.get(computation) ?? 0;
  }

  stuckCount(computation: string): number {
    return this.stuckBy.get(computation) ?? 0;
  }

  /** One failure of an instance of `computation`; true when this one started a cool-down. */
  noteFailure(computation: string, reason: string, now = Date.now()): boolean {
    const { limit, windowMs, coolDownMs } = this.settings;
    const times = [...(this.failures.get(computation) ?? []).filter((t) => now - t < windowMs), now];
    this.failures.set(computation, times);
    if (limit <= 0 || times.length < limit || this.coolDownOf(computation, now)) return false;
    this.coolDowns.set(computation, { until: now + coolDownMs, failures: times.length, windowMs, reason });
    this.failures.set(computation, []);
    return true;
  }

  /** The running cool-down of `computation`, if any (an expired one is dropped). */
  coolDownOf(computation: string, now = Date.now()): ComputationCoolDown | undefined {
    const c = this.coolDowns.get(computation);
    if (c && now >= c.until) {
      this.coolDowns.delete(computation);
      return undefined;
    }
    return c;
  }

  /** Computations with failures, cool-downs or stuck counts (to forget those no longer deployed). */
  names(): string[] {
    return [...new Set([...this.failures.keys(), ...this.coolDowns.keys(), ...this.stuckBy.keys(), ...this.lostBy.keys()])];
  }

  forget(computation: string): void {
    this.failures.delete(computation);
    this.coolDowns.delete(computation);
    this.stuckBy.delete(computation);
    this.lostBy.delete(computation);
    this.recoveries.delete(computation);
  }
}

const registry = new WeakMap<ControllerContext, Incidents>();

export function incidentsOf(ctx: ControllerContext): Incidents {
  let i = registry.get(ctx);
  if (!i) registry.set(ctx, (i = new Incidents()));
  return i;
}

function isStuckReport(v: unknown): v is StuckReport {
  if (v === null || typeof v !== 'object') return false;
  const r = v as Record<string, unknown>;
  const optStr = (k: string): boolean => r[k] === undefined || (typeof r[k] === 'string' && (r[k] as string).length <= 256);
  return typeof r.workerId === 'string' && r.workerId.length <= 128 && Number.isSafeInteger(r.pid) && Number.isFinite(r.forMs) &&
    Number.isFinite(r.thresholdMs) && Number.isFinite(r.at) && typeof r.action === 'string' && r.action.length <= 512 &&
    optStr('computation') && optStr('instanceId') && optStr('callback');
}

/** Subscribes to stuck reports (`topo.worker.stuck.*`) for this controller. */
export function watchStuckReports(ctx: ControllerContext): { unsubscribe(): void } {
  const incidents = incidentsOf(ctx);
  return ctx.nc.subscribe(subjects.stuckAll, {
    callback: (err, msg: Msg) => {
      if (err) return;
      let r: unknown;
      try {
        r = msg.json();
      } catch {
        return;
      }
      if (!isStuckReport(r) || msg.subject !== subjects.stuck(r.workerId)) return;
      const cooled = incidents.noteStuck(r);
      ctx.log.error({ stuck: r }, `worker ${r.workerId} (pid ${r.pid}): ${r.callback ?? 'a callback'} of ${r.computation ?? '(none)'}${r.instanceId ? ` (${r.instanceId})` : ''} ` +
        `blocked the event loop for ${r.forMs} ms: ${r.action}; the keyed state its instances held in memory is lost`);
      if (cooled && r.computation) {
        const c = incidents.coolDownOf(r.computation)!;
        ctx.log.error({ computation: r.computation, coolDown: c }, `"${r.computation}" failed ${c.failures} times within ${c.windowMs} ms: cool-down, not re-placed until ${new Date(c.until).toISOString()}`);
      }
    },
  });
}
