/**
 * Runs async tasks one at a time, in submission order. Every mutating
 * operation of the controller (deploy, kill, re-placement, reconciliation)
 * goes through one queue so that they never interleave half-way.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;

  run<T>(task: () => Promise<T>): Promise<T> {
    this.pending++;
    const result = this.tail.then(task);
    // The chain must survive a failed task; the caller still sees the failure.
    this.tail = result.then(
      () => this.pending--,
      () => this.pending--,
    );
    return result;
  }

  /** Tasks submitted and not finished yet. */
  get size(): number {
    return this.pending;
  }

  /** Resolves once everything submitted so far has finished. */
  async idle(): Promise<void> {
    while (this.pending > 0) await this.tail;
  }
}
