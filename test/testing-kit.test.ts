/** The test kit (sdk/testing) driving small computations without NATS. */
import { describe, expect, it } from 'vitest';
import { defineComputation, type Context } from '../sdk/index.js';
import { createTestContext } from '../sdk/testing/index.js';

const WINDOW_MS = 1_000;

/** Counts records per key in tumbling windows; emits each key's count when its window closes. */
const counter = defineComputation({
  name: 'counter',
  istreams: [{ stream: 'clicks', grouping: 'key' }],
  ostreams: ['counts'],
  init(ctx) {
    ctx.log.info({ window: WINDOW_MS }, 'counter ready');
  },
  processRecord(ctx, record) {
    const n = (ctx.state.get<number>(record.key) ?? 0) + 1;
    ctx.state.set(record.key, n);
    if (n === 1) ctx.setTimer(record.key, Math.floor(record.timestamp / WINDOW_MS) * WINDOW_MS + WINDOW_MS);
  },
  processTimer(ctx, key, atMs) {
    ctx.produceRecord('counts', key, { count: ctx.state.get<number>(key), windowEnd: atMs });
    ctx.state.delete(key);
  },
});

/** A source: ticks every 100 ms from init on, re-arming its timer from processTimer. */
const ticker = defineComputation({
  name: 'ticker',
  istreams: [],
  ostreams: ['ticks'],
  init(ctx) {
    ctx.setTimer('tick', 100);
  },
  processTimer(ctx, key, atMs) {
    ctx.produceRecord('ticks', key, atMs);
    ctx.setTimer(key, atMs + 100);
  },
  processRecord() {},
});

describe('createTestContext with a keyed counter', () => {
  it('counts per key and emits when each window closes, in time order', async () => {
    const t = createTestContext(counter, { now: 10_000 });
    await t.send('clicks', 'a', null);
    await t.send('clicks', 'b', null, { timestamp: 10_500 });
    await t.send('clicks', 'a', null);
    expect(t.state.get('a')).toBe(2);
    expect(t.timers).toEqual([{ key: 'a', atMs: 11_000 }, { key: 'b', atMs: 11_000 }]);
    expect(t.outputs).toEqual([]);

    expect(await t.advanceBy(999)).toBe(0);
    expect(t.outputs).toEqual([]);
    expect(t.now).toBe(10_999);

    expect(await t.advanceBy(1)).toBe(2);
    expect(t.takeOutputs()).toEqual([
      { stream: 'counts', key: 'a', value: { count: 2, windowEnd: 11_000 } },
      { stream: 'counts', key: 'b', value: { count: 1, windowEnd: 11_000 } },
    ]);
    expect(t.outputs).toEqual([]);
    expect(t.state.size).toBe(0);
    expect(t.timers).toEqual([]);
  });

  it('starts a new window after the previous one fired', async () => {
    const t = createTestContext(counter, { now: 0 });
    await t.send('clicks', 'a', 1);
    await t.advanceTo(1_000);
    await t.send('clicks', 'a', 1, { timestamp: 1_500 });
    await t.send('clicks', 'a', 1, { timestamp: 1_700 });
    await t.advanceTo(5_000);
    expect(t.takeOutputs().map((o) => o.value)).toEqual([{ count: 1, windowEnd: 1_000 }, { count: 2, windowEnd: 2_000 }]);
  });

  it('hands processRecord the record fields the runtime would', async () => {
    const seen: unknown[] = [];
    const probe = defineComputation({
      name: 'probe',
      istreams: ['a', 'b'],
      ostreams: [],
      processRecord(ctx, r) {
        seen.push({ ...r, name: ctx.name, instance: ctx.instance });
      },
    });
    const t = createTestContext(probe, { now: 42, index: 1, count: 3 });
    await t.send('a', 'k1', { x: 1 });
    await t.send('a', 'k2', 'v', { timestamp: 7, producer: 'up-0', traceId: 'tr-9' });
    await t.send('b', 'k3', [1]);
    expect(seen).toEqual([
      { stream: 'a', key: 'k1', value: { x: 1 }, timestamp: 42, seq: 1, producer: 'test-producer', name: 'probe', instance: { index: 1, count: 3, id: 'probe-1-test' } },
      { stream: 'a', key: 'k2', value: 'v', timestamp: 7, seq: 2, producer: 'up-0', traceId: 'tr-9', name: 'probe', instance: { index: 1, count: 3, id: 'probe-1-test' } },
      { stream: 'b', key: 'k3', value: [1], timestamp: 42, seq: 1, producer: 'test-producer', name: 'probe', instance: { index: 1, count: 3, id: 'probe-1-test' } },
    ]);
  });

  it('passes values through msgpack, as they would arrive over the wire', async () => {
    let received: unknown;
    const echo = defineComputation({
      name: 'echo',
      istreams: ['in'],
      ostreams: ['out'],
      processRecord(ctx, r) {
        received = r.value;
        ctx.produceRecord('out', r.key, new Map([['m', 1]]));
      },
    });
    const t = createTestContext(echo);
    const sent = { nested: { list: [1, 'two', null] } };
    await t.send('in', 'k', sent);
    expect(received).toEqual(sent);
    expect(received).not.toBe(sent);
    // A Map is written as a msgpack map and read back as a plain object, as a consumer sees it.
    expect(t.outputs[0]?.value).toEqual({ m: 1 });
    await expect(t.send('in', 'k', Symbol('no'))).rejects.toThrow(/not msgpack-encodable/);
  });
});

