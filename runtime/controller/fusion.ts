/**
 * Fusion groups, changed live (`topo fuse`, `topo split`): a regroup is one
 * swap plan over every computation it touches (swapRunner.ts) that keeps
 * their code and version. The producers feeding the group from outside are
 * paused; the old instances are released in stream order, front to back, so
 * each one's output reaches the next one's old instance before that drains;
 * the new instances adopt their predecessors' state with their new Fusion
 * (instance i of every member on the worker of the head's instance i), then
 * upstreams resume. A failure rolls every member back, as a swap does.
 *
 * Which edges may be fused is the oracle's rule (runtime/oracle/fusion.ts,
 * `chainable`); a user's `topo fuse` lifts its soft rules, never the hard ones.
 */
import {
  BadRequestError, ConflictError, NotFoundError, parseRequest, schemas,
  type ComputationRecord, type FuseRequest, type Fusion, type FusionReply, type Placement, type SplitRequest, type SwapReply,
} from '../../protocol/index.js';
import { chainable, type OracleComputation, type OracleInput } from '../oracle/index.js';
import { bridgesOf } from './bridges.js';
import { istreamsOf } from './canary.js';
import type { ControllerContext } from './context.js';
import { metadataDiff } from './diff.js';
import { newInstanceId } from './placement.js';
import { execute, noCanaryRunning } from './swap.js';
import { PLACEMENT_PROBATION } from './scale.js';
import type { AdoptPlan, SwapPlan } from './swapRunner.js';

/** The oracle's view of desired state (what `chainable` needs). */
export function oracleInputOf(ctx: ControllerContext, fuse: [string, string][] = []): OracleInput {
  const computations: OracleComputation[] = ctx.store.all().map((r) => ({
    name: r.name, lang: r.lang, istreams: r.metadata.istreams.map((s) => ({ stream: s.stream, grouping: s.grouping })),
    ostreams: [...r.metadata.ostreams], instances: r.instances,
    ...(r.metadata.hints ? { hints: r.metadata.hints as OracleComputation['hints'] } : {}),
    ...(r.metadata.delivery ? { atLeastOnce: Object.keys(r.metadata.delivery) } : {}),
  }));
  // A registered bridge producer is one more producer of its streams: a stream it feeds has more than one
  // producer, so its reader is never fused to the other one (it would stop reading that stream on NATS).
  for (const b of bridgesOf(ctx).liveProducers()) {
    computations.push({ name: `bridge:${b.id}`, lang: 'ts', istreams: [], ostreams: [...b.streams], instances: 1, hints: { fuse: false } });
  }
  const split = ctx.store.all().filter((r) => r.noFuse && !fuse.some((p) => p.includes(r.name))).map((r) => r.name);
  // The groups running now, so the oracle keeps them where it has a choice (fan-out).
  const groups = fusionGroups(ctx).map((g) => ({ id: g.members.join('+'), members: g.members }));
  return { computations, workers: [], overrides: { fuse, split }, current: { groups, instances: {}, placements: [], unplaced: [], notes: [] } };
}

/** The chain of a fused computation, head first (just itself when not fused). */
export function chainOf(ctx: ControllerContext, name: string): string[] {
  const rec = ctx.store.get(name);
  if (!rec?.fusion) return [name];
  const group = rec.fusion.group;
  const members = ctx.store.all().filter((r) => r.fusion?.group === group);
  // The head is the member no other member feeds.
  const fed = new Set(members.flatMap((m) => m.fusion!.outputs.map((o) => o.consumer)));
  let at = members.find((m) => !fed.has(m.name));
  const chain: string[] = [];
  while (at && !chain.includes(at.name)) {
    chain.push(at.name);
    const next = at.fusion!.outputs[0]?.consumer;
    at = next ? members.find((m) => m.name === next) : undefined;
  }
  return chain;
}

