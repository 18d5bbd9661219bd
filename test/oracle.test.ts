import { describe, expect, it } from 'vitest';
import type { Grouping } from '../protocol/index.js';
import { PARTITIONS } from '../protocol/index.js';
import { buildGraph, chainable, diffPlans, plan, streamBetween, HEAVY_CPU_MICROS } from '../runtime/oracle/index.js';
import type {
  ComputationStats, InstancePlacement, OracleComputation, OracleInput, OracleWorker, Plan,
} from '../runtime/oracle/index.js';

type In = string | [string, Grouping];

function comp(name: string, istreams: In[], ostreams: string[], extra: Partial<OracleComputation> = {}): OracleComputation {
  return {
    name,
    lang: 'ts',
    istreams: istreams.map((s) => (typeof s === 'string' ? { stream: s, grouping: 'shuffle' as const } : { stream: s[0], grouping: s[1] })),
    ostreams,
    instances: 1,
    ...extra,
  };
}

function worker(workerId: string, host = 'h1', extra: Partial<OracleWorker> = {}): OracleWorker {
  return { workerId, host, lang: 'ts', alive: true, ...extra };
}

function stats(s: Partial<ComputationStats>): ComputationStats {
  return { recordsPerSec: 100, cpuMicrosPerRecord: 10, queueDepth: 0, busyRatio: 0.1, ...s };
}

const members = (p: Plan): string[][] => p.groups.map((g) => g.members);
const at = (p: Plan, c: string, i: number): InstancePlacement | undefined => p.placements.find((x) => x.computation === c && x.index === i);
const countBy = (p: Plan, pick: (x: InstancePlacement) => string): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const x of p.placements) out[pick(x)] = (out[pick(x)] ?? 0) + 1;
  return out;
};

/** a -> s1 -> b -> s2 -> c */
const chain = (n = 1): OracleComputation[] => [
  comp('a', [], ['s1'], { instances: n }),
  comp('b', ['s1'], ['s2'], { instances: n }),
  comp('c', ['s2'], [], { instances: n }),
];

describe('fusion', () => {
  it('fuses a chain into one group, one worker per index', () => {
    const p = plan({ computations: chain(2), workers: [worker('w1'), worker('w2')] });
    expect(members(p)).toEqual([['a', 'b', 'c']]);
    expect(p.groups[0]!.id).toBe('a+b+c');
    for (const i of [0, 1]) {
      const ws = new Set(['a', 'b', 'c'].map((c) => at(p, c, i)!.workerId));
      expect(ws.size).toBe(1);
      expect(at(p, 'b', i)!.group).toBe('a+b+c');
    }
    expect(at(p, 'a', 0)!.workerId).not.toBe(at(p, 'a', 1)!.workerId);
    expect(p.notes).toContain('a+b fused: forward shuffle edge on stream s1, same parallelism 2');
    expect(p.placements.every((x) => x.runner === 'inline')).toBe(true);
  });

  it('fan-out: only one downstream joins the chain, the current plan is kept', () => {
    const computations = [comp('a', [], ['s']), comp('b', ['s'], []), comp('c', ['s'], [])];
    const p = plan({ computations, workers: [worker('w1')] });
    expect(members(p)).toEqual([['a', 'b'], ['c']]);
    expect(p.notes.some((n) => n.startsWith('a+c not fused: fan-out') && n.includes('already chains to b'))).toBe(true);
    const current: Plan = { ...p, groups: [{ id: 'a+c', members: ['a', 'c'] }, { id: 'b', members: ['b'] }] };
    const q = plan({ computations, workers: [worker('w1')], current });
    expect(members(q)).toEqual([['a', 'c'], ['b']]);
  });

  it('fan-in is never fused', () => {
    const computations = [comp('a', [], ['s1']), comp('b', [], ['s2']), comp('c', ['s1', 's2'], [])];
    const p = plan({ computations, workers: [worker('w1')] });
    expect(members(p)).toEqual([['a'], ['b'], ['c']]);
    const v = chainable('a', 'c', 's1', { computations, workers: [] });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.reason).toMatch(/fan-in/);
  });

  it('a stream with two producers is not fused', () => {
    const computations = [comp('a', [], ['s']), comp('b', [], ['s']), comp('c', ['s'], [])];
    const p = plan({ computations, workers: [worker('w1')] });
    expect(members(p)).toEqual([['a'], ['b'], ['c']]);
    expect(p.notes.some((n) => n.startsWith('a+c not fused') && n.includes('2 producers'))).toBe(true);
  });

  it.each(['key', 'broadcast'] as const)('%s-grouped edge: fused with parallelism 1, not with 2', (grouping) => {
    const computations = (n: number): OracleComputation[] => [comp('a', [], ['s'], { instances: n }), comp('b', [['s', grouping]], [], { instances: n })];
    expect(members(plan({ computations: computations(1), workers: [worker('w1')] }))).toEqual([['a', 'b']]);
    const input = { computations: computations(2), workers: [worker('w1')] };
    expect(members(plan(input))).toEqual([['a'], ['b']]);
    const v = chainable('a', 'b', 's', input);
    expect(v).toMatchObject({ ok: false, overridable: false });
    if (!v.ok) expect(v.reason).toContain(grouping);
  });

  it('different parallelism is not fused', () => {
    const computations = [comp('a', [], ['s'], { instances: 2 }), comp('b', ['s'], [], { instances: 3 })];
    const v = chainable('a', 'b', 's', { computations, workers: [] });
    expect(v).toEqual({ ok: false, overridable: false, reason: 'different parallelism: a has 2 instances, b has 3' });
  });

  it('no self-loop, no cycle inside a group', () => {
    const self = [comp('a', ['s'], ['s'])];
    const p = plan({ computations: self, workers: [worker('w1')] });
    expect(members(p)).toEqual([['a']]);
    expect(p.notes.some((n) => n.includes('self-loop'))).toBe(true);
    const cycle = [comp('a', ['s2'], ['s1']), comp('b', ['s1'], ['s2'])];
    const q = plan({ computations: cycle, workers: [worker('w1')] });
    expect(members(q)).toEqual([['a', 'b']]);
    expect(q.notes).toContain('b+a not fused: it would close a cycle inside the group');
  });
});

