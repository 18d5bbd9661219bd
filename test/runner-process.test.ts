/**
 * ProcessRunner (runtime/runners/process.ts) against operator processes that
 * behave and that do not: every frame from an operator is checked, and one
 * that does not fit ends that process with an error naming what was wrong,
 * never a half-applied completion. The operator here is a small Node script
 * (test/fixtures/operators/scripted.mjs) told how to misbehave.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeBatch, validateMetadata } from '../protocol/index.js';
import { CrashedError, ProcessRunner } from '../runtime/runners/process.js';
import { WarmOperators } from '../runtime/worker/hosted.js';
import { TerminatedError } from '../runtime/runners/runner.js';

const script = join(import.meta.dirname, 'fixtures', 'operators', 'scripted.mjs');
const dir = mkdtempSync(join(tmpdir(), 'topo-runner-process-'));
const runners: ProcessRunner[] = [];

afterEach(async () => {
  for (const r of runners.splice(0)) await r.close();
});

function runner(mode: string, lines: string[] = []): ProcessRunner {
  const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  const r = new ProcessRunner({
    launch: { kind: 'node', command: process.execPath, args: [script], cwd: join(import.meta.dirname, '..'), env: { MODE: mode } },
    computation: 'scripted',
    instance: { index: 0, count: 1, id: `scripted-0-${mode}` },
    metadata: validateMetadata({ name: 'scripted', istreams: ['in'], ostreams: ['out'] }),
    log,
    progressFile: join(dir, `${mode}.progress`),
    helloTimeoutMs: 3_000,
  });
  runners.push(r);
  return r;
}

const batch = (src: string, keys: string[]) => ({
  stream: 'in',
  data: encodeBatch({ v: 1, src, stream: 'in', bseq: 1, recs: keys.map((k, i) => [k, { n: i }, Date.now(), i + 1] as [string, unknown, number, number]) }),
});

describe('ProcessRunner with a well-behaved operator', () => {
  it('starts it, restores state, runs activations, snapshots and destroys it; its stdout, stderr and logs reach the log', async () => {
    const lines: string[] = [];
    const r = runner('good', lines);
    const c0 = await r.init({ state: { entries: [['a', 5]] }, timers: [] });
    expect(c0.logs?.map((l) => JSON.parse(l).msg)).toEqual(['scripted init']);
    const c = await r.activate({ batches: [batch('p1', ['a', 'b']), batch('p2', ['a'])], now: Date.now() });
    expect(c.records).toBe(3);
    expect(c.batches).toEqual([{ src: 'p1', records: 2 }, { src: 'p2', records: 1 }]);
    expect(c.outputs.map(([s, k]) => `${s}/${k}`)).toEqual(['out/a', 'out/b', 'out/a']);
    expect(await r.snapshot()).toEqual({ state: { entries: [['a', 7], ['b', 1]] }, timers: [] });
    await r.destroy();
    expect(r.alive).toBe(false);
    const text = lines.join('');
    expect(text).toContain('scripted operator up in mode good');
    expect(text).toContain('a line on stderr');
  });
});

describe('ProcessRunner refuses what an operator must not send', () => {
  const cases: [mode: string, error: RegExp, when: 'init' | 'activate'][] = [
    ['bad-hello', /sent an invalid hello: protocol: must be 1/, 'init'],
    ['wrong-name', /declares metadata .*someone-else.*, not the deployed/, 'init'],
    ['garbage', /broke the operator protocol: frame length 0 is out of range/, 'activate'],
    ['wrong-id', /sent a reply with id \d+, while request \d+ \(activate\) was open/, 'activate'],
    ['undeclared', /output on "elsewhere", which is not an ostream of "scripted" \(declared: out\)/, 'activate'],
    ['die', /exited with code 9/, 'activate'],
  ];
  for (const [mode, error, when] of cases) {
    it(`${mode}: a clear error at ${when}, and the process is gone`, async () => {
      const r = runner(mode);
      if (when === 'init') {
        await expect(r.init()).rejects.toThrow(error);
      } else {
        await r.init();
        const pid = r.pid!;
        const err = await r.activate({ batches: [batch('p1', ['a'])], now: Date.now() }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(CrashedError);
        expect((err as Error).message).toMatch(error);
        expect(r.crashCount).toBe(1);
        await new Promise((res) => setTimeout(res, 100));
        expect(() => process.kill(pid, 0)).toThrow();
      }
      expect(r.alive).toBe(false);
      // Nothing is sent to a process that is gone: the next call says so at once.
      await expect(r.activate({ batches: [], now: Date.now() })).rejects.toBeInstanceOf(TerminatedError);
    });
  }

  it('no hello within the limit: the start fails naming it', async () => {
    const r = runner('no-hello');
    await expect(r.init()).rejects.toThrow(/sent no hello within 3000 ms/);
  });

  it('a hung call ends with terminate(): the call rejects as terminated and the process is killed', async () => {
    const r = runner('hang');
    await r.init();
    const pid = r.pid!;
    const call = r.activate({ batches: [batch('p1', ['a'])], now: Date.now() }).catch((e: unknown) => e);
    await new Promise((res) => setTimeout(res, 100));
    expect(r.progress().phase).toBe('processRecord');
    await r.terminate();
    expect(await call).toBeInstanceOf(TerminatedError);
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('restarts back off after crashes', async () => {
    const r = runner('die');
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      await r.init();
      times.push(Date.now() - t0);
      await r.activate({ batches: [batch('p1', ['a'])], now: Date.now() }).catch(() => undefined);
    }
    // 0 crashes before the first start, then 1 (100 ms) and 2 (200 ms).
    expect(times[1]!).toBeGreaterThanOrEqual(100);
    expect(times[2]!).toBeGreaterThanOrEqual(200);
    expect(r.crashCount).toBe(3);
  });
});

describe('warm operator processes (started by a swap\'s preload, taken by its adopts)', () => {
  const launch = (mode: string) => ({ kind: 'node', command: process.execPath, args: [script], cwd: join(import.meta.dirname, '..'), env: { MODE: mode } });
  const metadata = validateMetadata({ name: 'scripted', istreams: ['in'], ostreams: ['out'] });

  it('a warm runner keeps its process: bound to an instance, its init uses it (same pid) and it runs', async () => {
    const lines: string[] = [];
    const r = new ProcessRunner({ launch: launch('good'), computation: 'scripted', metadata, log: pino({}, { write: () => undefined }), progressFile: join(dir, 'warm.progress') });
    runners.push(r);
    await r.warm();
    const pid = r.pid;
    expect(r.warmAndAlive).toBe(true);
    r.bind({ instance: { index: 0, count: 1, id: 'scripted-0-warm' }, log: pino({}, { write: (l: string) => void lines.push(l) }) });
    await r.init({ state: { entries: [['a', 1]] }, timers: [] });
    expect(r.pid).toBe(pid);
    expect(r.starts).toBe(1);
    const c = await r.activate({ batches: [batch('p1', ['a'])], now: Date.now() });
    expect(c.outputs).toHaveLength(1);
    expect(await r.snapshot()).toEqual({ state: { entries: [['a', 2]] }, timers: [] });
  });

  it('the pool starts as many as asked, hands each out once, and a start that fails fails the warm-up', async () => {
    const pool = new WarmOperators(dir, pino({}, { write: () => undefined }));
    try {
      await pool.warm('sha1', metadata, launch('good'), 2);
      const a = pool.take('sha1', 'scripted');
      const b = pool.take('sha1', 'scripted');
      expect(a?.warmAndAlive && b?.warmAndAlive).toBe(true);
      expect(a!.pid).not.toBe(b!.pid);
      expect(pool.take('sha1', 'scripted')).toBeUndefined();
      expect(pool.take('sha2', 'scripted')).toBeUndefined();
      runners.push(a!, b!);
      await expect(pool.warm('sha3', metadata, launch('bad-hello'), 1)).rejects.toThrow(/invalid hello/);
      expect(pool.take('sha3', 'scripted')).toBeUndefined();
    } finally {
      await pool.closeAll();
    }
  });
});

process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
