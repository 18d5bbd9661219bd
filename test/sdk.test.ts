/** The SDK surface: defineComputation validation, isComputation, MemoryState and TimerTable. */
import { describe, expect, it } from 'vitest';
import { defineComputation, InvalidMetadataError, isComputation, TopoError, type ComputationSpec } from '../sdk/index.js';
import { packr } from '../protocol/index.js';
import { createTestContext } from '../sdk/testing/index.js';
import { pino } from 'pino';
import { Executor } from '../runtime/executor/executor.js';
import type { Computation } from '../sdk/computation.js';
import { MemoryState, TimerTable } from '../runtime/executor/state.js';

const noop = (): void => {};

/** defineComputation with whatever a plain-JS caller might pass. */
function defineLoose(spec: Record<string, unknown>) {
  return defineComputation(spec as unknown as ComputationSpec<string, string> & { processRecord: () => void });
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}

const issuePaths = (err: Error): string[] => ((err as InvalidMetadataError).detail as { path: string }[]).map((i) => i.path);

describe('defineComputation', () => {
  it('returns a frozen, branded computation with normalized-compatible metadata', () => {
    const c = defineComputation({ name: 'counter', istreams: ['clicks', { stream: 'views', grouping: 'key' }], ostreams: ['counts'], processRecord: noop });
    expect(isComputation(c)).toBe(true);
    expect(Object.isFrozen(c)).toBe(true);
    expect(c.name).toBe('counter');
    expect(c.istreams).toEqual(['clicks', { stream: 'views', grouping: 'key' }]);
  });

  it('names the field of a bad name', () => {
    const err = thrown(() => defineLoose({ name: 'bad name', istreams: [], ostreams: [], processRecord: noop }));
    expect(err).toBeInstanceOf(InvalidMetadataError);
    expect(err).toBeInstanceOf(TopoError);
    expect((err as InvalidMetadataError).code).toBe('INVALID_METADATA');
    expect(err.message).toMatch(/name: must start with a letter/);
    expect(issuePaths(err)).toEqual(['name']);
  });

  it('names the field of a name that is too long or has a dot', () => {
    expect(thrown(() => defineLoose({ name: 'a'.repeat(65), istreams: [], ostreams: [], processRecord: noop })).message).toMatch(/\bname:/);
    expect(thrown(() => defineLoose({ name: 'a.b', istreams: [], ostreams: [], processRecord: noop })).message).toMatch(/\bname:/);
  });

  it('names the istream with a bad grouping', () => {
    const err = thrown(() =>
      defineLoose({ name: 'x', istreams: ['a', { stream: 'b', grouping: 'fanout' }], ostreams: [], processRecord: noop }),
    );
    expect(err).toBeInstanceOf(InvalidMetadataError);
    expect(err.message).toMatch(/istreams\[1\]/);
    expect(issuePaths(err).every((p) => p.startsWith('istreams[1]'))).toBe(true);
  });

  it('names a stream listed twice, in istreams and in ostreams', () => {
    const inErr = thrown(() => defineLoose({ name: 'x', istreams: ['a', { stream: 'a', grouping: 'key' }], ostreams: [], processRecord: noop }));
    expect(inErr.message).toMatch(/istreams\[1\]: stream "a" is listed twice/);
    const outErr = thrown(() => defineLoose({ name: 'x', istreams: [], ostreams: ['o', 'p', 'o'], processRecord: noop }));
    expect(outErr.message).toMatch(/ostreams\[2\]: stream "o" is listed twice/);
  });

  it('says which computation has invalid metadata', () => {
    expect(thrown(() => defineLoose({ name: 'mine', istreams: 'a', ostreams: [], processRecord: noop })).message).toMatch(/of "mine".*istreams:/);
  });

  it('rejects a non-function processRecord, naming it', () => {
    const err = thrown(() => defineLoose({ name: 'x', istreams: [], ostreams: [], processRecord: 'nope' }));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe('computation "x": processRecord must be a function');
    expect(thrown(() => defineLoose({ name: 'x', istreams: ['a'], ostreams: [] })).message).toBe('computation "x": processRecord must be a function');
    expect(thrown(() => defineLoose({ name: 'x', istreams: [], ostreams: [], processRecord: 'nope' })).message).toMatch(/processRecord must be a function/);
  });

  it('lets a source (no istreams) leave processRecord out', async () => {
    const source = defineComputation({ name: 'ticker', istreams: [], ostreams: ['ticks'], processTimer(ctx, key) { ctx.produceRecord('ticks', key, 1); } });
    expect(isComputation(source)).toBe(true);
    expect(source.processRecord).toBeUndefined();
    // The runtime's executor copes: a record that reaches a source anyway is dropped, timers still run.
    const produced: unknown[][] = [];
    const exec = new Executor({
      comp: source as unknown as Computation, instance: { index: 0, count: 1, id: 'ticker-0-abcdef' }, log: pino({ level: 'silent' }),
      sink: { produce: (stream, key, value) => produced.push([stream, key, value]) },
    });
    expect(exec.processRecord({ stream: 'stray', key: 'k', value: 1, timestamp: 1, seq: 1, producer: 'p' })).toBeUndefined();
    exec.ctx.setTimer('tick', 5);
    for (const [key, at] of exec.takeDueTimers(10)) await exec.fireTimer(key, at);
    expect(produced).toEqual([['ticks', 'tick', 1]]);
    const t = createTestContext(source, { now: 1000 });
    t.context.setTimer('tock', 1000);
    await t.advanceBy(0);
    expect(t.takeOutputs().map((o) => [o.stream, o.key, o.value])).toEqual([['ticks', 'tock', 1]]);
    // @ts-expect-error: a computation with istreams must have processRecord
    expect(() => defineComputation({ name: 'reader', istreams: ['a'], ostreams: [] })).toThrow('computation "reader": processRecord must be a function');
  });

  it('rejects non-function optional callbacks, naming each', () => {
    for (const cb of ['init', 'processTimer', 'destroy']) {
      const err = thrown(() => defineLoose({ name: 'x', istreams: [], ostreams: [], processRecord: noop, [cb]: 42 }));
      expect(err.message).toBe(`computation "x": ${cb} must be a function when given`);
    }
  });
});

