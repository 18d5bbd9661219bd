/**
 * The benchmark record: the same shape topo puts on the wire, built the same
 * way by the raw baseline and by the topo source computation, so both sides
 * pay for the same allocations and encode the same bytes.
 *
 *   [key: ~8 chars, value: {id, user, text: ~60 chars}, ts, seq]
 */

/** topo's largest batch (records per NATS message); the raw batched case uses the same. */
export const BATCH_SIZE = 256;

const TEXTS = [
  'streams are just subjects and records travel in small batches',
  'deploying one operator at a time keeps the topology running ok',
  'key grouping sends every record of a key to the same instance!',
  'a shuffle consumer group shares the load across its instances',
  'timers drive the sources; flow control keeps the queues short.',
  'state is snapshotted and handed over on a hot swap, key by key',
  'nats carries the data plane and the control plane side by side',
  'msgpack keeps the batches compact and readable in any language',
] as const;

const USERS = ['ada', 'alan', 'grace', 'edsger', 'barbara', 'donald', 'ken', 'linus'] as const;

/** 1024 distinct 8-character keys, made once. */
const KEYS: readonly string[] = Array.from({ length: 1024 }, (_, i) => `k${i.toString(36).padStart(7, '0')}`);

export interface BenchValue {
  id: number;
  user: string;
  text: string;
}

export function benchKey(i: number): string {
  return KEYS[i & 1023]!;
}

export function benchValue(i: number): BenchValue {
  return { id: i, user: USERS[i & 7]!, text: TEXTS[(i >>> 3) & 7]! };
}
