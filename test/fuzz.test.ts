/**
 * Hostile input on every subject, end to end: a key-grouped counter (two
 * instances) under load from a sequence-numbered source, on three worker
 * processes, while about 20,000 seeded random and mutated messages
 * (bench/chaos/fuzz.ts) go to its data, credit, worker control, heartbeat,
 * register and API subjects; then a swap. The topology must keep running,
 * every record of the real source must be counted exactly once and in
 * order per key, the swap must succeed, and the RSS of every process
 * (controller, workers, nats-server) must grow by less than 30% over its
 * value after a warm-up (which includes one swap).
 *
 * `npm run chaos` runs the same generator with 10^6 messages.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COUNTER, SOURCE, SWAP_IN, SWAP_OUT } from './fixtures/swap-e2e-lib.js';
import { startCluster, waitFor, type Cluster } from './harness.js';
import { audit, fixture, NO_PROBLEMS, problems, settle, type OutRecord, type Tap } from './swap-helpers.js';
import { publishFuzz, type FuzzTargets } from '../bench/chaos/fuzz.js';
import { tapCounterOf } from '../bench/chaos/taps.js';

const MESSAGES = Number(process.env.TOPO_FUZZ_MESSAGES ?? 20_000);
const SEED = Number(process.env.TOPO_FUZZ_SEED ?? 6);
const KEYS = 40;
const MAX_RSS_GROWTH = 0.3;
const REAL_KEY = /^key-\d+$/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resident set size of a process in KiB (VmRSS of /proc/<pid>/status), or undefined when it is gone. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

describe('fuzzed messages on every subject of a running topology', () => {
  let cluster: Cluster;
  let input: Tap<{ key: string; seq: number }>;
  let output: Tap<OutRecord>;
  /** The processes to watch, by name. */
  let pids: Record<string, number>;

  /** Median of three samples of every process's RSS, 300 ms apart. */
  async function rssNow(): Promise<Record<string, number | undefined>> {
    const samples: Record<string, number[]> = {};
    for (let i = 0; i < 3; i++) {
      for (const [name, pid] of Object.entries(pids)) {
        const v = rssKiB(pid);
        if (v !== undefined) (samples[name] ??= []).push(v);
      }
      if (i < 2) await sleep(300);
    }
    return Object.fromEntries(Object.keys(pids).map((n) => [n, samples[n]?.sort((a, b) => a - b)[Math.floor((samples[n].length - 1) / 2)]]));
  }

  beforeAll(async () => {
    cluster = await startCluster({ workers: 3 });
    const { client } = cluster;
    await client.deployFile(fixture('counter-a'), { instances: 2 });
    ({ input, output } = await tapCounterOf(client));
    await client.deployFile(fixture('source'));
    await waitFor(() => output.records.length > 2_000, { what: 'counted records flowing', timeoutMs: 15_000 });
    const run = cluster.topology.run;
    pids = { controller: run.pids.controller, ...Object.fromEntries(run.pids.workers.map((pid, i) => [cluster.workerId(i + 1), pid])) };
    if (run.pids.nats) pids['nats-server'] = run.pids.nats;
  });

  afterAll(async () => {
    await input?.stop();
    await output?.stop();
    await cluster?.stop();
  });

  it(`keeps running, loses nothing and swaps after ${MESSAGES} fuzzed messages, with bounded RSS`, async () => {
    const { client } = cluster;
    // Warm-up: a first swap, so the baseline includes the swap machinery's own memory.
    const warm = await client.swap(COUNTER, fixture('counter-b'));
    expect(warm.result, warm.error).toBe('ok');
    await sleep(2_000);
    const before = await rssNow();

    const status = await client.status();
    const instances = status.computations.flatMap((c) => c.instances);
    const targets: FuzzTargets = {
      streams: [SWAP_IN, SWAP_OUT],
      producers: instances.map((i) => i.instanceId),
      groups: [COUNTER, SOURCE],
      workers: status.workers.map((w) => w.workerId),
      instances: instances.map((i) => i.instanceId),
      computations: [COUNTER, SOURCE],
    };
    const markBefore = output.records.length;
    const fuzz = await publishFuzz(client.nc, MESSAGES, targets, { seed: SEED, perSecond: 2_500 });
    const during = await rssNow();
    console.log(`fuzz.test: ${fuzz.sent} messages in ${fuzz.ms} ms (${JSON.stringify(fuzz.byKind)}), ${fuzz.refused} refused by the client`);

    // 1. Still running: every instance, every worker, output still flowing.
    await sleep(1_500);
    const after = await client.status();
    const states = after.computations.map((c) => ({ name: c.name, states: c.instances.map((i) => i.state) }));
    expect.soft(states.sort((a, b) => a.name.localeCompare(b.name)), 'instances after the fuzz').toEqual([
      { name: SOURCE, states: ['running'] },
      { name: COUNTER, states: ['running', 'running'] },
    ].sort((a, b) => a.name.localeCompare(b.name)));
    expect.soft(after.workers.filter((w) => w.alive).map((w) => w.workerId).sort(), 'live workers after the fuzz (no fake ones listed)').toEqual(targets.workers.sort());
    const mark = output.records.length;
    const flowing = await waitFor(() => output.records.length > mark + 1_000, { what: 'counted records flowing after the fuzz', timeoutMs: 10_000 }).catch(() => false);
    expect.soft(flowing, 'records still counted after the fuzz').toBe(true);
    expect.soft(output.records.length).toBeGreaterThan(markBefore);

    // 2. A swap succeeds.
    const swapped = await client.swap(COUNTER, fixture('counter-a')).then((r) => r, (e: unknown) => e as Error);
    expect.soft(swapped instanceof Error ? swapped.message : swapped.result, 'the swap after the fuzz').toBe('ok');

    // 3. Every record of the real source counted exactly once, in order, counts continuing.
    await client.kill(SOURCE).catch((err: Error) => expect.soft(err.message, 'killing the source to settle').toBe(''));
    const real = <T extends { key: string }>(xs: readonly T[]) => xs.filter((x) => REAL_KEY.test(x.key));
    const realInput = real(input.records).filter((r) => typeof r.seq === 'number');
    // settle() reads the live output array; records of made-up keys in it carry no seq and are skipped there.
    const upTo = await settle(realInput, output.records, 30_000).catch((err: Error) => {
      expect.soft(err.message, 'the output catching up with the input').toBe('');
      return new Map<string, number>(
        [...realInput.reduce((m, r) => m.set(r.key, Math.max(m.get(r.key) ?? 0, r.seq)), new Map<string, number>())],
      );
    });
    const a = audit(real(output.records), upTo);
    expect.soft(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    expect.soft(a.keys).toBe(KEYS);

    // 4. RSS bounded.
    await sleep(2_000);
    const end = await rssNow();
    const growth = Object.fromEntries(Object.keys(pids).map((n) => [n, before[n] && end[n] ? Math.round(((end[n]! - before[n]!) / before[n]!) * 100) : null]));
    console.log(`fuzz.test: RSS KiB before ${JSON.stringify(before)}, right after the fuzz ${JSON.stringify(during)}, at the end ${JSON.stringify(end)}; growth % ${JSON.stringify(growth)}`);
    for (const [name, g] of Object.entries(growth)) {
      expect.soft(g, `RSS growth of ${name} in % (before ${before[name]} KiB, end ${end[name]} KiB)`).not.toBeNull();
      expect.soft(g ?? Infinity, `RSS growth of ${name} in % (before ${before[name]} KiB, end ${end[name]} KiB)`).toBeLessThan(MAX_RSS_GROWTH * 100);
    }
  }, 150_000);
});
