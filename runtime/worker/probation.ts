/**
 * The health gate of a swapped-in instance (PROTOCOL.md, "Hot swap"): it
 * passes once `records` records were handled, or `ms` passed after upstreams
 * resumed, without a throw or a callback running past `callbackTimeoutMs`.
 * While it runs the instance keeps every input batch it took (replayed to the
 * old version on abort) and holds back dead letters (published on commit).
 */
import { TopoError, type DeadLetter, type Probation } from '../../protocol/index.js';

/** A callback that did not settle within its allowance. */
export class HangError extends Error {}

export function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new HangError(message)), ms)))]).finally(() => clearTimeout(t));
}

export class ProbationGate<Item> {
  /** Input batches taken while on probation, in order: replayed to the old version on abort. */
  readonly log: Item[] = [];
  /** Dead letters of records that failed after the gate passed: published on commit, dropped on abort (the old version redoes them). */
  readonly deadLetters: DeadLetter[] = [];
  processed = 0;
  /** Set by health(): the gate's clock starts once upstreams resume. */
  private startedAt: number | undefined;
  verdict: 'passed' | Error | undefined;
  private waiters: (() => void)[] = [];
  private deadline: NodeJS.Timeout | undefined;
  /** A callback is still running: the deadline alone cannot pass the gate. */
  private inCallback = false;
  private deadlineReached = false;

  constructor(
    readonly cfg: Probation,
    /** `"counter" v3`, for messages. */
    private readonly what: string,
    private readonly onFail: (err: Error) => void,
  ) {}

  get failed(): boolean {
    return this.verdict instanceof Error;
  }

  /** True while a verdict is still to come (a throw now fails the gate). */
  get open(): boolean {
    return this.verdict === undefined;
  }

  /** Waits for the verdict; the gate's clock starts at the first call (upstreams resumed). */
  async health(timeoutMs: number): Promise<{ processed: number; ms: number }> {
    if (this.startedAt === undefined) {
      this.startedAt = Date.now();
      if (this.verdict === undefined) {
        this.deadline = setTimeout(() => {
          this.deadlineReached = true;
          // A callback still running may be hung: its own timeout decides.
          if (!this.inCallback) this.pass();
        }, this.cfg.ms);
      }
    }
    if (this.verdict === undefined) {
      const settled = new Promise<void>((r) => this.waiters.push(r));
      const inTime = await Promise.race([settled.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())]);
      if (!inTime) this.fail(new TopoError(`no health verdict for ${this.what} within ${timeoutMs} ms (a callback is stuck?)`));
    }
    if (this.verdict instanceof Error) throw this.verdict;
    return { processed: this.processed, ms: Date.now() - this.startedAt };
  }

  /** One record handled without error. */
  recordPassed(): void {
    if (this.verdict !== undefined) return;
    this.processed++;
    if (this.processed >= this.cfg.records) this.pass();
  }

  /** A callback that does not settle within callbackTimeoutMs fails the gate. */
  guard(p: Promise<void>, where: string): Promise<void> {
    if (this.verdict !== undefined) return p;
    const ms = this.cfg.callbackTimeoutMs;
    this.inCallback = true;
    return withTimeout(p, ms, `${where} did not return within ${ms} ms`).then(
      () => {
        this.inCallback = false;
        if (this.deadlineReached) this.pass();
      },
      (err: unknown) => {
        this.inCallback = false;
        if (err instanceof HangError) this.fail(new TopoError(`${where} of ${this.what} hung: ${err.message}`));
        throw err;
      },
    );
  }

  pass(): void {
    if (this.verdict !== undefined) return;
    this.verdict = 'passed';
    this.settle();
  }

  fail(err: Error): void {
    if (this.verdict !== undefined) return;
    this.verdict = err;
    this.onFail(err);
    this.settle();
  }

  /** Wakes whoever waits for the verdict (also on abandon). */
  settle(): void {
    if (this.deadline) clearTimeout(this.deadline);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