describe('timers', () => {
  it('fires timers set during a timer callback when they are due', async () => {
    const t = createTestContext(ticker, { now: 0 });
    await t.init();
    expect(await t.advanceBy(350)).toBe(3);
    expect(t.takeOutputs().map((o) => o.value)).toEqual([100, 200, 300]);
    expect(t.timers).toEqual([{ key: 'tick', atMs: 400 }]);
    expect(t.now).toBe(350);
  });

  it('replaces a pending timer of the same key, also within one firing round', async () => {
    const fired: [string, number][] = [];
    const c = defineComputation({
      name: 'replacer',
      istreams: ['in'],
      ostreams: [],
      processRecord(ctx, r) {
        ctx.setTimer(r.key, r.value as number);
      },
      processTimer(ctx, key, atMs) {
        fired.push([key, atMs]);
        // 'a' fires first and moves 'b', which was due in the same round, to later.
        if (key === 'a') ctx.setTimer('b', 500);
      },
    });
    const t = createTestContext(c);
    await t.send('in', 'x', 100);
    await t.send('in', 'x', 50); // replaces x@100
    await t.send('in', 'a', 200);
    await t.send('in', 'b', 200);
    await t.advanceTo(1_000);
    expect(fired).toEqual([['x', 50], ['a', 200], ['b', 500]]);
  });

  it('fires a timer already due right after the callback that set it', async () => {
    const c = defineComputation({
      name: 'immediate',
      istreams: ['in'],
      ostreams: ['out'],
      processRecord(ctx, r) {
        ctx.setTimer(r.key, 0);
      },
      processTimer(ctx, key) {
        ctx.produceRecord('out', key, 'now');
      },
    });
    const t = createTestContext(c, { now: 5 });
    await t.send('in', 'k', null);
    expect(t.outputs).toEqual([{ stream: 'out', key: 'k', value: 'now' }]);
  });

  it('reports a throwing processTimer to advanceTo once the rest of its round has fired, as the runtime does, and stays usable', async () => {
    const c = defineComputation({
      name: 'flaky',
      istreams: ['in'],
      ostreams: ['out'],
      processRecord(ctx, r) {
        ctx.setTimer(r.key, 100);
      },
      processTimer(ctx, key) {
        if (key === 'bad') throw new Error('timer broke');
        ctx.produceRecord('out', key, 'fired');
      },
    });
    const t = createTestContext(c);
    await t.send('in', 'bad', null);
    await t.send('in', 'good', null);
    await expect(t.advanceTo(200)).rejects.toThrow('timer broke');
    expect(t.now).toBe(100);
    // The runtime's serial loop fires "good" in the same round although "bad" threw: so does the kit (one Executor).
    expect(t.outputs).toEqual([{ stream: 'out', key: 'good', value: 'fired' }]);
    expect(t.timers).toEqual([]);
    expect(await t.advanceTo(200)).toBe(0);
  });

  it('will not move the clock backwards', async () => {
    const t = createTestContext(counter, { now: 1_000 });
    await expect(t.advanceTo(999)).rejects.toThrow(/cannot go back/);
    await expect(t.advanceBy(-1)).rejects.toThrow(RangeError);
    expect(t.now).toBe(1_000);
  });
});