describe('mixed languages', () => {
  const computations = [comp('a', [], ['s1']), comp('p', ['s1'], ['s2'], { lang: 'python' }), comp('b', ['s2'], [])];

  it('a python operator is never fused and runs on a python worker', () => {
    const p = plan({ computations, workers: [worker('w1'), worker('py1', 'h1', { lang: 'python' })] });
    expect(members(p)).toEqual([['a'], ['b'], ['p']]);
    expect(at(p, 'p', 0)).toMatchObject({ workerId: 'py1', runner: 'external' });
    expect(at(p, 'a', 0)!.workerId).toBe('w1');
    expect(at(p, 'b', 0)!.workerId).toBe('w1');
    expect(p.notes.some((n) => n.startsWith('a+p not fused') && n.includes('python'))).toBe(true);
  });

  it('no python worker: unplaced, with a note', () => {
    const p = plan({ computations, workers: [worker('w1')] });
    expect(at(p, 'p', 0)).toBeUndefined();
    expect(p.unplaced).toEqual([{ computation: 'p', index: 0 }]);
    expect(p.notes).toContain('p#0 unplaced: no live python worker');
    expect(at(p, 'a', 0)!.workerId).toBe('w1');
  });

  it('a fuse override cannot fuse a python operator', () => {
    const p = plan({ computations, workers: [worker('w1')], overrides: { fuse: [['a', 'p']] } });
    expect(members(p)).toEqual([['a'], ['b'], ['p']]);
    expect(p.notes.some((n) => n.startsWith('fuse a+p refused') && n.includes('python'))).toBe(true);
  });
});

