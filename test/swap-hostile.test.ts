/**
 * Hot swap outside the happy path, end to end through the real controller,
 * workers and client: a backlog that takes longer to drain than a step, a
 * version that hangs after passing its probation, a computation that reads
 * its own output, and a controller killed with -9 in the middle of a swap.
 * Every case audits the output per key: nothing lost, duplicated or
 * reordered, and the counts carry on across versions.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { buckets, kvKeys, SwapRolledBackError } from '../protocol/index.js';
import { swapReplyOf } from '../runtime/client/index.js';
import { distFile } from '../runtime/client/paths.js';
import { isAlive } from '../runtime/client/processes.js';
import { COUNTER, SOURCE } from './fixtures/swap-e2e-lib.js';
import { RING, RING_STREAM, TOKENS, type Token } from './fixtures/ring-lib.js';
import { waitFor, type Cluster } from './harness.js';
import { audit, fixture, NO_PROBLEMS, problems, settle, tapCounter, tapStream, type OutRecord, type Tap, perTest } from './swap-helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const run = perTest();
const taps = run.taps;

/** Stops the source, waits until the counter has counted all it published, and audits every key. */
async function expectNothingLost(c: Cluster, input: Tap<{ key: string; seq: number }>, output: Tap<OutRecord>, keys: number, timeoutMs = 60_000) {
  await c.client.kill(SOURCE);
  const upTo = await settle(input.records, output.records, timeoutMs);
  const a = audit(output.records, upTo);
  expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
  expect(a.keys).toBe(keys);
  return a;
}

async function counterUnderLoad(opts: { counter: string; source: string; instances: number; env?: NodeJS.ProcessEnv; workers?: number }) {
  const c = (await run.cluster({ workers: opts.workers ?? 3, ...(opts.env ? { env: opts.env } : {}) }));
  await c.client.deployFile(fixture(opts.counter), { instances: opts.instances });
  const { input, output } = await tapCounter(c.client);
  taps.push(input as Tap<unknown>, output as Tap<unknown>);
  await c.client.deployFile(fixture(opts.source));
  await waitFor(() => output.records.length > 500, { what: 'counted records flowing', timeoutMs: 15_000 });
  return { c, input, output };
}

/** Records received by the counter but not yet processed, from its instances' heartbeats. */
async function queuedBatches(c: Cluster): Promise<number> {
  const s = await c.client.status();
  return (s.computations.find((x) => x.name === COUNTER)?.instances ?? []).reduce((n, i) => n + (i.queued ?? 0), 0);
}

describe('a swap of a computation with a backlog', () => {
  it('drains for longer than a step takes, or rolls back within its budget, and never loses the backlog or the state', async () => {
    const { c, input, output } = await counterUnderLoad({ counter: 'counter-slow', source: 'source-light', instances: 1 });
    // 2,000 records/s in, about 800/s counted: the queue grows by more than a thousand records a second.
    await waitFor(async () => (await queuedBatches(c)) > 60, { what: 'a backlog of more than 60 batches', timeoutMs: 20_000 });

    // A budget too small for that backlog: rolled back before anything is destroyed.
    const err = await c.client.swap(COUNTER, fixture('counter-a'), { drainBudgetMs: 500 }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SwapRolledBackError);
    expect((err as Error).message).toMatch(/did not drain within its budget of 500 ms/);
    expect(swapReplyOf(err)!.steps.some((s) => s.step === 'abort' && s.ok)).toBe(true);

    // The default budget: the release drains for longer than the old fixed 5 s step timeout, and the swap goes through.
    // 2,000 records/s in and about 700/s out: 5 s more make a backlog of several thousand records, more than 5 s of draining.
    await sleep(5_000);
    expect(await queuedBatches(c)).toBeGreaterThan(60);
    const at = Date.now();
    const reply = await c.client.swap(COUNTER, fixture('counter-a'));
    expect(reply.result).toBe('ok');
    const release = reply.steps.find((s) => s.step === 'release')!;
    expect(release.ok).toBe(true);
    console.log(`swap-hostile: backlog swap took ${Date.now() - at} ms, release ${release.ms} ms: ${release.detail}`);
    expect(release.ms).toBeGreaterThan(5_000);

    const a = await expectNothingLost(c, input, output, 10);
    expect(a.continuedAcrossVersions).toBeGreaterThan(0);
  }, 180_000);
});

