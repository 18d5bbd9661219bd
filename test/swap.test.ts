/**
 * Live hot swap end to end, through the real controller and client: a
 * sequence-numbered source (8,000 records/s) feeds a key-grouped counter (two
 * instances), whose output the test taps and audits per key against the
 * counter's tapped input. Three worker processes: the source on one, the
 * counter's instances on the two others.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SwapRolledBackError, type SwapReply } from '../protocol/index.js';
import { swapReplyOf } from '../runtime/client/index.js';
import { COUNTER, SOURCE } from './fixtures/swap-e2e-lib.js';
import { startCluster, waitFor, type Cluster } from './harness.js';
import { audit, fixture, NO_PROBLEMS, problems, settle, tapCounter, type OutRecord, type Tap } from './swap-helpers.js';

const SWAPS = 20;
const KEYS = 40;

describe('live hot swap of a key-grouped counter under load', () => {
  let cluster: Cluster;
  let input: Tap<{ key: string; seq: number }>;
  let output: Tap<OutRecord>;
  /** Code running now ('a' or 'b'). */
  let current = 'a';

  /** Waits until `code` shows up in the output after index `from`. */
  const producing = (code: string, from: number) =>
    waitFor(() => {
      const out = output.records;
      for (let i = from; i < out.length; i++) if (out[i]!.code === code) return true;
      return false;
    }, { what: `output counted by code "${code}"`, timeoutMs: 10_000 });

  /** Everything the source published so far was counted exactly once, in order, with counts continuing. */
  async function expectNothingLost() {
    const upTo = await settle(input.records, output.records);
    const a = audit(output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    expect(a.keys).toBe(KEYS);
    expect(input.malformed + output.malformed).toBe(0);
    return a;
  }

  /** A swap to a broken version: rolled back, the reason in the error, the reply and history; the old code keeps counting. */
  async function expectRolledBack(file: string, reason: RegExp, probation?: { callbackTimeoutMs: number }) {
    const { client } = cluster;
    const mark = output.records.length;
    const err = await client.swap(COUNTER, fixture(file), probation ? { probation } : {}).then(
      (r) => new Error(`swap to ${file} succeeded (v${r.version}) but should have been rolled back`),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SwapRolledBackError);
    expect((err as Error).message).toMatch(reason);
    const reply = swapReplyOf(err) as SwapReply;
    expect(reply.result).toBe('rolled-back');
    expect(reply.error).toMatch(reason);
    expect(reply.steps.some((s) => s.step === 'abort' && s.ok)).toBe(true);
    const entry = (await client.history(COUNTER)).at(-1)!;
    expect(entry).toMatchObject({ action: 'swap', result: 'rolled-back', version: reply.version, fromVersion: reply.fromVersion });
    expect(entry.error).toMatch(reason);
    const status = await client.status();
    const counter = status.computations.find((c) => c.name === COUNTER)!;
    expect(counter.version).toBe(reply.fromVersion);
    await producing(current, mark);
    await expectNothingLost();
  }

  beforeAll(async () => {
    cluster = await startCluster({ workers: 3 });
    const { client } = cluster;
    await client.deployFile(fixture('counter-a'), { instances: 2 });
    ({ input, output } = await tapCounter(client));
    await client.deployFile(fixture('source'));
    await waitFor(() => output.records.length > 2_000, { what: 'counted records flowing', timeoutMs: 15_000 });
  });

  afterAll(async () => {
    await input?.stop();
    await output?.stop();
    await cluster?.stop();
  });

  it('runs the source and the two counter instances on three different workers', async () => {
    const status = await cluster.client.status();
    const workersOf = (name: string) => status.computations.find((c) => c.name === name)!.instances.map((i) => i.workerId);
    expect(workersOf(COUNTER)).toHaveLength(2);
    expect(new Set([...workersOf(COUNTER), ...workersOf(SOURCE)]).size).toBe(3);
  });

  it(`swaps ${SWAPS} times in a row: nothing lost or duplicated, per-key order kept, counts continue across versions`, async () => {
    const { client } = cluster;
    const replies: SwapReply[] = [];
    const before = (await client.status()).computations.find((c) => c.name === COUNTER)!.version;
    for (let i = 0; i < SWAPS; i++) {
      const code = current === 'a' ? 'b' : 'a';
      const mark = output.records.length;
      const r = await client.swap(COUNTER, fixture(`counter-${code}`));
      expect(r.result, r.error).toBe('ok');
      expect(r.version).toBeGreaterThan(r.fromVersion);
      replies.push(r);
      current = code;
      await producing(code, mark);
    }
    const a = await expectNothingLost();
    // Every key saw every version: 20 code changes per key, each continuing the count of the code before.
    expect(a.continuedAcrossVersions).toBe(SWAPS * KEYS);

    for (const r of replies) {
      expect(r.pauseMs).toBeTypeOf('number');
      expect(r.loadMs).toBeTypeOf('number');
      expect(r.steps.map((s) => s.step)).toEqual(expect.arrayContaining(['preload', 'pause', 'release', 'adopt', 'resume', 'health', 'commit']));
    }
    const history = (await client.history(COUNTER)).filter((e) => e.action === 'swap');
    expect(history.slice(-SWAPS).map((e) => e.result)).toEqual(Array(SWAPS).fill('ok'));
    expect(history.slice(-SWAPS).map((e) => e.version)).toEqual(replies.map((r) => r.version));
    for (const e of history.slice(-SWAPS)) expect(e.pauseMs).toBeTypeOf('number');
    const status = await client.status();
    const counter = status.computations.find((c) => c.name === COUNTER)!;
    expect(counter.version).toBe(replies.at(-1)!.version);
    expect(counter.version).toBeGreaterThanOrEqual(before + SWAPS);
    expect(counter.instances.map((i) => i.state)).toEqual(['running', 'running']);
    const pauses = replies.map((r) => r.pauseMs!).sort((x, y) => x - y);
    console.log(`swap.test: ${SWAPS} swaps, pause p50 ${pauses[Math.floor(SWAPS / 2)]} ms, max ${pauses.at(-1)} ms; ` +
      `${a.records} records audited over ${a.keys} keys`);
  });

  it('rolls back a new version whose init throws, losing nothing', async () => {
    await expectRolledBack('counter-init-throws', /init of "swap-counter" v\d+ threw: counter init-throws: config missing/);
  });

  it('rolls back a new version that throws on every record, losing nothing', async () => {
    await expectRolledBack('counter-throws', /processRecord of "swap-counter" v\d+ threw: counter throws cannot count key-\d+/);
  });

  it('rolls back a new version whose processRecord never settles, losing nothing', async () => {
    await expectRolledBack('counter-hangs', /processRecord of "swap-counter" v\d+ hung: processRecord did not return within 500 ms/, { callbackTimeoutMs: 500 });
  });
});