describe('overrides', () => {
  it('split: the computation is never fused', () => {
    const p = plan({ computations: chain(), workers: [worker('w1')], overrides: { split: ['b'] } });
    expect(members(p)).toEqual([['a'], ['b'], ['c']]);
    const q = plan({ computations: [...chain(), comp('d', ['s3'], [])].map((c) => (c.name === 'c' ? { ...c, ostreams: ['s3'] } : c)), workers: [worker('w1')], overrides: { split: ['b'] } });
    expect(members(q)).toEqual([['a'], ['b'], ['c', 'd']]);
  });

  it('fuse: lifts a soft rule, with a note', () => {
    const computations = [comp('a', [], ['s']), comp('b', ['s'], [], { hints: { fuse: false } })];
    expect(members(plan({ computations, workers: [worker('w1')] }))).toEqual([['a'], ['b']]);
    const p = plan({ computations, workers: [worker('w1')], overrides: { fuse: [['a', 'b']] } });
    expect(members(p)).toEqual([['a', 'b']]);
    expect(p.notes).toContain('a+b fused by user override on stream s (overriding: b has hints.fuse = false)');
  });

  it('fuse: refused when a hard rule fails, with the reason', () => {
    const computations = [comp('a', [], ['s'], { instances: 2 }), comp('b', ['s'], [], { instances: 1 }), comp('c', [], [])];
    const p = plan({ computations, workers: [worker('w1')], overrides: { fuse: [['a', 'b'], ['a', 'c']] } });
    expect(members(p)).toEqual([['a'], ['b'], ['c']]);
    expect(p.notes).toContain('fuse a+b refused: different parallelism: a has 2 instances, b has 1');
    expect(p.notes).toContain('fuse a+c refused: a does not feed c');
  });

  it('chainable tells the CLI whether a fuse override would help', () => {
    const computations = [comp('a', [], ['s'], { instances: 2 }), comp('b', ['s'], [], { instances: 2, hints: { autoscale: { min: 2, max: 2 } } })];
    const input = { computations, workers: [] };
    expect(streamBetween('a', 'b', buildGraph(input))).toBe('s');
    expect(streamBetween('b', 'a', buildGraph(input))).toBeUndefined();
    expect(chainable('a', 'b', 's', input)).toEqual({ ok: false, overridable: true, reason: 'b autoscales (2..2): its parallelism changes' });
    expect(chainable('a', 'b', 's', { ...input, computations: [computations[0]!, { ...computations[1]!, hints: {} }] })).toEqual({ ok: true });
  });

  it('split wins over fuse', () => {
    const p = plan({ computations: chain(), workers: [worker('w1')], overrides: { fuse: [['a', 'b']], split: ['a'] } });
    expect(members(p)).toEqual([['a'], ['b', 'c']]);
    expect(p.notes.some((n) => n.startsWith('fuse a+b refused') && n.includes('topo split a'))).toBe(true);
  });
});

describe('heavy and saturated', () => {
  it('heavy by hint: a thread, not fused', () => {
    const computations = chain().map((c) => (c.name === 'b' ? { ...c, hints: { cpu: 'heavy' as const } } : c));
    const p = plan({ computations, workers: [worker('w1')] });
    expect(members(p)).toEqual([['a'], ['b'], ['c']]);
    expect(at(p, 'b', 0)!.runner).toBe('thread');
    expect(at(p, 'a', 0)!.runner).toBe('inline');
  });

  it('heavy by measurement: a thread, not fused; light stays fused', () => {
    const heavy = plan({ computations: chain(), workers: [worker('w1')], stats: { c: stats({ cpuMicrosPerRecord: HEAVY_CPU_MICROS + 50 }) } });
    expect(members(heavy)).toEqual([['a', 'b'], ['c']]);
    expect(at(heavy, 'c', 0)!.runner).toBe('thread');
    expect(heavy.notes.some((n) => n.startsWith('b+c not fused') && n.includes('measured 250'))).toBe(true);
    const light = plan({ computations: chain(), workers: [worker('w1')], stats: { c: stats({ cpuMicrosPerRecord: HEAVY_CPU_MICROS - 50 }) } });
    expect(members(light)).toEqual([['a', 'b', 'c']]);
  });

  it('a saturated member is split out of its group', () => {
    const computations = [...chain().map((c) => (c.name === 'c' ? { ...c, ostreams: ['s3'] } : c)), comp('d', ['s3'], [])];
    expect(members(plan({ computations, workers: [worker('w1')] }))).toEqual([['a', 'b', 'c', 'd']]);
    const p = plan({ computations, workers: [worker('w1')], stats: { c: stats({ busyRatio: 0.93 }) } });
    expect(members(p)).toEqual([['a', 'b'], ['c'], ['d']]);
    expect(p.notes.some((n) => n.includes('c is saturated (busy 0.93'))).toBe(true);
  });
});