/** Every fusion group of desired state, head first. */
export function fusionGroups(ctx: ControllerContext): { group: string; members: string[] }[] {
  const seen = new Set<string>();
  const out: { group: string; members: string[] }[] = [];
  for (const r of ctx.store.all()) {
    if (!r.fusion || seen.has(r.fusion.group)) continue;
    seen.add(r.fusion.group);
    out.push({ group: r.fusion.group, members: chainOf(ctx, r.name) });
  }
  return out.sort((a, b) => a.group.localeCompare(b.group));
}

/** Moves instance `index` of every member of a fused chain to worker `to`, together (they call each other in-process). */
export function groupMovePlan(ctx: ControllerContext, chain: string[], index: number, to: string): SwapPlan {
  const noFuse = new Set(chain.filter((n) => ctx.store.get(n)?.noFuse));
  const plan = regroupPlan(ctx, 'move', [chain], noFuse, new Map([[index, to]]));
  // Only instance `index` moves: the other instances of the members stay as they are.
  const moving = (p: { index: number }) => p.index === index;
  const kept = plan.adopts.filter((a) => a.assignment.index === index);
  const stages = (plan.releaseStages ?? []).map((s) => s.filter(moving));
  const placementsAfter = (rec: ComputationRecord, next: () => ComputationRecord) => (): ComputationRecord => {
    const moved = next().placements.filter(moving);
    return { ...next(), placements: rec.placements.map((p) => (moving(p) ? moved[0]! : p)) };
  };
  return {
    ...plan,
    what: `move of instance ${index} of ${chain.join('+')} to ${to}`,
    releases: plan.releases.filter(moving),
    releaseStages: stages,
    adopts: kept,
    committed: placementsAfter(plan.rec, plan.committed),
    alsoChanged: (plan.alsoChanged ?? []).map((c) => ({ rec: c.rec, committed: placementsAfter(c.rec, c.committed) })),
  };
}

/** The stream from a to b (a produces it, b reads it). */
function streamFrom(a: ComputationRecord, b: ComputationRecord): string | undefined {
  return a.metadata.ostreams.find((s) => b.metadata.istreams.some((i) => i.stream === s));
}

/** The Fusion of each member of `chain` (none for a chain of one). */
function fusionsOf(recs: Map<string, ComputationRecord>, chain: string[]): Map<string, Fusion | undefined> {
  const out = new Map<string, Fusion | undefined>();
  if (chain.length < 2) {
    out.set(chain[0]!, undefined);
    return out;
  }
  const group = `fg-${chain[0]}`;
  chain.forEach((name, k) => {
    const prev = k > 0 ? recs.get(chain[k - 1]!)! : undefined;
    const next = k < chain.length - 1 ? recs.get(chain[k + 1]!)! : undefined;
    const me = recs.get(name)!;
    out.set(name, {
      group,
      inputs: prev ? [streamFrom(prev, me)!] : [],
      outputs: next ? [{ stream: streamFrom(me, next)!, consumer: next.name }] : [],
    });
  });
  return out;
}

/** Members in stream order (a producer before its consumers), for the release stages. */
function streamOrder(recs: ComputationRecord[]): ComputationRecord[] {
  const names = new Set(recs.map((r) => r.name));
  const producers = new Map<string, string[]>();
  for (const r of recs) for (const s of r.metadata.ostreams) producers.set(s, [...(producers.get(s) ?? []), r.name]);
  const depth = new Map<string, number>();
  const depthOf = (r: ComputationRecord, seen: Set<string>): number => {
    const known = depth.get(r.name);
    if (known !== undefined) return known;
    let d = 0;
    for (const i of r.metadata.istreams) {
      for (const p of producers.get(i.stream) ?? []) {
        if (!names.has(p) || seen.has(p) || p === r.name) continue;
        d = Math.max(d, 1 + depthOf(recs.find((x) => x.name === p)!, new Set([...seen, r.name])));
      }
    }
    depth.set(r.name, d);
    return d;
  };
  return [...recs].sort((a, b) => depthOf(a, new Set()) - depthOf(b, new Set()) || a.name.localeCompare(b.name));
}

