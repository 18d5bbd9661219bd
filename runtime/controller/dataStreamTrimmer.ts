/**
 * Trims the JetStream streams of at-least-once topo streams (limits retention,
 * runtime/controller/infrastructure.ts ensureDataStreams): each partition's
 * messages up to the lowest ack floor of the consumers reading that partition
 * are purged, so a message stays until every consumer group has acked it, as
 * interest retention would keep it, without that retention's loss on a
 * nats-server 2.9 shutdown. A stream nobody reads any more (no consumer) is
 * emptied: a group that starts reading takes what is published from then on.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { atLeastOnceNames, subjects } from '../../protocol/index.js';

/** How often the streams are trimmed. */
export const TRIM_EVERY_MS = 2_000;

export class DataStreamTrimmer {
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private problemLoggedAt = 0;
  /** Per stream and partition subject: purged below this sequence. */
  private readonly purgedBelow = new Map<string, number>();
  /** Messages purged since this controller started. */
  purged = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    /** The at-least-once topo streams of the desired state. */
    private readonly streams: () => string[],
  ) {}

  start(everyMs = TRIM_EVERY_MS): void {
    this.timer = setInterval(() => void this.trim(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** One pass over every at-least-once stream (one at a time: a slow pass is not overlapped). */
  async trim(): Promise<void> {
    if (this.running || this.nc.isClosed()) return;
    this.running = true;
    try {
      const jsm = await jetstreamManager(this.nc);
      for (const stream of new Set(this.streams())) {
        const name = atLeastOnceNames.stream(stream);
        // Per partition subject, the lowest ack floor of its consumers; `whole`: of those reading several
        // partitions at once (a wildcard filter, or none: none of topo's own), which hold every partition.
        const floors = new Map<string, number>();
        const groupFloors = new Map<string, { subject: string; floor: number }>();
        let whole = Infinity;
        let consumers = 0;
        try {
          for await (const ci of jsm.consumers.list(name)) {
            consumers++;
            const subject = ci.config.filter_subject ?? '';
            // A group's incarnations of one partition (`<group>_p<p>_<incarnation>`): the group is as far as its
            // furthest one (a new incarnation starts after it); an older one left behind (its deletion failed
            // while the server was down) must not hold the partition.
            const group = ci.name.replace(/_[a-z0-9]+$/, '');
            const k = `${group} ${subject}`;
            groupFloors.set(k, { subject, floor: Math.max(groupFloors.get(k)?.floor ?? 0, ci.ack_floor.stream_seq) });
          }
          for (const { subject, floor } of groupFloors.values()) {
            if (subject === '' || /[*>]/.test(subject)) whole = Math.min(whole, floor);
            else floors.set(subject, Math.min(floors.get(subject) ?? Infinity, floor));
          }
        } catch (err) {
          if (/stream not found/i.test((err as Error).message)) continue;
          throw err;
        }
        if (consumers === 0) {
          const r = await jsm.streams.purge(name);
          this.purged += r.purged;
          continue;
        }
        const targets: [string, number][] = floors.size
          ? [...floors].map(([subject, floor]) => [subject, Math.min(floor, whole)])
          : [[subjects.dataAll(stream), whole]];
        for (const [subject, floor] of targets) {
          const below = floor + 1;
          const key = `${name} ${subject}`;
          if (below <= (this.purgedBelow.get(key) ?? 1)) continue;
          const r = await jsm.streams.purge(name, { filter: subject, seq: below });
          this.purged += r.purged;
          this.purgedBelow.set(key, below);
        }
      }
    } catch (err) {
      const now = Date.now();
      if (now - this.problemLoggedAt >= 30_000) {
        this.problemLoggedAt = now;
        this.log.warn({ err: (err as Error).message }, `could not trim the at-least-once streams: ${(err as Error).message}; they keep what they hold until the next pass`);
      }
    } finally {
      this.running = false;
    }
  }
}