describe('scaling', () => {
  const auto = (instances: number, busyWindow: number[] | undefined, min = 1, max = 8): Plan =>
    plan({
      computations: [comp('x', [], [], { instances, hints: { autoscale: { min, max } } })],
      workers: [worker('w1')],
      stats: busyWindow ? { x: stats({ busyWindow }) } : {},
    });

  it('doubles when busy for the whole window, capped at max', () => {
    expect(auto(2, [0.9, 0.95, 0.9, 0.85, 0.99]).instances.x).toBe(4);
    expect(auto(6, [0.9, 0.95, 0.9, 0.85, 0.99]).instances.x).toBe(8);
    expect(auto(2, [0.1, 0.9, 0.95, 0.9, 0.85, 0.99]).instances.x).toBe(4); // only the last 5 samples count
  });

  it('halves when idle for the whole window, floored at min', () => {
    expect(auto(4, [0.1, 0.05, 0.1, 0.15, 0.0]).instances.x).toBe(2);
    expect(auto(3, [0.1, 0.05, 0.1, 0.15, 0.0], 2).instances.x).toBe(2);
  });

  it('keeps otherwise, and always clamps to [min, max]', () => {
    expect(auto(3, [0.9, 0.9, 0.5, 0.9, 0.9]).instances.x).toBe(3);
    expect(auto(3, [0.9, 0.9, 0.9, 0.9]).instances.x).toBe(3); // window not full
    expect(auto(3, undefined).instances.x).toBe(3);
    expect(auto(12, [0.5, 0.5, 0.5, 0.5, 0.5]).instances.x).toBe(8);
    expect(auto(1, undefined, 2, 4).instances.x).toBe(2);
    expect(auto(12, [0.5, 0.5, 0.5, 0.5, 0.5]).notes.some((n) => n.includes('clamped to autoscale range [1, 8]'))).toBe(true);
  });

  it('caps key-grouped computations at PARTITIONS', () => {
    const p = plan({
      computations: [comp('k', [['s', 'key']], [], { instances: 50 }), comp('u', ['s'], [], { instances: 50 })],
      workers: [worker('w1')],
    });
    expect(p.instances).toEqual({ k: PARTITIONS, u: 50 });
    expect(p.placements.filter((x) => x.computation === 'k')).toHaveLength(PARTITIONS);
    expect(p.notes.some((n) => n.startsWith(`k: 50 instances capped at ${PARTITIONS}`))).toBe(true);
  });

  it('an autoscaled computation is not fused', () => {
    const computations = chain(2).map((c) => (c.name === 'b' ? { ...c, hints: { autoscale: { min: 2, max: 4 } } } : c));
    expect(members(plan({ computations, workers: [worker('w1')] }))).toEqual([['a'], ['b'], ['c']]);
  });
});

describe('placement', () => {
  const six = [comp('x', [], [], { instances: 6 })];

  it('worker loss: its instances move, the others stay', () => {
    const workers = [worker('w1'), worker('w2'), worker('w3')];
    const before = plan({ computations: six, workers });
    expect(Object.values(countBy(before, (x) => x.workerId))).toEqual([2, 2, 2]);
    const after = plan({ computations: six, workers: workers.map((w) => (w.workerId === 'w2' ? { ...w, alive: false } : w)), current: before });
    expect(after.placements.some((x) => x.workerId === 'w2')).toBe(false);
    for (const x of before.placements) {
      if (x.workerId !== 'w2') expect(at(after, x.computation, x.index)!.workerId).toBe(x.workerId);
    }
    expect(countBy(after, (x) => x.workerId)).toEqual({ w1: 3, w3: 3 });
    const moves = diffPlans(before, after);
    expect(moves).toHaveLength(2);
    expect(moves.every((c) => c.kind === 'move' && c.fromWorker === 'w2')).toBe(true);
    expect(after.notes.some((n) => n.includes('moved off w2 (dead)'))).toBe(true);
  });

  it('worker join: rebalances 6/0 to 3/3 with 3 moves', () => {
    const before = plan({ computations: six, workers: [worker('w1')] });
    expect(countBy(before, (x) => x.workerId)).toEqual({ w1: 6 });
    const after = plan({ computations: six, workers: [worker('w1'), worker('w2')], current: before });
    expect(countBy(after, (x) => x.workerId)).toEqual({ w1: 3, w2: 3 });
    const changes = diffPlans(before, after);
    expect(changes).toHaveLength(3);
    expect(changes.every((c) => c.kind === 'move' && c.fromWorker === 'w1' && c.toWorker === 'w2')).toBe(true);
    const again = plan({ computations: six, workers: [worker('w1'), worker('w2')], current: after });
    expect(diffPlans(after, again)).toEqual([]); // stable: nothing moves twice
  });

  it('balances by capacity', () => {
    const p = plan({ computations: six, workers: [worker('w1', 'h1', { capacity: 2 }), worker('w2', 'h1')] });
    expect(countBy(p, (x) => x.workerId)).toEqual({ w1: 4, w2: 2 });
  });

  it('spreads one computation over hosts first', () => {
    const workers = [worker('a1', 'hostA'), worker('a2', 'hostA'), worker('b1', 'hostB'), worker('b2', 'hostB')];
    const p = plan({ computations: [comp('x', [], [], { instances: 2 })], workers });
    expect(countBy(p, (x) => x.host)).toEqual({ hostA: 1, hostB: 1 });
    const q = plan({ computations: [comp('x', [], [], { instances: 4 })], workers });
    expect(Object.values(countBy(q, (x) => x.workerId))).toEqual([1, 1, 1, 1]);
  });

  it('gathers newly fused members of one index on one worker', () => {
    const computations = [comp('a', [], ['s'], { instances: 2 }), comp('b', ['s'], [], { instances: 2 })];
    const workers = [worker('w1'), worker('w2')];
    const split = plan({ computations, workers, overrides: { split: ['b'] } });
    expect(members(split)).toEqual([['a'], ['b']]);
    const fused = plan({ computations, workers, current: split });
    expect(members(fused)).toEqual([['a', 'b']]);
    for (const i of [0, 1]) expect(at(fused, 'b', i)!.workerId).toBe(at(fused, 'a', i)!.workerId);
    expect(new Set(fused.placements.map((x) => x.workerId)).size).toBe(2);
  });

  it('is deterministic, whatever the input order', () => {
    const computations = [...chain(3), comp('k', [['s2', 'key']], [], { instances: 4 }), comp('p', ['s1'], [], { lang: 'python', instances: 2 })];
    const workers = [worker('w3', 'h2'), worker('w1', 'h1'), worker('py', 'h2', { lang: 'python' }), worker('w2', 'h1')];
    const input: OracleInput = { computations, workers, stats: { k: stats({ busyRatio: 0.5 }) } };
    const p = plan(input);
    expect(plan(input)).toEqual(p);
    expect(plan({ ...input, computations: [...computations].reverse(), workers: [...workers].reverse() })).toEqual(p);
  });
});

