/**
 * The async callback an instance is awaiting, if any: since when, and what
 * it was working on. A callback that has not settled for stuckAfterMs is
 * *stuck*: reported once (log, heartbeat `stuck`), and a release may abandon
 * it, handing its unfinished input to the next version. Abandoning bumps a
 * generation so the callback's late continuation does nothing, and lets the
 * serial loop stop awaiting it.
 */
import type { Logger } from 'pino';
import type { Batch } from '../../protocol/index.js';
import type { Inbound } from './edges.js';

export interface InFlight {
  where: 'processRecord' | 'processTimer';
  since: number;
  /** processRecord: the batch, the index of the record running, and how it arrived. */
  batch?: Batch;
  index?: number;
  item?: Inbound;
  /** processTimer: the firing, put back for the next version when handed over. */
  timer?: [string, number];
}

export class CallbackWatch {
  private current: InFlight | undefined;
  /** Bumped when a stuck callback is abandoned: its late continuation then does nothing. */
  generation = 0;
  private unstick: (() => void) | undefined;
  private reported = false;
  /** How often this instance got stuck. */
  count = 0;

  constructor(private readonly stuckAfterMs: number, private readonly log: Logger, private readonly what: string) {}

  /** An async callback started. */
  begin(f: InFlight): void {
    this.current = f;
  }

  /** Awaits a callback chain, unless it is abandoned as stuck first. */
  await(p: Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.unstick = resolve;
      p.then(resolve, reject);
    }).finally(() => {
      this.unstick = undefined;
    });
  }

  /** The callback returned (or threw). */
  settled(): void {
    const f = this.current;
    this.current = undefined;
    if (this.reported && f) {
      this.reported = false;
      this.log.warn({ callback: f.where, ms: Date.now() - f.since }, `${f.where} returned after ${Date.now() - f.since} ms; no longer stuck`);
    }
  }

  isStuck(now: number): boolean {
    return this.current !== undefined && now - this.current.since >= this.stuckAfterMs;
  }

  /** Reports (once per callback) an async callback that has not settled within stuckAfterMs. */
  check(now: number): void {
    if (!this.isStuck(now) || this.reported) return;
    const f = this.current!;
    this.reported = true;
    this.count++;
    this.log.error({ callback: f.where, ms: now - f.since, stuck: this.count },
      `${f.where} of ${this.what} has not returned for ${now - f.since} ms: stuck ` +
        '(`topo rollback` or `topo swap` hands its input and state to another version)');
  }

  /** Gives up on the stuck callback and returns what it was working on. */
  abandon(): InFlight {
    const f = this.current!;
    this.generation++;
    this.current = undefined;
    this.reported = false;
    this.unstick?.();
    return f;
  }

  /** The heartbeat's `stuck` while stuck. */
  report(now: number): { callback: string; forMs: number; count: number } | undefined {
    if (!this.isStuck(now)) return undefined;
    const f = this.current!;
    return { callback: f.where, forMs: now - f.since, count: Math.max(1, this.count) };
  }
}
