/**
 * Reads and writes state checkpoints in the `topo_checkpoints` KV bucket
 * (protocol/checkpoint.ts has the format). The worker's instances write them
 * every second and read them when they start in place of an instance that
 * died; the controller removes a computation's checkpoints when it is killed.
 */
import type { KV } from '@nats-io/kv';
import {
  checkpointChunkSchema, checkpointKeys, checkpointMetaSchema, CHECKPOINT_VERSION, packr, partitionOf,
  type CheckpointChunk, type CheckpointMeta,
} from '../../protocol/index.js';
import type { ExecutorSnapshot } from '../executor/executor.js';

/** What a checkpoint holds of an instance, before it is cut into chunks. */
export interface CheckpointCut extends ExecutorSnapshot {
  computation: string;
  version: number;
  index: number;
  count: number;
  at: number;
  /** Partitions the instance owns: it writes their chunks (and only theirs). */
  partitions: readonly number[];
  seen: [string, number][];
  pos: [string, number][];
  producer: string;
  seqs: [string, number][];
}

/** A checkpoint as read back: the union of the chunks of some partitions, and the instance's output position. */
export interface LoadedCheckpoint extends ExecutorSnapshot {
  seen: [string, number][];
  pos: [string, number][];
  meta?: CheckpointMeta;
  /** When the newest of its chunks (or its output position) was cut, ms since the epoch (unchanged chunks are not written again). */
  at: number;
  chunks: number;
  /** Chunks that were there but not valid (counted and skipped). */
  invalid: number;
  /** Chunks whose committed revision was gone, read at their latest (newer than the output position), or newer ones the position does not name. */
  unpinned: number;
}

/** The last token of a `... <partition>` key (seen and pos keys). */
function partitionOfMark(key: string): number {
  return Number(key.slice(key.lastIndexOf(' ') + 1));
}

/** Cuts a checkpoint into one chunk per owned partition: what does not belong to an owned partition goes with the first. */
export function cutChunks(c: CheckpointCut): CheckpointChunk[] {
  const owned = new Set(c.partitions);
  const first = c.partitions[0] ?? 0;
  const home = (p: number): number => (owned.has(p) ? p : first);
  const chunks = new Map<number, CheckpointChunk>();
  for (const p of c.partitions) {
    chunks.set(p, { v: CHECKPOINT_VERSION, computation: c.computation, partition: p, version: c.version, at: c.at, state: [], timers: [], seen: [], pos: [] });
  }
  for (const e of c.state.entries) chunks.get(home(partitionOf(e[0])))!.state.push(e);
  for (const t of c.timers) chunks.get(home(partitionOf(t[0])))!.timers.push(t);
  for (const s of c.seen) chunks.get(home(partitionOfMark(s[0])))!.seen.push(s);
  for (const p of c.pos) chunks.get(home(partitionOfMark(p[0])))!.pos.push(p);
  return [...chunks.values()];
}

/** Per writer (one instance): what it last wrote per key and that entry's KV revision, so that an unchanged entry is not written again. */
export type WrittenCache = Map<string, { body: Uint8Array; revision: number }>;

export class CheckpointStore {
  constructor(private readonly kv: KV) {}

  /**
   * Stores a checkpoint: the chunks that changed, then the instance's output position naming the
   * revision of every chunk of the cut. The position commits the cut: a writer that dies before it
   * leaves newer chunks that a reader passes over for the revisions the last position names
   * (state, positions and output sequences come back from one cut, whichever step the writer died in).
   */
  async write(c: CheckpointCut, written: WrittenCache): Promise<{ bytes: number; chunks: number }> {
    let bytes = 0;
    let chunks = 0;
    const revisions: [number, number][] = [];
    await Promise.all(cutChunks(c).map(async (chunk) => {
      const key = checkpointKeys.chunk(c.computation, chunk.partition);
      // `at` changes every time: compared without it.
      const body = packr.pack({ ...chunk, at: 0 });
      const last = written.get(key);
      if (last && Buffer.compare(last.body, body) === 0) {
        revisions.push([chunk.partition, last.revision]);
        return;
      }
      const value = packr.pack(chunk);
      const revision = await this.kv.put(key, value);
      written.set(key, { body, revision });
      revisions.push([chunk.partition, revision]);
      bytes += value.length;
      chunks++;
    }));
    revisions.sort((a, b) => a[0] - b[0]);
    bytes += await this.writeOutputPosition({ ...c, chunks: revisions }, written);
    return { bytes, chunks };
  }