/**
 * The plan that runs `chains` (every computation touched, each in exactly one
 * chain; a chain of one is not fused) from now on.
 */
export function regroupPlan(
  ctx: ControllerContext, action: 'fuse' | 'split' | 'move', chains: string[][], noFuse: ReadonlySet<string>,
  /** Where instance i of a fused chain goes (default: where its head's instance i runs). */
  moveTo?: ReadonlyMap<number, string>,
): SwapPlan {
  const recs = new Map<string, ComputationRecord>();
  for (const name of chains.flat()) recs.set(name, ctx.store.get(name)!);
  const fusions = new Map<string, Fusion | undefined>();
  for (const chain of chains) for (const [n, f] of fusionsOf(recs, chain)) fusions.set(n, f);
  const ordered = streamOrder([...recs.values()]);
  const adopts: AdoptPlan[] = [];
  const placementsOf = new Map<string, Placement[]>();
  for (const chain of chains) {
    const head = recs.get(chain[0]!)!;
    for (const name of chain) {
      const rec = recs.get(name)!;
      const fusion = fusions.get(name);
      const next: Placement[] = [];
      for (const p of [...rec.placements].sort((a, b) => a.index - b.index)) {
        // Instance i of every member runs where the head's instance i runs.
        const workerId = chain.length > 1 ? (moveTo?.get(p.index) ?? head.placements.find((h) => h.index === p.index)!.workerId) : p.workerId;
        const instanceId = newInstanceId(name, p.index);
        adopts.push({
          workerId,
          assignment: {
            instanceId, computation: name, version: rec.version, sha: rec.sha, lang: rec.lang, index: p.index, count: rec.instances,
            metadata: rec.metadata, ...(fusion ? { fusion } : {}),
          },
          from: [{ workerId: p.workerId, instanceId: p.instanceId }],
          filterByPartition: false,
        });
        next.push({ index: p.index, instanceId, workerId });
      }
      placementsOf.set(name, next);
    }
  }
  const committedOf = (rec: ComputationRecord) => (): ComputationRecord => {
    const { fusion: _old, noFuse: _flag, ...rest } = rec;
    const fusion = fusions.get(rec.name);
    return { ...rest, placements: placementsOf.get(rec.name)!, ...(fusion ? { fusion } : {}), ...(noFuse.has(rec.name) ? { noFuse: true } : {}) };
  };
  // What feeds the group from outside is paused; the members themselves are released in stream order.
  const produced = new Set(ordered.flatMap((r) => r.metadata.ostreams));
  const istreams = new Set<string>();
  for (const r of ordered) for (const s of istreamsOf(r.metadata)) if (!produced.has(s)) istreams.add(s);
  const [first, ...rest] = ordered;
  const describe = chains.map((c) => c.join('+')).join(', ');
  return {
    action, rec: first!, version: first!.version, fromVersion: first!.version,
    target: { sha: first!.sha, lang: first!.lang, metadata: first!.metadata, ...(first!.source !== undefined ? { source: first!.source } : {}) },
    diff: metadataDiff(first!.metadata, first!.metadata, []),
    releases: ordered.flatMap((r) => r.placements),
    releaseStages: ordered.map((r) => r.placements),
    // The code is the one already running: a short probation, so the group's output is not held for long (scale.ts).
    adopts, istreams, probation: PLACEMENT_PROBATION,
    notUpstreams: new Set(recs.keys()),
    alsoChanged: rest.map((r) => ({ rec: r, committed: committedOf(r) })),
    what: `${action} of ${describe}`,
    steps: [{ step: 'target', at: Date.now(), ms: 0, ok: true, detail: describe }],
    committed: committedOf(first!),
  };
}

function deployedOrThrow(ctx: ControllerContext, name: string): ComputationRecord {
  const rec = ctx.store.get(name);
  if (!rec) throw new NotFoundError(`computation "${name}" is not deployed`);
  noCanaryRunning(rec);
  if (ctx.swapping.has(name)) throw new ConflictError(`a live change of "${name}" is under way; try again once it is done`);
  return rec;
}