describe('errors and misuse', () => {
  it('throws processRecord errors to the caller of send, and keeps going', async () => {
    const c = defineComputation({
      name: 'picky',
      istreams: ['in'],
      ostreams: ['out'],
      processRecord(ctx, r) {
        if (r.key === 'bad') throw new Error(`cannot handle ${r.key}`);
        ctx.produceRecord('out', r.key, r.value);
      },
    });
    const t = createTestContext(c);
    await expect(t.send('in', 'bad', 1)).rejects.toThrow('cannot handle bad');
    await t.send('in', 'good', 2);
    expect(t.outputs).toEqual([{ stream: 'out', key: 'good', value: 2 }]);
  });

  it('rejects producing to an undeclared stream with a clear error', async () => {
    const c = defineComputation({
      name: 'sloppy',
      istreams: ['in'],
      ostreams: ['tags', 'other'],
      processRecord(ctx, r) {
        // A plain-JS caller can get past the types.
        (ctx as Context<string>).produceRecord('tgas', r.key, r.value);
      },
    });
    const t = createTestContext(c);
    await expect(t.send('in', 'k', 1)).rejects.toThrow('produceRecord: "tgas" is not an ostream of "sloppy" (declared: tags, other)');
    expect(t.outputs).toEqual([]);
  });

  it('rejects sending to a stream the computation does not read', async () => {
    const t = createTestContext(counter);
    await expect(t.send('views' as 'clicks', 'k', 1)).rejects.toThrow('send: "views" is not an istream of "counter" (declared: clicks)');
    await expect(t.send('clicks', 7 as unknown as string, 1)).rejects.toThrow(/key must be a string/);
  });

  it('refuses a value that is not a computation and a bad instance index', () => {
    expect(() => createTestContext({ name: 'x' } as never)).toThrow(/made by defineComputation/);
    expect(() => createTestContext(counter, { index: 3, count: 3 })).toThrow(/index 3 must be below count 3/);
    expect(() => createTestContext(counter, { count: 0 })).toThrow(/count must be an integer >= 1/);
  });
});

