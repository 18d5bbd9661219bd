/**
 * Fusion: which computations run as one chain in one instance (records passed
 * by function call, no NATS hop). Modelled on Flink's
 * StreamingJobGraphGenerator.isChainable.
 *
 * An edge A -(stream s)-> B is chainable iff all of:
 *
 * Hard rules (nothing overrides them):
 *  1. both are TS operators (a python operator is never fused);
 *  2. A !== B (no self-loop), A produces s and B reads s;
 *  3. s has exactly one producer (A) in the topology;
 *  4. B has exactly one istream (s): fan-in is never fused;
 *  5. A and B have the same instance count (after scaling);
 *  6. the grouping of s is forward-compatible: shuffle always; key or
 *     broadcast only when both have exactly 1 instance (otherwise instance i
 *     of A does not produce only the keys, or all the records, that instance
 *     i of B must see);
 *  7. fusing does not close a cycle inside the group (checked while groups
 *     are built);
 * 12. s is at-most-once: an at-least-once stream goes through JetStream,
 *     where each side's checkpoint and acks meet (an in-process hand-over
 *     would be in no store when a worker dies).
 *
 * Soft rules (a user `topo fuse a b`, overrides.fuse, lifts them):
 *  8. neither has hints.fuse === false;
 *  9. neither is CPU-heavy (hints.cpu 'heavy', or measured
 *     cpuMicrosPerRecord >= HEAVY_CPU_MICROS): heavy ones run in threads;
 * 10. neither has autoscale hints: their parallelism changes;
 * 11. neither is saturated (busyRatio > SATURATED_BUSY): a hot spot is split
 *     out of its group.
 *
 * A user `topo split a` (overrides.split) is never fused, even with a fuse
 * override naming it.
 *
 * Groups are linear chains. On fan-out (A feeds B and C, both chainable) only
 * one joins A's chain: a user-forced edge first, then an edge fused in the
 * current plan (stability), then the first downstream by name.
 */
import { buildGraph, sortBy, streamBetween, type Graph } from './graph.js';
import { heavyReason, isSaturated, SATURATED_BUSY } from './limits.js';
import { scaleAll } from './scaling.js';
import type { FusionGroup, OracleInput } from './types.js';

export type Verdict = { ok: true } | { ok: false; reason: string; /** a fuse override would lift it */ overridable: boolean };

/**
 * Whether the edge a -(stream)-> b may be fused (rules 1-6 and 8-11; rule 7
 * needs the groups). `instances` defaults to the scaled counts of `input`.
 */
export function chainable(a: string, b: string, stream: string, input: OracleInput, instances?: Record<string, number>): Verdict {
  return check(a, b, stream, input, buildGraph(input), instances ?? scaleAll(input).instances);
}

function check(a: string, b: string, stream: string, input: OracleInput, g: Graph, n: Record<string, number>): Verdict {
  const hard = (reason: string): Verdict => ({ ok: false, reason, overridable: false });
  const soft = (reason: string): Verdict => ({ ok: false, reason, overridable: true });
  const A = g.byName.get(a);
  const B = g.byName.get(b);
  if (!A || !B) return hard(`unknown computation "${!A ? a : b}"`);
  if (A.lang !== 'ts' || B.lang !== 'ts') {
    const other = A.lang !== 'ts' ? A : B;
    return hard(`${other.name} is a ${other.lang} operator: only TS operators are fused`);
  }
  if (a === b) return hard(`${a} reads its own output (self-loop on stream ${stream})`);
  if (!A.ostreams.includes(stream)) return hard(`${a} does not produce stream ${stream}`);
  const ist = B.istreams.find((s) => s.stream === stream);
  if (!ist) return hard(`${b} does not read stream ${stream}`);
  const producers = g.producers.get(stream) ?? [];
  if (producers.length !== 1) return hard(`stream ${stream} has ${producers.length} producers (${producers.join(', ')}): ${b} needs the records of all of them`);
  if (A.atLeastOnce?.includes(stream) || B.atLeastOnce?.includes(stream)) {
    return hard(`stream ${stream} is at-least-once: its records go through JetStream, where checkpoints and acks meet`);
  }
  if (B.istreams.length !== 1) return hard(`${b} reads ${B.istreams.length} streams (${B.istreams.map((s) => s.stream).join(', ')}): fan-in is never fused`);
  const na = n[a] ?? A.instances;
  const nb = n[b] ?? B.instances;
  if (na !== nb) return hard(`different parallelism: ${a} has ${na} instances, ${b} has ${nb}`);
  if (ist.grouping === 'key' && na !== 1) {
    return hard(`key grouping on stream ${stream} with ${na} instances: instance i of ${a} does not produce only the keys instance i of ${b} owns`);
  }
  if (ist.grouping === 'broadcast' && na !== 1) {
    return hard(`broadcast on stream ${stream} with ${na} instances: every instance of ${b} must see the records of every instance of ${a}`);
  }
  const split = new Set(input.overrides?.split ?? []);
  for (const c of [A, B]) if (split.has(c.name)) return hard(`${c.name} is split by the user (topo split ${c.name})`);
  for (const c of [A, B]) {
    if (c.hints?.fuse === false) return soft(`${c.name} has hints.fuse = false`);
    const heavy = heavyReason(c, input.stats?.[c.name]);
    if (heavy) return soft(`${heavy}: it runs in a thread`);
    const auto = c.hints?.autoscale;
    if (auto) return soft(`${c.name} autoscales (${auto.min}..${auto.max}): its parallelism changes`);
    const st = input.stats?.[c.name];
    if (isSaturated(st)) return soft(`${c.name} is saturated (busy ${st!.busyRatio} > ${SATURATED_BUSY}): a hot spot is split out`);
  }
  return { ok: true };
}

