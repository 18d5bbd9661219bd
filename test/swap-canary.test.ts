/**
 * Canary swaps end to end: a new version on 10% of the key partitions beside
 * the running one, then a rollback of the canary, then a second canary that
 * is promoted. 400 keys, so the split can be compared with the partitions
 * the controller chose; the output is audited for loss, duplicates, order and
 * count continuity through every step.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PARTITIONS, partitionOf, type CanaryRecord } from '../protocol/index.js';
import { COUNTER } from './fixtures/swap-e2e-lib.js';
import { startCluster, waitFor, type Cluster } from './harness.js';
import { audit, fixture, NO_PROBLEMS, problems, settle, tapCounter, type OutRecord, type Tap } from './swap-helpers.js';

const KEYS = 400;
const PERCENT = 10;
/** Ticks (50 ms each) observed while the canary runs. */
const WINDOW_TICKS = 20;

describe('a 10% canary of a key-grouped counter', () => {
  let cluster: Cluster;
  let input: Tap<{ key: string; seq: number }>;
  let output: Tap<OutRecord>;

  /** The source's latest tick seen on the counter's input (every key gets every tick). */
  const latestTick = () => {
    let max = 0;
    for (let i = Math.max(0, input.records.length - 2 * KEYS); i < input.records.length; i++) max = Math.max(max, input.records[i]!.seq);
    return max;
  };

  /**
   * A tick the source published after the last change returned: the latest
   * one seen now, then four more (200 ms), so a tap lagging behind cannot
   * make a tick from before the change look recent.
   */
  async function tickAfterNow() {
    await cluster.client.nc.flush();
    const t = latestTick();
    await waitFor(() => latestTick() >= t + 4, { what: 'new ticks from the source' });
    return latestTick();
  }

  async function expectNothingLost() {
    const upTo = await settle(input.records, output.records);
    const a = audit(output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    expect(a.keys).toBe(KEYS);
    return a;
  }

  /** Codes that counted each key's records with from < seq <= to. */
  function codesByKey(from: number, to: number): Map<string, Set<string>> {
    const m = new Map<string, Set<string>>();
    for (const o of output.records) {
      if (o.seq <= from || o.seq > to) continue;
      let s = m.get(o.key);
      if (!s) m.set(o.key, (s = new Set()));
      s.add(o.code);
    }
    return m;
  }

  /** Runs a canary of code "b" and checks the split while it runs; returns the canary record. */
  async function runCanary(): Promise<CanaryRecord> {
    const { client } = cluster;
    const r = await client.swap(COUNTER, fixture('counter-b'), { canary: PERCENT });
    expect(r.result, r.error).toBe('ok');
    const rec = await client.computation(COUNTER);
    const canary = rec!.canary!;
    expect(canary).toMatchObject({ version: r.version, percent: PERCENT });
    // Partition granularity: round(32 * 10 / 100) = 3 of the 32 partitions.
    expect(canary.partitions).toHaveLength(Math.round((PARTITIONS * PERCENT) / 100));
    const shown = (await client.status()).computations.find((c) => c.name === COUNTER)!;
    expect(shown.canary).toMatchObject({ version: r.version, percent: PERCENT, partitions: canary.partitions });

    const from = await tickAfterNow();
    await waitFor(() => latestTick() >= from + WINDOW_TICKS, { what: `${WINDOW_TICKS} ticks under the canary` });
    const to = latestTick();
    await settle(input.records, output.records);

    const codes = codesByKey(from, to);
    expect(codes.size, 'every key counted while the canary runs').toBe(KEYS);
    const servedByTwo = [...codes].filter(([, s]) => s.size !== 1).map(([k, s]) => `${k}: ${[...s].join('+')}`);
    expect(servedByTwo, 'keys served by both versions').toEqual([]);
    const onCanary = [...codes].filter(([, s]) => s.has('b')).map(([k]) => k).sort();
    const expected = [...codes.keys()].filter((k) => canary.partitions.includes(partitionOf(k))).sort();
    expect(onCanary).toEqual(expected);
    const share = onCanary.length / KEYS;
    // 3/32 = 9.4% of partitions; FNV-1a spreads 400 keys close to that.
    expect(share).toBeGreaterThan(0.05);
    expect(share).toBeLessThan(0.15);
    console.log(`swap-canary.test: ${onCanary.length} of ${KEYS} keys (${(share * 100).toFixed(1)}%) on the canary, partitions ${canary.partitions.join(',')}`);
    await expectNothingLost();
    return canary;
  }

  /** After `tick`, every key is counted by `code` only. */
  async function expectAllOn(code: string) {
    const from = await tickAfterNow();
    await waitFor(() => latestTick() >= from + 5, { what: 'ticks after the change' });
    const to = latestTick();
    await settle(input.records, output.records);
    const codes = codesByKey(from, to);
    expect(codes.size).toBe(KEYS);
    const others = [...codes].filter(([, s]) => s.size !== 1 || !s.has(code)).map(([k, s]) => `${k}: ${[...s].join('+')}`);
    expect(others, `keys not counted by code "${code}" only`).toEqual([]);
  }

  beforeAll(async () => {
    cluster = await startCluster({ workers: 3 });
    const { client } = cluster;
    await client.deployFile(fixture('counter-a'), { instances: 2 });
    ({ input, output } = await tapCounter(client));
    await client.deployFile(fixture('source-wide'));
    await waitFor(() => output.records.length > 5 * KEYS, { what: 'counted records flowing', timeoutMs: 15_000 });
  });

  afterAll(async () => {
    await input?.stop();
    await output?.stop();
    await cluster?.stop();
  });

  it('routes ~10% of the keys to the new version, each key to one version, and rolls the canary back losing nothing', async () => {
    const { client } = cluster;
    const before = (await client.computation(COUNTER))!;
    const canary = await runCanary();

    const rb = await client.rollback(COUNTER);
    expect(rb.result, rb.error).toBe('ok');
    const after = (await client.computation(COUNTER))!;
    expect(after.canary).toBeUndefined();
    expect(after.version).toBe(before.version);
    expect(after.placements.every((p) => p.partitions === undefined)).toBe(true);
    await expectAllOn('a');
    const a = await expectNothingLost();
    // Keys of the canary went a -> b -> a, counting on.
    const canaryKeys = Array.from({ length: KEYS }, (_, k) => `key-${k}`).filter((k) => canary.partitions.includes(partitionOf(k)));
    expect(a.continuedAcrossVersions).toBe(2 * canaryKeys.length);

    const history = await client.history(COUNTER);
    expect(history.slice(-2).map((e) => [e.action, e.result])).toEqual([['canary', 'ok'], ['rollback', 'ok']]);
  });

  it('promotes a second canary to every key, losing nothing', async () => {
    const { client } = cluster;
    const canary = await runCanary();
    const p = await client.promote(COUNTER);
    expect(p.result, p.error).toBe('ok');
    const rec = (await client.computation(COUNTER))!;
    expect(rec.canary).toBeUndefined();
    expect(rec.version).toBe(canary.version);
    expect(rec.placements).toHaveLength(2);
    await expectAllOn('b');
    await expectNothingLost();
    const status = await client.status();
    const counter = status.computations.find((c) => c.name === COUNTER)!;
    await waitFor(async () => {
      const s = (await client.status()).computations.find((c) => c.name === COUNTER)!;
      return s.instances.length === 2 && s.instances.every((i) => i.state === 'running' && i.version === canary.version);
    }, { what: () => `both instances running v${canary.version} (status: ${JSON.stringify(counter.instances.map((i) => [i.version, i.state]))})` });
    const history = await client.history(COUNTER);
    expect(history.slice(-2).map((e) => [e.action, e.result])).toEqual([['canary', 'ok'], ['promote', 'ok']]);
  });
});