describe('a version that hangs after passing its probation', () => {
  it('shows as stuck in status, and a rollback hands its unprocessed input and state to the previous version', async () => {
    const { c, input, output } = await counterUnderLoad({
      counter: 'counter-a', source: 'source', instances: 2, env: { TOPO_STUCK_AFTER_MS: '1500' },
    });
    const swapped = await c.client.swap(COUNTER, fixture('counter-hangs-later'));
    expect(swapped.result).toBe('ok');

    const stuck = await waitFor(async () => {
      const s = await c.client.status();
      const insts = s.computations.find((x) => x.name === COUNTER)!.instances;
      return insts.length === 2 && insts.every((i) => i.state === 'stuck') ? insts : undefined;
    }, { what: 'both instances of the hung version shown as stuck', timeoutMs: 20_000 });
    for (const i of stuck) {
      expect(i.stuck).toMatchObject({ callback: 'processRecord', count: 1 });
      expect(i.stuck!.forMs).toBeGreaterThanOrEqual(1_500);
    }

    const back = await c.client.rollback(COUNTER);
    expect(back.result).toBe('ok');
    expect(back.steps.find((s) => s.step === 'release')!.detail).toMatch(/record\(s\) of a stuck callback handed over/);
    const mark = output.records.length;
    await waitFor(() => output.records.slice(mark).some((o) => o.code === 'a'), { what: 'the previous code counting again' });
    const status = await c.client.status();
    expect(status.computations.find((x) => x.name === COUNTER)!.instances.map((i) => i.state)).toEqual(['running', 'running']);
    await expectNothingLost(c, input, output, 40);
  }, 120_000);
});

describe('a rollback after one new instance passed its probation and then threw', () => {
  it('leaves no dead letter for records the old version then processed, and no error on the healthy instances', async () => {
    const { c, input, output } = await counterUnderLoad({ counter: 'counter-a', source: 'source', instances: 2 });
    const err = await c.client.swap(COUNTER, fixture('counter-split'), { probation: { callbackTimeoutMs: 1_500 } }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SwapRolledBackError);
    expect((err as Error).message).toMatch(/hung/);
    const a = await expectNothingLost(c, input, output, 40);
    expect(a.records).toBeGreaterThan(1_000);
    const letters: unknown[] = [];
    for await (const d of c.client.deadLetters(COUNTER)) letters.push(d);
    expect(letters).toEqual([]);
    const insts = (await c.client.status()).computations.find((x) => x.name === COUNTER)!.instances;
    expect(insts.map((i) => [i.state, i.lastError, i.metrics.errors])).toEqual([['running', undefined, 0], ['running', undefined, 0]]);
  }, 120_000);
});