  /**
   * Stores an instance's output position (unless it is what this writer last stored): a checkpoint's last
   * step, naming its chunks' revisions, and what a fresh at-least-once producer writes alone (no `chunks`)
   * before it publishes anything. Returns the bytes written.
   */
  async writeOutputPosition(c: Omit<CheckpointMeta, 'v'>, written: WrittenCache): Promise<number> {
    const meta: CheckpointMeta = {
      v: CHECKPOINT_VERSION, computation: c.computation, index: c.index, count: c.count, version: c.version, at: c.at, producer: c.producer, seqs: c.seqs,
      ...(c.chunks ? { chunks: c.chunks } : {}),
    };
    const metaKey = checkpointKeys.meta(c.computation, c.index);
    const metaBody = packr.pack({ ...meta, at: 0 });
    const lastMeta = written.get(metaKey);
    if (lastMeta && Buffer.compare(lastMeta.body, metaBody) === 0) return 0;
    const value = packr.pack(meta);
    const revision = await this.kv.put(metaKey, value);
    written.set(metaKey, { body: metaBody, revision });
    return value.length;
  }

  /**
   * The chunks of `partitions` and the output position of instance `index` of `count` (when it was cut
   * with the same count): the chunk revisions that position names, else (no position, another count,
   * a position stored alone) the latest.
   */
  async load(computation: string, partitions: readonly number[], index: number, count: number): Promise<LoadedCheckpoint | undefined> {
    const out: LoadedCheckpoint = { state: { entries: [] }, timers: [], seen: [], pos: [], at: 0, chunks: 0, invalid: 0, unpinned: 0 };
    const m = await this.kv.get(checkpointKeys.meta(computation, index));
    if (m && m.operation === 'PUT' && m.value.length) {
      const r = checkpointMetaSchema.safeParse(unpack(m.value));
      if (r.success && r.data.computation === computation && r.data.count === count) {
        out.meta = r.data;
        out.at = Math.max(out.at, r.data.at);
      }
      else if (!r.success) out.invalid++;
    }
    const pinned = out.meta?.chunks ? new Map(out.meta.chunks) : undefined;
    await Promise.all(partitions.map(async (p) => {
      const key = checkpointKeys.chunk(computation, p);
      let e = await this.kv.get(key);
      const revision = pinned?.get(p);
      // Not named (the partition was not the instance's when it was cut): the latest, counted.
      if (pinned && revision === undefined && e && e.operation === 'PUT' && e.value.length) out.unpinned++;
      if (revision !== undefined && e?.revision !== revision) {
        const committed = await this.kv.get(key, { revision });
        // Gone (more uncommitted revisions than the bucket keeps): the latest, counted.
        if (committed) e = committed;
        else out.unpinned++;
      }
      if (!e || e.operation !== 'PUT' || e.value.length === 0) return;
      const r = checkpointChunkSchema.safeParse(unpack(e.value));
      if (!r.success || r.data.computation !== computation || r.data.partition !== p) {
        out.invalid++;
        return;
      }
      out.state.entries.push(...r.data.state);
      out.timers.push(...r.data.timers);
      out.seen.push(...r.data.seen);
      out.pos.push(...r.data.pos);
      out.at = Math.max(out.at, r.data.at);
      out.chunks++;
    }));
    return out.chunks || out.meta ? out : undefined;
  }
}

function unpack(bytes: Uint8Array): unknown {
  try {
    return packr.unpack(bytes);
  } catch {
    return undefined;
  }
}

/** Removes every checkpoint of a computation (a kill: a later deploy of the name starts empty). */
export async function removeCheckpoints(kv: KV, computation: string): Promise<number> {
  let n = 0;
  const keys = await kv.keys(checkpointKeys.of(computation));
  for await (const k of keys) {
    await kv.purge(k);
    n++;
  }
  return n;
}
