/**
 * Creates (or opens, when they already exist) the KV buckets, object store and
 * JetStream streams the control plane uses. Safe to run on every controller start.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { atLeastOnceNames, buckets, CHECKPOINT_REVISIONS, jsStreams, subjects } from '../../protocol/index.js';

export interface ControlPlaneStores {
  state: KV;
  workers: KV;
  history: KV;
  artifacts: ObjectStore;
  checkpoints: KV;
}

const HOUR_MS = 3_600_000;
/** Revisions the history bucket keeps per key (`<name>.<version>`). */
export const HISTORY_REVISIONS = 10;
const MIB = 1024 * 1024;
/**
 * Limits of the log and dead-letter streams: by count and by bytes, so a flood
 * of large messages (dead letters carry the raw bytes of malformed batches)
 * cannot fill the server's disk or memory. The oldest messages go first.
 */
export const STREAM_LIMITS = {
  logs: { maxMsgsPerSubject: 2_000, maxMsgs: 200_000, maxBytes: 64 * MIB, maxMsgSize: 1 * MIB },
  deadLetters: { maxMsgs: 100_000, maxBytes: 64 * MIB, maxMsgSize: 2 * MIB },
} as const;
const msToNanos = (ms: number): number => ms * 1_000_000;

export async function openControlPlane(nc: NatsConnection): Promise<ControlPlaneStores> {
  const kvm = new Kvm(nc);
  const state = await kvm.create(buckets.state, { history: 1, description: 'topo desired state: comp.<name> -> ComputationRecord' });
  const workers = await kvm.create(buckets.workers, { history: 1, description: 'topo worker leases as seen by the controller' });
  const history = await kvm.create(buckets.history, { history: HISTORY_REVISIONS, description: 'topo deploy/kill history: <name>.<version>' });
  const artifacts = await new Objm(nc).create(buckets.artifacts, { description: 'topo computation bundles by sha256' });
  const checkpoints = await kvm.create(buckets.checkpoints, { history: CHECKPOINT_REVISIONS, description: 'topo state checkpoints: <computation>.p<partition>, <computation>.m<index>' });
  const jsm = await jetstreamManager(nc);
  // A bucket made by an older controller kept one revision per key: a chunk's committed revision would not outlive a newer one.
  const checkpointStream = `KV_${buckets.checkpoints}`;
  const checkpointConfig = (await jsm.streams.info(checkpointStream)).config;
  if (checkpointConfig.max_msgs_per_subject < CHECKPOINT_REVISIONS) {
    await jsm.streams.update(checkpointStream, { max_msgs_per_subject: CHECKPOINT_REVISIONS });
  }
  await ensureStream(jsm, {
    name: jsStreams.logs,
    subjects: [subjects.logEverything],
    max_msgs_per_subject: STREAM_LIMITS.logs.maxMsgsPerSubject,
    max_msgs: STREAM_LIMITS.logs.maxMsgs,
    max_bytes: STREAM_LIMITS.logs.maxBytes,
    max_msg_size: STREAM_LIMITS.logs.maxMsgSize,
    max_age: msToNanos(HOUR_MS),
    storage: 'file',
    discard: 'old',
  });
  await ensureStream(jsm, {
    name: jsStreams.deadLetters,
    subjects: [subjects.deadLetterAll],
    max_msgs: STREAM_LIMITS.deadLetters.maxMsgs,
    max_bytes: STREAM_LIMITS.deadLetters.maxBytes,
    max_msg_size: STREAM_LIMITS.deadLetters.maxMsgSize,
    max_age: msToNanos(24 * HOUR_MS),
    storage: 'file',
    discard: 'old',
  });
  return { state, workers, history, artifacts, checkpoints };
}

/**
 * An at-least-once stream's JetStream stream. Limits retention, trimmed by the controller (DataStreamTrimmer):
 * a message stays until every consumer group reading its partition has acked it (after a checkpoint), so
 * storage follows the slowest reader, not a clock. Not interest retention: nats-server 2.9 acks publishes
 * that reach an interest stream while its consumers are being stopped (a SIGTERM of the server) and drops
 * them, unseen by anyone. Duplicate window of 2 min for retried publishes. Bounded by bytes, refusing new
 * messages when full (producers then wait and retry, and backpressure reaches the sources) rather than
 * dropping old ones nobody has read.
 */
export const DATA_STREAM_LIMITS = { maxBytes: 1024 * MIB, duplicateWindowMs: 120_000, maxMsgSize: 1 * MIB } as const;

export async function ensureDataStreams(nc: NatsConnection, streams: readonly string[]): Promise<void> {
  if (!streams.length) return;
  const jsm = await jetstreamManager(nc);
  for (const stream of streams) {
    await ensureStream(jsm, {
      name: atLeastOnceNames.stream(stream),
      subjects: [subjects.dataAll(stream)],
      retention: 'limits' as StreamConfig['retention'],
      max_bytes: DATA_STREAM_LIMITS.maxBytes,
      max_msg_size: DATA_STREAM_LIMITS.maxMsgSize,
      duplicate_window: msToNanos(DATA_STREAM_LIMITS.duplicateWindowMs),
      storage: 'file',
      discard: 'new',
    });
  }
}

/** The consumers of a computation's at-least-once partitions (a kill): their interest ends, so the stream can let go of what they had not acked. */
export async function removeDataConsumers(nc: NatsConnection, computation: string, streams: readonly string[]): Promise<number> {
  if (!streams.length) return 0;
  const jsm = await jetstreamManager(nc);
  // `<computation>_p<partition>_<incarnation>`, or `<computation>_i<index>_p...` for a broadcast member (jsStreams.consumerPrefix).
  const mine = new RegExp(`^${computation.replace(/[-]/g, '\\-')}(_i\\d+)?_p\\d+_[a-z0-9]+$`);
  let n = 0;
  for (const stream of streams) {
    const name = atLeastOnceNames.stream(stream);
    try {
      for await (const ci of jsm.consumers.list(name)) {
        if (!mine.test(ci.name)) continue;
        await jsm.consumers.delete(name, ci.name).catch(() => undefined);
        n++;
      }
    } catch (err) {
      if (!/stream not found/i.test((err as Error).message)) throw err;
    }
  }
  return n;
}
/** Adds the stream, or brings an existing one's limits to this config (e.g. a stream from an older controller capped by count only). */
async function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  let exists = true;
  try {
    await jsm.streams.info(config.name);
  } catch (err) {
    if (!/stream not found/i.test((err as Error).message)) throw err;
    exists = false;
  }
  if (exists) {
    // Storage and retention are fixed once a stream exists (one made by an older controller keeps its retention).
    const { name, storage: _storage, retention: _retention, ...limits } = config;
    await jsm.streams.update(name, limits);
  } else {
    await jsm.streams.add(config);
  }
}