export interface Fusion {
  groups: FusionGroup[];
  notes: string[];
}

interface Edge {
  a: string;
  b: string;
  stream: string;
  why: 'forced' | 'current' | 'name';
  overriding?: string;
}

/** The fusion groups of the topology: every computation in exactly one, in chain order, sorted by id. */
export function fuse(input: OracleInput, instances: Record<string, number>): Fusion {
  const g = buildGraph(input);
  const notes: string[] = [];
  const forced = new Map<string, Edge>();
  for (const [a, b] of sortBy(input.overrides?.fuse ?? [], ([a, b]) => `${a}\0${b}`)) {
    const A = g.byName.get(a);
    const B = g.byName.get(b);
    const stream = streamBetween(a, b, g);
    const v: Verdict = !A || !B ? { ok: false, reason: `unknown computation "${!A ? a : b}"`, overridable: false }
      : stream === undefined ? { ok: false, reason: `${a} does not feed ${b}`, overridable: false }
      : check(a, b, stream, input, g, instances);
    if (!v.ok && !v.overridable) notes.push(`fuse ${a}+${b} refused: ${v.reason}`);
    else forced.set(`${a}\0${b}`, { a, b, stream: stream!, why: 'forced', ...(v.ok ? {} : { overriding: v.reason }) });
  }

  const inCurrent = new Set<string>();
  for (const grp of input.current?.groups ?? []) {
    for (let i = 1; i < grp.members.length; i++) inCurrent.add(`${grp.members[i - 1]}\0${grp.members[i]}`);
  }
  const candidates: Edge[] = [...forced.values()];
  for (const b of g.names) {
    for (const ist of sortBy(g.byName.get(b)!.istreams, (s) => s.stream)) {
      for (const a of g.producers.get(ist.stream) ?? []) {
        if (forced.has(`${a}\0${b}`)) continue;
        const v = check(a, b, ist.stream, input, g, instances);
        if (v.ok) candidates.push({ a, b, stream: ist.stream, why: inCurrent.has(`${a}\0${b}`) ? 'current' : 'name' });
        else notes.push(`${a}+${b} not fused: ${v.reason}`);
      }
    }
  }

  const rank = { forced: 0, current: 1, name: 2 } as const;
  candidates.sort((x, y) => rank[x.why] - rank[y.why] || (x.a < y.a ? -1 : x.a > y.a ? 1 : x.b < y.b ? -1 : x.b > y.b ? 1 : 0));
  const succ = new Map<string, Edge>();
  const pred = new Map<string, string>();
  for (const e of candidates) {
    const taken = succ.get(e.a);
    if (taken) {
      const because = taken.why === 'forced' ? 'forced by the user' : taken.why === 'current' ? 'fused in the current plan' : 'first by name';
      notes.push(`${e.a}+${e.b} not fused: fan-out, ${e.a} already chains to ${taken.b} (${because}); a group is a linear chain`);
      continue;
    }
    if (pred.has(e.b)) {
      notes.push(`${e.a}+${e.b} not fused: ${e.b} already chains after ${pred.get(e.b)}`);
      continue;
    }
    let x: string | undefined = e.b;
    while (x !== undefined && x !== e.a) x = succ.get(x)?.b;
    if (x === e.a) {
      notes.push(`${e.a}+${e.b} not fused: it would close a cycle inside the group`);
      continue;
    }
    succ.set(e.a, e);
    pred.set(e.b, e.a);
    const grouping = g.byName.get(e.b)!.istreams[0]!.grouping;
    notes.push(
      e.why === 'forced'
        ? `${e.a}+${e.b} fused by user override on stream ${e.stream}${e.overriding ? ` (overriding: ${e.overriding})` : ''}`
        : `${e.a}+${e.b} fused: forward ${grouping} edge on stream ${e.stream}, same parallelism ${instances[e.a]}`,
    );
  }

  const groups: FusionGroup[] = [];
  for (const head of g.names) {
    if (pred.has(head)) continue;
    const members = [head];
    for (let e = succ.get(head); e; e = succ.get(e.b)) members.push(e.b);
    groups.push({ id: members.join('+'), members });
  }
  return { groups: sortBy(groups, (x) => x.id), notes };
}