describe('a computation that reads its own output (a self-loop)', () => {
  it('loses and duplicates no token over 5 swaps', async () => {
    const c = (await run.cluster({ workers: 2 }));
    await c.client.deployFile('test/fixtures/ring-a.ts', { instances: 2 });
    const seen = await tapStream(c.client, RING_STREAM, (key, value) => ({ key, ...(value as Token) }));
    taps.push(seen as Tap<unknown>);
    await c.client.deployFile('test/fixtures/ring-seed.ts');
    await waitFor(() => new Set(seen.records.map((r) => r.key)).size === TOKENS, { what: `all ${TOKENS} tokens on the ring` });

    const alive = async (from: number): Promise<void> => {
      await waitFor(() => new Set(seen.records.slice(from).map((r) => r.key)).size === TOKENS, {
        what: () => `every token moving after mark ${from} (${new Set(seen.records.slice(from).map((r) => r.key)).size} of ${TOKENS})`,
        timeoutMs: 10_000,
      });
    };
    for (let i = 0; i < 5; i++) {
      const mark = seen.records.length;
      const reply = await c.client.swap(RING, `test/fixtures/ring-${i % 2 === 0 ? 'b' : 'a'}.ts`);
      expect(reply.result).toBe('ok');
      await alive(mark);
    }
    await sleep(500);
    // Each token's hops: 1, 2, 3, ... with none twice and none missing.
    const hops = new Map<string, number[]>();
    for (const r of seen.records) {
      let l = hops.get(r.key);
      if (!l) hops.set(r.key, (l = []));
      l.push(r.hop);
    }
    let duplicated = 0;
    let missing = 0;
    for (const l of hops.values()) {
      const sorted = [...l].sort((x, y) => x - y);
      duplicated += sorted.length - new Set(sorted).size;
      missing += sorted.at(-1)! + 1 - new Set(sorted).size;
    }
    expect({ tokens: hops.size, duplicated, missing }).toEqual({ tokens: TOKENS, duplicated: 0, missing: 0 });
  }, 120_000);
});

describe('a controller killed with -9 mid-swap', () => {
  it('costs no record: the workers roll back by themselves before the upstreams resume, and the swap learns its outcome from history', async () => {
    const { c, input, output } = await counterUnderLoad({ counter: 'counter-slow', source: 'source-light', instances: 1 });
    await waitFor(async () => (await queuedBatches(c)) > 60, { what: 'a backlog of more than 60 batches', timeoutMs: 20_000 });
    await sleep(4_000); // a backlog of thousands of records: the release drains it for seconds
    const controllerPid = c.topology.run.pids.controller;
    const swapping = c.client.swap(COUNTER, fixture('counter-a')).then((r) => r, (e: unknown) => e);
    // The release drains that backlog for seconds: kill the controller while it does. Under load, bundling and
    // the preload may take longer than a fixed wait: first the swap's journal with its pause step (upstreams paused).
    const state = await new Kvm(c.client.nc).open(buckets.state);
    await waitFor(async () => {
      const e = await state.get(kvKeys.swap(COUNTER));
      return e?.operation === 'PUT' && (e.json() as { history?: { steps?: { step: string }[] } }).history?.steps?.some((st) => st.step === 'pause');
    }, { what: 'the swap journaled with its upstreams paused', timeoutMs: 20_000, intervalMs: 20 });
    await sleep(500);
    expect(await queuedBatches(c)).toBeGreaterThan(0);
    process.kill(controllerPid, 'SIGKILL');
    await waitFor(() => !isAlive(controllerPid), { what: 'the controller gone' });

    // Left dead for longer than the swap lease and the upstream pause lease: the workers roll back and keep counting.
    await sleep(8_000);
    const mark = output.records.length;
    await waitFor(() => output.records.length > mark + 200, { what: 'the old version counting again with no controller', timeoutMs: 15_000 });

    // Started again: it recovers the journal and records the outcome; the interrupted swap reads it from history.
    const restarted = spawn(process.execPath, [distFile('controller'), '--nats', c.url], { stdio: 'ignore' });
    try {
      const outcome = await swapping;
      expect(outcome).toBeInstanceOf(SwapRolledBackError);
      expect((outcome as Error).message).toMatch(/controller stopped|lease expired/);
      const entry = (await c.client.history(COUNTER)).at(-1)!;
      expect(entry).toMatchObject({ action: 'swap', result: 'rolled-back' });
      await waitFor(async () => (await c.client.status()).computations.find((x) => x.name === COUNTER)!.instances.length === 1, {
        what: 'the counter in status again',
      });
      await expectNothingLost(c, input, output, 10, 90_000);
    } finally {
      restarted.kill('SIGKILL');
    }
  }, 180_000);
});
