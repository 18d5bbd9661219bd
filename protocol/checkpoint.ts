/**
 * State checkpoints, protocol v1 (PROTOCOL.md, "Checkpoints"): what an
 * instance writes to the `topo_checkpoints` KV bucket every second, and reads
 * back when it restarts after its worker died.
 *
 * A checkpoint is cut by key partition, one KV entry per partition of a
 * computation (`<computation>.p<partition>`), so a scale reads only the
 * chunks of the partitions an instance now owns and nothing moves in KV.
 * Each chunk holds, for its partition: the keyed state and timers whose key
 * falls in it, how far each input of the partition was consumed (the
 * JetStream stream sequence of at-least-once inputs) and the last producer
 * sequence processed per upstream producer there (what replayed duplicates
 * are recognized by). One entry per instance (`<computation>.m<index>`)
 * holds its output position: the producer id and sequence per ostream, so
 * an instance that restarts in its place continues them, and records it
 * produces again while replaying carry the ids they had the first time.
 * It is written after the chunks and names their revisions, so state,
 * positions and output sequences are read back from one and the same cut.
 *
 * Values are msgpack. They cross processes (and a restart), so they are
 * validated on the way in like every message.
 */
import { z } from 'zod';
import { NAME_PATTERN, PARTITIONS } from './subjects.js';

export const CHECKPOINT_VERSION = 1;

/**
 * KV revisions the bucket keeps per key: a chunk's revision committed by the last output position
 * must outlive the one a writer that died midway wrote after it (and one whose position failed to store).
 */
export const CHECKPOINT_REVISIONS = 3;

const name = z.string().regex(NAME_PATTERN);
const partition = z.int().min(0).max(PARTITIONS - 1);
const seq = z.number().int().nonnegative();

export const checkpointChunkSchema = z.object({
  v: z.literal(CHECKPOINT_VERSION),
  computation: name,
  partition,
  version: z.int().min(1),
  /** ms since the epoch when the checkpoint was cut. */
  at: z.number().nonnegative(),
  state: z.array(z.tuple([z.string(), z.unknown()])),
  timers: z.array(z.tuple([z.string(), z.number()])),
  /** `${producer} ${stream} ${partition}` -> last producer sequence processed. */
  seen: z.array(z.tuple([z.string(), seq])),
  /** `${istream} ${partition}` -> JetStream stream sequence of the last message processed there (at-least-once inputs only). */
  pos: z.array(z.tuple([z.string().max(200), seq])),
});
export type CheckpointChunk = z.output<typeof checkpointChunkSchema>;

export const checkpointMetaSchema = z.object({
  v: z.literal(CHECKPOINT_VERSION),
  computation: name,
  index: z.int().min(0),
  count: z.int().min(1),
  version: z.int().min(1),
  at: z.number().nonnegative(),
  /** The producer id the instance published under (batch `src`, credit subject). */
  producer: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/),
  /** ostream -> producer sequence of the last record produced before the cut. */
  seqs: z.array(z.tuple([name, seq])),
  /**
   * partition -> KV revision of its chunk as of this cut: the chunks are written first and this entry
   * last, so it commits them. A reader takes those revisions, not newer ones a writer that died
   * midway left behind. Absent (an output position stored alone, before any checkpoint): the latest chunks.
   */
  chunks: z.array(z.tuple([partition, z.number().int().positive()])).max(PARTITIONS).optional(),
});
export type CheckpointMeta = z.output<typeof checkpointMetaSchema>;

/** Keys in the `topo_checkpoints` bucket. */
export const checkpointKeys = {
  chunk: (computation: string, partition: number) => `${computation}.p${partition}`,
  meta: (computation: string, index: number) => `${computation}.m${index}`,
  /** Every entry of one computation (a kill removes them). */
  of: (computation: string) => `${computation}.>`,
} as const;
