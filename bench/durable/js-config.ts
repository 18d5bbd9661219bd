/** What the durable bench hands to its hand-written JetStream publisher and consumer (JSON in argv[2]). */
export interface JsConfig {
  url: string;
  /** A worker's .creds file (the same restricted user kind topo's workers run as). */
  creds: string;
  /** That user may only subscribe to its own reply subjects: `_INBOX.<worker id>`. */
  inboxPrefix: string;
  /** JetStream stream name and data subjects `<subjectPrefix>.<partition>`. */
  stream: string;
  subjectPrefix: string;
  partitions: number;
  count: number;
  /** Records per published message (topo's largest batch). */
  batch: number;
  /** Consumer: how often it acks (ack policy all: the last message of each partition), as topo acks after each checkpoint. */
  ackEveryMs: number;
  /** Consumer: messages per pull request and max unacknowledged messages per consumer, as topo's. */
  pullBatch: number;
  maxAckPending: number;
}

export type JsConsumerMessage =
  | { type: 'ready' }
  | { type: 'done'; received: number; messages: number; firstMs: number; lastMs: number };

export type JsPublisherMessage = { type: 'done'; sent: number; messages: number; retries: number };

export function parseJsConfig(arg: string | undefined): JsConfig {
  if (!arg) throw new Error('durable bench process: missing JSON config argument');
  return JSON.parse(arg) as JsConfig;
}
