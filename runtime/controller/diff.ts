/** What a swap changes in the wiring: `topo swap --dry-run` shows it, every swap reports it. */
import type { ComputationRecord, MetadataDiff, NormalizedMetadata } from '../../protocol/index.js';

function minus(a: readonly string[], b: readonly string[]): string[] {
  const drop = new Set(b);
  return a.filter((x) => !drop.has(x)).sort();
}

/** Metadata each computation runs (the canary's too, while one runs). */
function metadataOf(rec: ComputationRecord): NormalizedMetadata[] {
  return rec.canary ? [rec.metadata, rec.canary.metadata] : [rec.metadata];
}

/**
 * Streams gained and lost between two versions of one computation, and the
 * other computations on the far side of those streams: producers of an
 * istream gained or lost start or stop feeding this computation; consumers
 * of an ostream gained or lost start or stop receiving from it.
 */
export function metadataDiff(from: NormalizedMetadata, to: NormalizedMetadata, all: readonly ComputationRecord[]): MetadataDiff {
  const inFrom = from.istreams.map((s) => s.stream);
  const inTo = to.istreams.map((s) => s.stream);
  const regrouped: MetadataDiff['istreams']['regrouped'] = [];
  for (const s of to.istreams) {
    const before = from.istreams.find((o) => o.stream === s.stream);
    if (before && before.grouping !== s.grouping) regrouped.push({ stream: s.stream, from: before.grouping, to: s.grouping });
  }
  const istreams = { gained: minus(inTo, inFrom), lost: minus(inFrom, inTo), regrouped };
  const ostreams = { gained: minus(to.ostreams, from.ostreams), lost: minus(from.ostreams, to.ostreams) };

  const changedIn = new Set([...istreams.gained, ...istreams.lost]);
  const changedOut = new Set([...ostreams.gained, ...ostreams.lost]);
  const producers = new Set<string>();
  const consumers = new Set<string>();
  for (const rec of all) {
    if (rec.name === to.name) continue;
    for (const m of metadataOf(rec)) {
      if (m.ostreams.some((s) => changedIn.has(s))) producers.add(rec.name);
      if (m.istreams.some((s) => changedOut.has(s.stream))) consumers.add(rec.name);
    }
  }
  return { istreams, ostreams, producersAffected: [...producers].sort(), consumersAffected: [...consumers].sort() };
}
