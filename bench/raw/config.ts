/** What the bench runner hands to the raw publisher and subscriber (as JSON in argv[2]). */
export interface RawConfig {
  url: string;
  /** 'single': one record per NATS message; 'batched': BATCH_SIZE records per message. */
  mode: 'single' | 'batched';
  /** Records to send (a fixed count, so the subscriber can tell what was lost). */
  count: number;
  /** Data subject; the end marker goes to `${subject}.end`, progress to `${subject}.ack`. */
  subject: string;
  /**
   * Hand-written flow control: the publisher keeps at most this many records
   * unacknowledged by the subscriber. 0 turns it off: the publisher then only
   * awaits nc.flush() after each chunk, and a slow subscriber can lose records.
   */
  window: number;
}

/** Subscriber -> runner over the IPC channel. */
export type SubscriberMessage =
  | { type: 'ready' }
  | { type: 'done'; received: number; expected: number; messages: number; firstMs: number; lastMs: number; disconnects: number };

/** Runner -> subscriber: report now (used when the end marker did not arrive). */
export type RunnerMessage = { type: 'report'; expected: number };

export type PublisherMessage = { type: 'done'; sent: number; disconnects: number };

export function parseRawConfig(arg: string | undefined): RawConfig {
  if (!arg) throw new Error('raw bench process: missing JSON config argument');
  return JSON.parse(arg) as RawConfig;
}

export const endSubject = (subject: string): string => `${subject}.end`;
export const ackSubject = (subject: string): string => `${subject}.ack`;
