/**
 * Dead letters of one instance: records whose callback threw, and garbage on
 * its input subjects. Garbage is counted every time but dead-lettered at most
 * MALFORMED_LETTERS_PER_SEC times a second with its first MAX_RAW_BYTES
 * bytes, so a flood cannot fill the dead-letter stream at the sender's pace;
 * what was not dead-lettered is logged as a count.
 */
import type { Logger } from 'pino';
import { packr, subjects, type DeadLetter } from '../../protocol/index.js';
import type { Inbound } from './edges.js';
import type { Observed } from './observed.js';

const MALFORMED_LETTERS_PER_SEC = 5;
const MAX_RAW_BYTES = 1_024;

export class DeadLetters {
  private windowAt = 0;
  private letters = 0;
  private suppressed = 0;

  constructor(
    private readonly computation: string,
    private readonly instanceId: string,
    private readonly publish: (subject: string, bytes: Uint8Array) => void,
    private readonly observed: Observed,
    private readonly log: Logger,
    /** Where letters wait instead of being published (a probation), if anywhere. */
    private readonly deferTo: () => DeadLetter[] | undefined,
  ) {}

  send(d: Omit<DeadLetter, 'computation' | 'instanceId' | 'at'>): void {
    this.observed.metrics.deadLetters++;
    const letter: DeadLetter = { computation: this.computation, instanceId: this.instanceId, at: Date.now(), ...d };
    const deferred = this.deferTo();
    if (deferred) deferred.push(letter);
    else this.publishNow(letter);
  }

  publishNow(letter: DeadLetter): void {
    const subject = subjects.deadLetter(this.computation);
    try {
      this.publish(subject, packr.pack(letter));
    } catch (err) {
      // The value itself may not be encodable; keep the reason at least.
      delete letter.record;
      this.publish(subject, packr.pack({ ...letter, error: `${letter.error} (record not encodable: ${errMessage(err)})` }));
    }
  }

  malformed(item: Inbound, err: unknown): void {
    this.observed.metrics.malformed++;
    const now = Date.now();
    if (now - this.windowAt >= 1_000) {
      if (this.suppressed > 0) {
        this.log.warn({ suppressed: this.suppressed, stream: item.stream },
          `${this.suppressed} more malformed batch(es) on the input subjects in the last second: counted, not dead-lettered`);
      }
      this.windowAt = now;
      this.letters = 0;
      this.suppressed = 0;
    }
    if (this.letters >= MALFORMED_LETTERS_PER_SEC) {
      this.suppressed++;
      return;
    }
    this.letters++;
    const data = item.data ?? new Uint8Array();
    const cut = data.length > MAX_RAW_BYTES;
    this.send({
      stream: item.stream, reason: 'malformed batch',
      error: `${errMessage(err)}${cut ? ` (raw: the first ${MAX_RAW_BYTES} of ${data.length} bytes)` : ''}`,
      raw: cut ? data.slice(0, MAX_RAW_BYTES) : data,
    });
  }
}

export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
