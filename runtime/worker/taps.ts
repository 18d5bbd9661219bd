/**
 * Which streams someone is tapping right now, as announced on
 * topo.tap.<stream> (PROTOCOL.md): an announcement holds for TAP_HOLD_MS,
 * and taps repeat it about once a second. Fused outlets publish on NATS only
 * while their stream is tapped or read by a NATS consumer group.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { NAME_PATTERN, subjects } from '../../protocol/index.js';

export const TAP_HOLD_MS = 3_000;
/** Streams remembered at most (a flood of made-up names cannot grow the table further). */
const MAX_TAPPED = 1_024;

export class TapInterest {
  private readonly until = new Map<string, number>();
  private sub: Subscription | undefined;

  constructor(private readonly nc?: NatsConnection) {}

  start(): void {
    if (!this.nc || this.sub) return;
    const prefix = subjects.tapInterest('');
    this.sub = this.nc.subscribe(subjects.tapInterestAll, {
      callback: (err, msg) => {
        if (err) return;
        const stream = msg.subject.slice(prefix.length);
        if (NAME_PATTERN.test(stream)) this.note(stream, Date.now());
      },
    });
  }

  note(stream: string, now: number): void {
    if (!this.until.has(stream) && this.until.size >= MAX_TAPPED) {
      for (const [s, t] of this.until) if (t <= now) this.until.delete(s);
      if (this.until.size >= MAX_TAPPED) return;
    }
    this.until.set(stream, now + TAP_HOLD_MS);
  }

  has(stream: string): boolean {
    const t = this.until.get(stream);
    return t !== undefined && t > Date.now();
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
  }
}
