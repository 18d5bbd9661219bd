/**
 * ThreadRunner directly: a bundled computation artifact runs in its own
 * thread, fed encoded batches; outputs come back in produce order, failures
 * with their batch and index, timers through nextTimerAt, state through
 * snapshot/init(from), and a callback in `while (true) {}` is ended by
 * terminating the thread, after which the runner starts again from a snapshot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeBatch, type WireRecord } from '../protocol/index.js';
import { bundleFile } from '../runtime/client/bundle.js';
import { TerminatedError, ThreadRunner } from '../runtime/runners/thread.js';

const dir = mkdtempSync(join(tmpdir(), 'topo-runner-thread-'));
let file: string;

let bseq = 0;
function batch(recs: [key: string, value: unknown][], seq0 = 1): { data: Uint8Array; stream: string } {
  const wire: WireRecord[] = recs.map(([k, v], i) => [k, v, Date.now(), seq0 + i]);
  return { data: encodeBatch({ v: 1, src: 'p-1', stream: 'heavy-in', bseq: ++bseq, recs: wire }), stream: 'heavy-in' };
}

const runners: ThreadRunner[] = [];
function runner(): ThreadRunner {
  const r = new ThreadRunner({ file, instance: { index: 0, count: 1, id: 'heavy-counter-0-t' } });
  runners.push(r);
  return r;
}

beforeAll(async () => {
  file = join(dir, 'heavy-counter.mjs');
  writeFileSync(file, await bundleFile('test/fixtures/heavy-counter.ts'));
});

afterAll(async () => {
  await Promise.allSettled(runners.map((r) => r.terminate()));
  rmSync(dir, { recursive: true, force: true });
});

describe('ThreadRunner', () => {
  it('runs init in a thread and returns outputs in produce order, with per-batch counts for credit', async () => {
    const r = runner();
    const c0 = await r.init();
    expect(c0.failures).toEqual([]);
    expect(c0.stateKeys).toBe(1); // 'inits'
    const c = await r.activate({
      batches: [batch([['a', { n: 1 }], ['b', { n: 2 }], ['a', { n: 3 }]]), batch([['a', { n: 4 }]], 4)],
      now: Date.now(),
    });
    expect(c.records).toBe(4);
    expect(c.failures).toEqual([]);
    expect(c.batches).toEqual([{ src: 'p-1', records: 3 }, { src: 'p-1', records: 1 }]);
    expect(c.outputs).toEqual([
      ['heavy-out', 'a', { n: 1, count: 1, thread: true }],
      ['heavy-out', 'b', { n: 2, count: 1, thread: true }],
      ['heavy-out', 'a', { n: 3, count: 2, thread: true }],
      ['heavy-out', 'a', { n: 4, count: 3, thread: true }],
    ]);
    expect(c.stateKeys).toBe(3);
    await r.destroy();
    expect(r.alive).toBe(false);
  });

  it('reports failures with their batch and index and the record, and keeps going; a bad batch is a decode failure', async () => {
    const r = runner();
    await r.init();
    const c = await r.activate({
      batches: [batch([['a', { n: 1 }], ['bad', { n: 2 }], ['a', { n: 3 }]]), { data: new Uint8Array([0xc1, 1, 2]), stream: 'heavy-in' }, batch([['bad', { n: 9 }]], 7)],
      now: Date.now(),
    });
    expect(c.outputs.map((o) => (o[2] as { n: number }).n)).toEqual([1, 3]);
    expect(c.failures).toHaveLength(3);
    expect(c.failures[0]).toMatchObject({ where: 'processRecord', batch: 0, index: 1, error: 'bad record 2', record: { key: 'bad', value: { n: 2 }, seq: 2 } });
    expect(c.failures[1]).toMatchObject({ where: 'decode', batch: 1 });
    expect(c.failures[2]).toMatchObject({ where: 'processRecord', batch: 2, index: 0, error: 'bad record 7' });
    expect(c.batches).toEqual([{ src: 'p-1', records: 3 }, null, { src: 'p-1', records: 1 }]);
    // stopOnFailure (probation): stops at the first failure.
    const s = await r.activate({ batches: [batch([['a', { n: 1 }], ['bad', { n: 2 }], ['a', { n: 3 }]])], now: Date.now(), stopOnFailure: true });
    expect(s.stopped).toBe(true);
    expect(s.outputs).toHaveLength(1);
    expect(s.batches).toEqual([{ src: 'p-1', records: 2 }]);
  });

  it('fires timers due by `now` and reports the next one; ctx.log lines come back', async () => {
    const r = runner();
    await r.init();
    const at = Date.now() + 60_000;
    const c = await r.activate({ batches: [batch([['x', { n: 1, timerAt: at }], ['y', { n: 2, timerAt: at + 5 }]])], now: Date.now() });
    expect(c.nextTimerAt).toBe(at);
    expect(c.timers).toBe(2);
    const early = await r.activate({ batches: [], now: at - 1 });
    expect(early.outputs).toEqual([]);
    const fired = await r.activate({ batches: [], now: at + 1 });
    expect(fired.outputs).toEqual([['heavy-ticks', 't-x', { atMs: at }]]);
    expect(fired.nextTimerAt).toBe(at + 5);
    expect(fired.logs?.map((l) => JSON.parse(l) as { msg: string; key: string })).toMatchObject([{ msg: 'tick', key: 't-x' }]);
  });

  it('snapshots and restores state and timers (all, or by partition)', async () => {
    const r = runner();
    await r.init();
    const at = Date.now() + 60_000;
    await r.activate({ batches: [batch([['a', { n: 1 }], ['a', { n: 2 }], ['b', { n: 3, timerAt: at }]])], now: Date.now() });
    const snap = await r.snapshot();
    expect(new Map(snap.state.entries)).toEqual(new Map<string, unknown>([['inits', 1], ['a', 2], ['b', 1]]));
    expect(snap.timers).toEqual([['t-b', at]]);
    const part = await r.snapshot([0]);
    expect(part.state.entries.length).toBeLessThan(snap.state.entries.length);

    const r2 = runner();
    const c = await r2.init(snap, { runInit: false });
    expect(c.stateKeys).toBe(3);
    expect(c.nextTimerAt).toBe(at);
    const out = await r2.activate({ batches: [batch([['a', { n: 4 }]])], now: Date.now() });
    expect(out.outputs).toEqual([['heavy-out', 'a', { n: 4, count: 3, thread: true }]]);
    // init runs again on a restart that asks for it, on the restored state.
    await r2.init(snap);
    expect(new Map((await r2.snapshot()).state.entries).get('inits')).toBe(2);
  });

  it('ends a callback stuck in while(true) by terminating its thread, within a bound, and starts again from a snapshot', async () => {
    const r = runner();
    await r.init();
    await r.activate({ batches: [batch([['a', { n: 1 }], ['a', { n: 2 }]])], now: Date.now() });
    const snap = await r.snapshot();
    const stuck = r.activate({ batches: [batch([['a', { n: 3 }], ['hang', { n: 4 }], ['a', { n: 5 }]])], now: Date.now() });
    stuck.catch(() => undefined);
    // The progress in shared memory names the stuck record while it spins.
    await expect.poll(() => r.progress(), { timeout: 5_000 }).toMatchObject({ phase: 'processRecord', batch: 0, index: 1 });
    const t0 = performance.now();
    await r.terminate();
    const ms = performance.now() - t0;
    await expect(stuck).rejects.toBeInstanceOf(TerminatedError);
    expect(ms).toBeLessThan(1_000);
    console.log(`terminate() of a thread in while(true): ${ms.toFixed(1)} ms`);
    expect(r.alive).toBe(false);
    await expect(r.activate({ batches: [], now: Date.now() })).rejects.toBeInstanceOf(TerminatedError);

    await r.init(snap, { runInit: false });
    const c = await r.activate({ batches: [batch([['a', { n: 6 }]])], now: Date.now() });
    expect(c.outputs).toEqual([['heavy-out', 'a', { n: 6, count: 3, thread: true }]]);
    expect(r.terminations).toBe(1);
  });

  it('gives each instance its own thread', async () => {
    const a = runner();
    const b = runner();
    await Promise.all([a.init(), b.init()]);
    const who = async (r: ThreadRunner) => ((await r.activate({ batches: [batch([['whoami', {}]])], now: Date.now() })).outputs[0]![2] as { threadId: number }).threadId;
    const [ta, tb] = await Promise.all([who(a), who(b)]);
    expect(ta).toBeGreaterThan(0);
    expect(tb).toBeGreaterThan(0);
    expect(ta).not.toBe(tb);
    expect(await who(a)).toBe(ta); // pinned: the same thread every time
  });
});
