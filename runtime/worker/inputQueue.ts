/**
 * The input batches an instance has taken and not yet processed, in arrival
 * order. Taking from the head is O(1) (the array is compacted once its dead
 * head outgrows its live part); replayed input goes in front.
 */
import type { Inbound } from './edges.js';

export class InputQueue {
  private items: Inbound[] = [];
  private head = 0;

  push(item: Inbound): void {
    this.items.push(item);
  }

  /** Batches waiting. */
  get length(): number {
    return this.items.length - this.head;
  }

  get empty(): boolean {
    return this.head >= this.items.length;
  }

  take(): Inbound | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head++] = undefined as unknown as Inbound;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return item;
  }

  /** Puts `items` in front, in their order (replayed or handed-over input is processed first). */
  prepend(items: readonly Inbound[]): void {
    this.items = [...items, ...this.items.slice(this.head)];
    this.head = 0;
  }

  /** Removes and returns everything waiting, in order. */
  drain(): Inbound[] {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }
}