describe('isComputation', () => {
  it('is true only for values made by defineComputation (or carrying the registered brand)', () => {
    const spec = { name: 'x', istreams: [], ostreams: [], processRecord: noop };
    expect(isComputation(defineComputation(spec))).toBe(true);
    expect(isComputation(spec)).toBe(false);
    expect(isComputation(null)).toBe(false);
    expect(isComputation(undefined)).toBe(false);
    expect(isComputation('counter')).toBe(false);
    // Another bundle's copy of the SDK brands with the same registered symbol.
    expect(isComputation({ ...spec, [Symbol.for('topo.computation')]: true })).toBe(true);
    expect(isComputation({ ...spec, [Symbol('topo.computation')]: true })).toBe(false);
  });
});

describe('MemoryState', () => {
  it('behaves as a keyed map', () => {
    const s = new MemoryState();
    expect(s.get('a')).toBeUndefined();
    s.set('a', 1);
    s.set('b', { n: 2 });
    s.set('a', 3);
    expect(s.get<number>('a')).toBe(3);
    expect(s.has('b')).toBe(true);
    expect(s.size).toBe(2);
    expect([...s.keys()]).toEqual(['a', 'b']);
    expect(s.delete('a')).toBe(true);
    expect(s.delete('a')).toBe(false);
    expect(s.has('a')).toBe(false);
    expect(s.size).toBe(1);
  });

  it('snapshots independently of later changes and restores, replacing everything', () => {
    const s = new MemoryState();
    s.set('a', 1);
    s.set('b', [1, 2]);
    const snap = s.snapshot();
    s.set('a', 99);
    s.set('c', 'new');
    expect(snap.entries).toEqual([['a', 1], ['b', [1, 2]]]);

    const next = new MemoryState();
    next.set('stale', true);
    next.restore(snap);
    expect(next.has('stale')).toBe(false);
    expect(next.get('a')).toBe(1);
    expect(next.get('b')).toEqual([1, 2]);
    expect(next.size).toBe(2);
  });

  it('hands state to the next version through msgpack', () => {
    const s = new MemoryState();
    s.set('user-1', { count: 3, last: 'click', tags: ['a'] });
    s.set('user-2', 7);
    const wire = packr.pack(s.snapshot());
    const next = new MemoryState();
    next.restore(packr.unpack(wire));
    expect(next.get('user-1')).toEqual({ count: 3, last: 'click', tags: ['a'] });
    expect(next.get('user-2')).toBe(7);
    expect([...next.keys()]).toEqual(['user-1', 'user-2']);
  });
});

describe('TimerTable', () => {
  it('keeps one timer per key: setting again replaces it', () => {
    const t = new TimerTable();
    t.set('k', 100);
    t.set('k', 300);
    expect(t.size).toBe(1);
    expect(t.takeDue(200)).toEqual([]);
    expect(t.takeDue(300)).toEqual([['k', 300]]);
    expect(t.size).toBe(0);
  });

  it('takes due timers (at <= now) earliest first and leaves the rest', () => {
    const t = new TimerTable();
    t.set('c', 30);
    t.set('a', 10);
    t.set('late', 1000);
    t.set('b', 20);
    expect(t.next()).toBe(10);
    expect(t.takeDue(30)).toEqual([['a', 10], ['b', 20], ['c', 30]]);
    expect(t.size).toBe(1);
    expect(t.next()).toBe(1000);
    expect(t.takeDue(999)).toEqual([]);
  });

  it('reports no next time when empty', () => {
    const t = new TimerTable();
    expect(t.next()).toBeUndefined();
    t.set('x', 5);
    t.takeDue(5);
    expect(t.next()).toBeUndefined();
  });

  it('rejects a non-finite time, naming the key', () => {
    const t = new TimerTable();
    expect(() => t.set('flush', Number.NaN)).toThrow(/setTimer\("flush"\): atMs must be a finite number/);
    expect(() => t.set('flush', Infinity)).toThrow(TypeError);
    expect(t.size).toBe(0);
  });

  it('snapshots and restores pending timers', () => {
    const t = new TimerTable();
    t.set('a', 10);
    t.set('b', 20);
    const snap = t.snapshot();
    t.takeDue(10);
    const next = new TimerTable();
    next.set('stale', 1);
    next.restore(snap);
    expect(next.size).toBe(2);
    expect(next.takeDue(20)).toEqual([['a', 10], ['b', 20]]);
  });
});
