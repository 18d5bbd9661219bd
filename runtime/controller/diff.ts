/** What a swap changes in the wiring: `topo swap --dry-run` shows it, every swap reports it. */
import { BadRequestError, type ComputationRecord, type MetadataDiff, type NormalizedMetadata, type TypeRef, type TypesDiff } from '../../protocol/index.js';
import { sameType, typeLabel } from '../../protocol/types.js';

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
  const types = typesDiff(from, to);
  return { istreams, ostreams, producersAffected: [...producers].sort(), consumersAffected: [...consumers].sort(), ...(types ? { types } : {}) };
}

const ref = (d: { message: string; fingerprint: string }): TypeRef => ({ message: d.message, fingerprint: d.fingerprint });

/** Types added, removed or changed per stream between two versions; undefined when none changed. */
export function typesDiff(from: NormalizedMetadata, to: NormalizedMetadata): TypesDiff | undefined {
  const a = from.types ?? {};
  const b = to.types ?? {};
  const out: TypesDiff = { added: [], removed: [], changed: [] };
  for (const stream of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    const x = a[stream];
    const y = b[stream];
    if (x && y) {
      if (!sameType(x, y)) out.changed.push({ stream, from: ref(x), to: ref(y) });
    } else if (y) out.added.push({ stream, to: ref(y) });
    else if (x) out.removed.push({ stream, from: ref(x) });
  }
  return out.added.length || out.removed.length || out.changed.length ? out : undefined;
}

/**
 * Refuses metadata whose type for a stream differs from what the running
 * topology has on it: another computation (or its canary) that produces or
 * reads the stream with another message type or fingerprint, or untyped
 * while this one types it (or the reverse). `self` also checks against the
 * computation's own running version (a canary runs beside it). Throws
 * BadRequestError naming both computations, the stream and both types.
 */
export function checkTypeConflicts(m: NormalizedMetadata, all: readonly ComputationRecord[], opts: { self?: boolean } = {}): void {
  const mine = new Map<string, 'reads' | 'produces' | 'reads and produces'>();
  for (const s of m.istreams) mine.set(s.stream, 'reads');
  for (const s of m.ostreams) mine.set(s, mine.has(s) ? 'reads and produces' : 'produces');
  const problems: string[] = [];
  for (const rec of all) {
    if (rec.name === m.name && !opts.self) continue;
    const versions = rec.canary ? [{ v: rec.version, md: rec.metadata }, { v: rec.canary.version, md: rec.canary.metadata }] : [{ v: rec.version, md: rec.metadata }];
    for (const { v, md } of versions) {
      if (md === m) continue;
      const theirs = new Map<string, string>();
      for (const s of md.istreams) theirs.set(s.stream, 'reads');
      for (const s of md.ostreams) theirs.set(s, theirs.has(s) ? 'reads and produces' : 'produces');
      for (const [stream, how] of mine) {
        const other = theirs.get(stream);
        if (!other) continue;
        const a = m.types?.[stream];
        const b = md.types?.[stream];
        if (sameType(a, b)) continue;
        problems.push(
          `stream "${stream}": "${m.name}" ${how} it as ${typeLabel(a)}, but "${rec.name}" v${v} ${other} it as ${typeLabel(b)}`,
        );
      }
    }
  }
  if (problems.length) {
    throw new BadRequestError(
      `type conflict: ${problems.join('; ')}. Every computation on a stream must declare the same type (or none); ` +
        'change the other side first, or kill it',
    );
  }
}