describe('diffPlans', () => {
  it('fuse and split', () => {
    const workers = [worker('w1')];
    const split = plan({ computations: chain(), workers, overrides: { split: ['c'] } });
    const fused = plan({ computations: chain(), workers, current: split });
    expect(diffPlans(split, fused)).toEqual([{ kind: 'split', group: 'a+b', members: ['a', 'b'] }, { kind: 'fuse', members: ['a', 'b', 'c'] }]);
    expect(diffPlans(fused, split)).toEqual([{ kind: 'split', group: 'a+b+c', members: ['a', 'b', 'c'] }, { kind: 'fuse', members: ['a', 'b'] }]);
  });

  it('scale, including added and removed computations', () => {
    const computations = [comp('x', [], [], { instances: 2, hints: { autoscale: { min: 1, max: 8 } } })];
    const workers = [worker('w1')];
    const before = plan({ computations, workers });
    const after = plan({ computations: [...computations, comp('y', [], [])], workers, current: before, stats: { x: stats({ busyWindow: [0.9, 0.9, 0.9, 0.9, 0.9] }) } });
    expect(diffPlans(before, after)).toEqual([
      { kind: 'scale', computation: 'x', from: 2, to: 4 },
      { kind: 'scale', computation: 'y', from: 0, to: 1 },
    ]);
    expect(diffPlans(after, before)).toContainEqual({ kind: 'scale', computation: 'y', from: 1, to: 0 });
  });

  it('move', () => {
    const computations = [comp('x', [], [])];
    const before = plan({ computations, workers: [worker('w1'), worker('w2')] });
    const from = at(before, 'x', 0)!.workerId;
    const after = plan({ computations, workers: [worker('w1', 'h1', { alive: from !== 'w1' }), worker('w2', 'h1', { alive: from !== 'w2' })], current: before });
    const to = at(after, 'x', 0)!.workerId;
    expect(to).not.toBe(from);
    expect(diffPlans(before, after)).toEqual([{ kind: 'move', computation: 'x', index: 0, fromWorker: from, toWorker: to }]);
  });

  it('orders split, scale, move, fuse', () => {
    const computations = chain(1);
    const workers = [worker('w1'), worker('w2')];
    const before = plan({ computations, workers, overrides: { split: ['b'] } });
    const dead = before.placements.find((x) => x.computation === 'c')!.workerId;
    const after = plan({
      computations: [...computations.map((c) => (c.name === 'c' ? { ...c, instances: 2 } : c))],
      workers: workers.map((w) => (w.workerId === dead ? { ...w, alive: false } : w)),
      current: before,
    });
    const kinds = diffPlans(before, after).map((c) => c.kind);
    expect(kinds).toContain('fuse');
    expect(kinds).toContain('scale');
    const rank = { split: 0, scale: 1, move: 2, fuse: 3 };
    expect([...kinds].sort((x, y) => rank[x] - rank[y])).toEqual(kinds);
  });
});