function replyOf(ctx: ControllerContext, r: SwapReply | undefined): FusionReply {
  return {
    result: r ? 'ok' : 'unchanged', groups: fusionGroups(ctx),
    ...(r?.pauseMs !== undefined ? { pauseMs: r.pauseMs } : {}), steps: r?.steps ?? [],
  };
}

/** `topo.api.fuse`: the named computations (and the groups they are in) become one chain. Runs in the serial queue. */
export async function fuse(ctx: ControllerContext, input: FuseRequest): Promise<FusionReply> {
  const req = parseRequest(schemas.api.fuse, input, 'fuse request');
  const named = [...new Set(req.names)];
  for (const n of named) deployedOrThrow(ctx, n);
  // The chain: every named computation and the members of their groups, in stream order.
  const members = [...new Set(named.flatMap((n) => chainOf(ctx, n)))];
  const ordered = streamOrder(members.map((n) => ctx.store.get(n)!)).map((r) => r.name);
  const pairs: [string, string][] = [];
  for (let k = 1; k < ordered.length; k++) pairs.push([ordered[k - 1]!, ordered[k]!]);
  const oracle = oracleInputOf(ctx, pairs);
  for (const [a, b] of pairs) {
    const stream = streamFrom(ctx.store.get(a)!, ctx.store.get(b)!);
    if (!stream) throw new BadRequestError(`cannot fuse ${ordered.join(', ')}: a fused group is a chain, and ${a} does not produce a stream ${b} reads`);
    const v = chainable(a, b, stream, oracle);
    if (!v.ok) throw new BadRequestError(`cannot fuse ${a} and ${b} (stream ${stream}): ${v.reason}`);
  }
  const current = chainOf(ctx, ordered[0]!);
  if (current.length === ordered.length && current.every((n, i) => n === ordered[i])) return replyOf(ctx, undefined);
  const plan = regroupPlan(ctx, 'fuse', [ordered], new Set());
  return replyOf(ctx, await execute(ctx, plan));
}

/**
 * Takes `name` out of its group before a change that needs it on its own (a
 * canary, a scale), without marking it noFuse; returns its record after. A
 * computation that is not fused is returned as it is.
 */
export async function leaveGroup(ctx: ControllerContext, name: string): Promise<ComputationRecord> {
  const chain = chainOf(ctx, name);
  if (chain.length < 2) return ctx.store.get(name)!;
  for (const n of chain) deployedOrThrow(ctx, n);
  const at = chain.indexOf(name);
  const chains = [chain.slice(0, at), [name], chain.slice(at + 1)].filter((c) => c.length > 0);
  const noFuse = new Set(chain.filter((n) => ctx.store.get(n)?.noFuse));
  await execute(ctx, regroupPlan(ctx, 'split', chains, noFuse));
  return ctx.store.get(name)!;
}

/** `topo.api.split`: the computation leaves its group (which splits around it) and is not fused again until `topo fuse` names it. */
export async function split(ctx: ControllerContext, input: SplitRequest): Promise<FusionReply> {
  const req = parseRequest(schemas.api.split, input, 'split request');
  const rec = deployedOrThrow(ctx, req.name);
  const chain = chainOf(ctx, req.name);
  if (chain.length < 2) {
    if (!rec.noFuse) await ctx.store.saveOrRetry({ ...rec, noFuse: true });
    return replyOf(ctx, undefined);
  }
  for (const n of chain) deployedOrThrow(ctx, n);
  const at = chain.indexOf(req.name);
  const chains = [chain.slice(0, at), [req.name], chain.slice(at + 1)].filter((c) => c.length > 0);
  const plan = regroupPlan(ctx, 'split', chains, new Set([req.name]));
  return replyOf(ctx, await execute(ctx, plan));
}