describe('lifecycle', () => {
  it('runs init once before anything else, implicitly on first use', async () => {
    const calls: string[] = [];
    const c = defineComputation({
      name: 'life',
      istreams: ['in'],
      ostreams: [],
      init() {
        calls.push('init');
      },
      processRecord(_ctx, r) {
        calls.push(`record ${r.key}`);
      },
      destroy() {
        calls.push('destroy');
      },
    });
    const t = createTestContext(c);
    await t.send('in', 'a', null);
    await expect(t.init()).rejects.toThrow(/already ran/);
    await t.destroy();
    await t.destroy();
    expect(calls).toEqual(['init', 'record a', 'destroy']);
    await expect(t.send('in', 'b', null)).rejects.toThrow(/destroyed/);
  });

  it('reports a throwing init, and never calls processRecord or destroy after it', async () => {
    const calls: string[] = [];
    const c = defineComputation({
      name: 'broken',
      istreams: ['in'],
      ostreams: [],
      init() {
        throw new Error('no config');
      },
      processRecord() {
        calls.push('record');
      },
      destroy() {
        calls.push('destroy');
      },
    });
    const t = createTestContext(c);
    await expect(t.init()).rejects.toThrow('no config');
    await expect(t.send('in', 'k', 1)).rejects.toThrow(/did not start: its init threw/);
    await t.destroy();
    expect(calls).toEqual([]);
  });

  it('never runs two callbacks at once, even when a test forgets to await', async () => {
    let active = 0;
    let maxActive = 0;
    const order: string[] = [];
    const slow = defineComputation({
      name: 'slow',
      istreams: ['in'],
      ostreams: [],
      async processRecord(_ctx, r) {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((resolve) => setTimeout(resolve, r.value as number));
        order.push(r.key);
        active--;
      },
    });
    const t = createTestContext(slow);
    await Promise.all([t.send('in', 'first', 20), t.send('in', 'second', 1), t.send('in', 'third', 5)]);
    expect(maxActive).toBe(1);
    expect(order).toEqual(['first', 'second', 'third']);
  });
});

describe('logs', () => {
  it('captures pino lines with the instance bindings and the fake time', async () => {
    const t = createTestContext(counter, { now: 123, index: 2, count: 4 });
    await t.init();
    await t.advanceTo(500);
    t.context.log.warn({ key: 'a' }, 'late record');
    expect(t.logs).toEqual([
      expect.objectContaining({ level: 30, time: 123, msg: 'counter ready', window: WINDOW_MS, computation: 'counter', instance: 2, instanceId: 'counter-2-test' }),
      expect.objectContaining({ level: 40, time: 500, msg: 'late record', key: 'a', computation: 'counter', instance: 2 }),
    ]);
  });

  it('honours logLevel', async () => {
    const t = createTestContext(counter, { logLevel: 'warn' });
    await t.init();
    t.context.log.error('bad');
    expect(t.logs.map((l) => l.msg)).toEqual(['bad']);
  });
});

describe('traces (PROTOCOL.md, Traces)', () => {
  const A = '4bf92f3577b34da6a3ce929d0e0e4736';
  const B = '0af7651916cd43dd8448eb211c80319c';
  /** Relays each record at once and again after an await; sets a timer whose output must be untraced; throws on "boom". */
  const relay = defineComputation({
    name: 'trace-relay',
    istreams: ['in'],
    ostreams: ['out'],
    async processRecord(ctx, record) {
      if (record.key === 'boom') throw new Error('boom');
      ctx.produceRecord('out', `${record.key}-now`, null);
      ctx.setTimer(record.key, 10);
      await new Promise((r) => setTimeout(r, 1));
      ctx.produceRecord('out', `${record.key}-later`, null);
    },
    processTimer(ctx, key) {
      ctx.produceRecord('out', `${key}-timer`, null);
    },
  });

  it('gives what processRecord produces the trace of its record, across an await; timers, untraced records and a throw leave none behind', async () => {
    const t = createTestContext(relay, { now: 0 });
    await t.send('in', 'a', 1, { traceId: A });
    await t.send('in', 'u', 2);
    await expect(t.send('in', 'boom', 3, { traceId: B })).rejects.toThrow('boom');
    await t.send('in', 'b', 4, { traceId: B });
    await t.advanceTo(20);
    const traceOf = new Map(t.takeOutputs().map((o) => [o.key, o.traceId]));
    expect(Object.fromEntries(traceOf)).toEqual({
      'a-now': A, 'a-later': A, 'u-now': undefined, 'u-later': undefined, 'b-now': B, 'b-later': B,
      'a-timer': undefined, 'u-timer': undefined, 'b-timer': undefined,
    });
  });
});
