/**
 * At-least-once streams and checkpoints with real processes: workers are
 * killed with SIGKILL while a source feeds a key-grouped counter, and the
 * counter's output says whether every record was counted exactly once (each
 * key's count must equal the tick number of the record counted: one record
 * per key per tick). At-most-once streams restart from the checkpoint too,
 * and what they lose is counted in status.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { atLeastOnceNames, buckets, checkpointKeys } from '../protocol/index.js';
import { ALO_COUNTER, ALO_IN, ALO_KEYS, ALO_OUT, ALO_SOURCE, type CountValue, type TickValue } from './fixtures/alo-lib.js';
import { bundleSource } from '../runtime/client/hostedBundle.js';
import { startCluster, waitFor, type Cluster } from './harness.js';
import { tapStream, type Tap } from './swap-helpers.js';
import { exactness, untilSettled, storedReader, type Out } from './alo-helpers.js';

async function placementOf(cluster: Cluster, name: string): Promise<string[]> {
  const s = await cluster.client.status();
  return s.computations.find((c) => c.name === name)?.instances.map((i) => i.workerId) ?? [];
}

async function allRunning(cluster: Cluster, dead: string): Promise<boolean> {
  const s = await cluster.client.status();
  return s.computations.length === 2 && s.computations.every((c) => c.instances.length > 0 && c.instances.every((i) => i.state === 'running' && i.workerId !== dead));
}

describe('at-least-once streams with checkpoints', () => {
  let cluster: Cluster | undefined;
  let out: Tap<Out> | undefined;

  afterEach(async () => {
    await out?.stop();
    await cluster?.stop();
    cluster = undefined;
    out = undefined;
  });

  it('counts every record exactly once across SIGKILLs of the counter\'s and the source\'s workers', async () => {
    const c = (cluster = await startCluster({ workers: 3 }));
    await c.client.deployFile('test/fixtures/alo-counter.ts', { instances: 2 });
    out = await tapStream(c.client, ALO_OUT, (key, value, producer) => ({ key, producer, ...(value as CountValue) }));
    await c.client.deployFile('test/fixtures/alo-source.ts');
    await waitFor(() => out!.records.length > 4_000, { what: 'counted records flowing', timeoutMs: 20_000 });

    const recoveries: number[] = [];
    for (const victim of [ALO_COUNTER, ALO_SOURCE, ALO_COUNTER]) {
      const worker = (await placementOf(c, victim))[0]!;
      const n = Number(worker.replace(/^w-/, ''));
      // A second past a checkpoint, so the kill lands between two of them.
      await new Promise((r) => setTimeout(r, 1_500));
      const before = out.records.length;
      const killedAt = Date.now();
      await c.killWorker(n, 'SIGKILL');
      await waitFor(() => allRunning(c, worker), { what: `${victim} re-placed after ${worker} was killed`, timeoutMs: 20_000 });
      await waitFor(() => out!.records.length > before + 4_000, { what: `records flowing again after ${worker} was killed`, timeoutMs: 20_000 });
      recoveries.push(Date.now() - killedAt);
      await c.startWorker(n);
    }
    await c.client.kill(ALO_SOURCE);
    // Everything published is counted in the end.
    await untilSettled(out!.records, 'output settled', 20_000, 1_000);

    const e = exactness(out.records);
    console.log(`at-least-once: ${out.records.length} output records over ${e.keys} keys, ${e.minMax} ticks per key at least; ` +
      `wrong counts ${e.wrong}, missing ticks ${e.missing}, duplicates at the output ${e.duplicates}; recovered (records flowing again) in ${recoveries.join(', ')} ms`);
    expect(e.keys).toBe(ALO_KEYS);
    expect({ wrong: e.wrong, missing: e.missing, examples: e.examples }).toEqual({ wrong: 0, missing: 0, examples: [] });
    const status = await c.client.status();
    const counter = status.computations.find((x) => x.name === ALO_COUNTER)!;
    expect(counter.lostSinceCheckpoint ?? 0).toBe(0);
    // Time to recovery is reported: from the dead worker's last heartbeat to the instance running again.
    expect(counter.lastRecovery?.ms ?? 0).toBeGreaterThan(0);
  }, 180_000);

  it('counts exactly once in a thread-run counter (the runner path) across SIGKILLs of its and its source\'s workers', async () => {
    const c = (cluster = await startCluster({ workers: 2 }));
    await c.client.deployFile('test/fixtures/alo-counter-thread.ts');
    out = await tapStream(c.client, ALO_OUT, (key, value, producer) => ({ key, producer, ...(value as CountValue) }));
    await c.client.deployFile('test/fixtures/alo-source.ts');
    await waitFor(() => out!.records.length > 4_000, { what: 'counted records flowing', timeoutMs: 20_000 });
    // The counter's worker, then the source's: its replay is what the counter must recognize.
    for (const victim of [ALO_COUNTER, ALO_SOURCE]) {
      const worker = (await placementOf(c, victim))[0]!;
      const n = Number(worker.replace(/^w-/, ''));
      await new Promise((r) => setTimeout(r, 1_500));
      const before = out.records.length;
      await c.killWorker(n, 'SIGKILL');
      await waitFor(() => allRunning(c, worker), { what: `${victim} re-placed`, timeoutMs: 20_000 });
      await waitFor(() => out!.records.length > before + 4_000, { what: 'records flowing again', timeoutMs: 20_000 });
      await c.startWorker(n);
    }
    await c.client.kill(ALO_SOURCE);
    await untilSettled(out!.records, 'output settled', 20_000, 1_000);
    const e = exactness(out.records);
    console.log(`at-least-once (thread): ${out.records.length} output records, wrong counts ${e.wrong}, missing ticks ${e.missing}, duplicates at the output ${e.duplicates}`);
    expect({ wrong: e.wrong, missing: e.missing, examples: e.examples }).toEqual({ wrong: 0, missing: 0, examples: [] });
  }, 120_000);

  it('counts exactly once when its source is killed before its first checkpoint', async () => {
    // No checkpoint in the test's time: the restarted source starts empty. Under its predecessor's producer id
    // (claimed before it published anything) it makes the ticks again with the same numbers, which the counter skips.
    const c = (cluster = await startCluster({ workers: 2, env: { TOPO_CHECKPOINT_MS: '120000' } }));
    await c.client.deployFile('test/fixtures/alo-counter.ts');
    out = await tapStream(c.client, ALO_OUT, (key, value, producer) => ({ key, producer, ...(value as CountValue) }));
    await c.client.deployFile('test/fixtures/alo-source.ts');
    await waitFor(() => out!.records.length > 4_000, { what: 'counted records flowing', timeoutMs: 20_000 });
    const worker = (await placementOf(c, ALO_SOURCE))[0]!;
    expect(await placementOf(c, ALO_COUNTER)).not.toContain(worker);
    const before = out.records.length;
    await c.killWorker(Number(worker.replace(/^w-/, '')), 'SIGKILL');
    await waitFor(() => allRunning(c, worker), { what: 'source re-placed', timeoutMs: 20_000 });
    await waitFor(() => out!.records.length > before + 4_000, { what: 'records flowing again', timeoutMs: 20_000 });
    await c.client.kill(ALO_SOURCE);
    await untilSettled(out!.records, 'output settled', 20_000, 1_000);
    const e = exactness(out.records);
    console.log(`at-least-once (source killed before its first checkpoint): ${out.records.length} output records, ` +
      `wrong counts ${e.wrong}, missing ticks ${e.missing}, duplicates at the output ${e.duplicates}`);
    expect({ wrong: e.wrong, missing: e.missing, examples: e.examples }).toEqual({ wrong: 0, missing: 0, examples: [] });
  }, 120_000);

  it('counts exactly once when its source is swapped while making again what its killed predecessor had published', async () => {
    // Checkpoints 12 s apart: a source killed 10 s past one had published 10 s of ticks that its checkpoint does
    // not hold, which its restarted self makes again, under the same producer id and numbers, for 10 s (a slow
    // source: it ticks as fast after the restart as before). A swap in those 10 s hands the rest to the new
    // version: under another producer id, all of it would be counted again.
    const c = (cluster = await startCluster({ workers: 2, env: { TOPO_CHECKPOINT_MS: '12000' } }));
    // Bundled now: the swap goes out as soon as the source runs again.
    const v2 = await bundleSource('test/fixtures/alo-source-slow-v2.ts');
    await c.client.deployFile('test/fixtures/alo-counter-thread.ts');
    out = await tapStream(c.client, ALO_OUT, (key, value, producer) => ({ key, producer, ...(value as CountValue) }));
    const input = await tapStream(c.client, ALO_IN, (key, value) => ({ key, ...(value as TickValue) }));
    try {
      await c.client.deployFile('test/fixtures/alo-source-slow.ts');
      await waitFor(() => out!.records.length > 4_000, { what: 'counted records flowing', timeoutMs: 20_000 });
      const worker = (await placementOf(c, ALO_SOURCE))[0]!;
      expect(await placementOf(c, ALO_COUNTER)).not.toContain(worker);
      const kv = await new Kvm(c.client.nc).open(buckets.checkpoints);
      const revision = async () => (await kv.get(checkpointKeys.meta(ALO_SOURCE, 0)))?.revision ?? 0;
      const stored = await revision();
      await waitFor(async () => (await revision()) > stored, { what: 'a checkpoint of the source stored', timeoutMs: 20_000, intervalMs: 20 });
      await new Promise((r) => setTimeout(r, 10_000));
      await c.killWorker(Number(worker.replace(/^w-/, '')), 'SIGKILL');
      // What the killed source published (a tap sees a publish as it happens).
      await new Promise((r) => setTimeout(r, 500));
      const publishedBeforeKill = input.records.reduce((m, r) => Math.max(m, r.tick), 0);
      await waitFor(() => allRunning(c, worker), { what: 'source re-placed', timeoutMs: 20_000 });
      const swapped = await c.client.swapBundle(ALO_SOURCE, v2);
      expect(swapped.result).toBe('ok');
      const before = out.records.length;
      await waitFor(() => out!.records.length > before + 4_000, { what: 'records flowing after the swap', timeoutMs: 20_000 });
      await c.client.kill(ALO_SOURCE);
      await untilSettled(out!.records, 'output settled', 20_000, 1_000);
      // The swap landed while the restarted source was still making again what its predecessor had published.
      const v2From = input.records.reduce((m, r) => (r.v === 2 ? Math.min(m, r.tick) : m), Infinity);
      const e = exactness(out.records);
      console.log(`at-least-once (swap in a replay): the killed source had published tick ${publishedBeforeKill}, v2 ticked from ${v2From}; ` +
        `${out.records.length} output records, wrong counts ${e.wrong}, missing ticks ${e.missing}, duplicates at the output ${e.duplicates}`);
      expect(v2From).toBeLessThan(publishedBeforeKill);
      expect({ wrong: e.wrong, missing: e.missing, examples: e.examples }).toEqual({ wrong: 0, missing: 0, examples: [] });
    } finally {
      await input.stop();
    }
  }, 120_000);

  it.each(['SIGKILL', 'SIGTERM'] as const)('loses nothing when nats-server is stopped with %s and restarted under load (JetStream data on disk)', async (signal) => {
    const c = (cluster = await startCluster({ workers: 2 }));
    await c.client.deployFile('test/fixtures/alo-counter.ts', { instances: 2 });
    out = await tapStream(c.client, ALO_OUT, (key, value, producer) => ({ key, producer, ...(value as CountValue) }));
    // The tap is disconnected too while the server is down: the audit reads the output as stored.
    const stored = await storedReader(c.client.nc, ALO_OUT);
    await c.client.deployFile('test/fixtures/alo-source.ts');
    await waitFor(() => out!.records.length > 4_000, { what: 'counted records flowing', timeoutMs: 20_000 });
    await c.stopNats(signal);
    await new Promise((r) => setTimeout(r, 2_000));
    await c.startNats();
    const before = out.records.length;
    await waitFor(() => out!.records.length > before + 4_000, { what: 'records flowing again after the restart', timeoutMs: 30_000 });
    await c.client.kill(ALO_SOURCE);
    await untilSettled(out!.records, 'output settled', 30_000, 1_000);
    const e = exactness(await stored.read());
    console.log(`at-least-once across a nats-server ${signal}: ${out.records.length} output records tapped, wrong counts ${e.wrong}, missing ticks ${e.missing}, duplicates at the output ${e.duplicates}`);
    expect({ wrong: e.wrong, missing: e.missing, examples: e.examples }).toEqual({ wrong: 0, missing: 0, examples: [] });
    // Once the counter has acked its input (at its next checkpoint), the controller trims it from the stream.
    const jsm = await jetstreamManager(c.client.nc);
    const held = await waitFor(async () => {
      const n = (await jsm.streams.info(atLeastOnceNames.stream(ALO_IN))).state.messages;
      return n === 0 ? 'empty' : undefined;
    }, { what: `${ALO_IN} trimmed to nothing once every message was acked`, timeoutMs: 15_000, intervalMs: 250 });
    expect(held).toBe('empty');
  }, 120_000);

  it('restarts an at-most-once counter from its checkpoint and reports what it lost', async () => {
    const c = (cluster = await startCluster({ workers: 2 }));
    await c.client.deployFile('test/fixtures/amo-counter.ts');
    out = await tapStream(c.client, ALO_OUT, (key, value, producer) => ({ key, producer, ...(value as CountValue) }));
    await c.client.deployFile('test/fixtures/amo-source.ts');
    await waitFor(() => out!.records.length > 4_000, { what: 'counted records flowing', timeoutMs: 20_000 });
    const worker = (await placementOf(c, ALO_COUNTER))[0]!;
    const sourceWorker = (await placementOf(c, ALO_SOURCE))[0]!;
    const killed = Number(worker.replace(/^w-/, ''));
    await new Promise((r) => setTimeout(r, 1_500));
    const before = out.records.length;
    const highest = Math.max(...out.records.map((o) => o.count));
    await c.killWorker(killed, 'SIGKILL');
    await waitFor(() => allRunning(c, worker), { what: 'counter re-placed', timeoutMs: 20_000 });
    await waitFor(() => out!.records.length > before + 2_000, { what: 'records flowing again', timeoutMs: 20_000 });
    const after = out.records.slice(before);
    // Restarted from the checkpoint: counts go on from where it was cut (not from 0), short of what was lost.
    const restartedAt = Math.min(...after.filter((o) => o.count < o.tick).map((o) => o.count));
    console.log(`at-most-once: highest count before the kill ${highest}, lowest count after it ${restartedAt}`);
    expect(restartedAt).toBeGreaterThan(highest / 2);
    const status = await c.client.status();
    const counter = status.computations.find((x) => x.name === ALO_COUNTER)!;
    if (sourceWorker !== worker) expect(counter.lostSinceCheckpoint ?? 0).toBeGreaterThan(0);
  }, 120_000);
});

describe('live changes on at-least-once streams', () => {
  let cluster: Cluster | undefined;
  let out: Tap<Out> | undefined;

  afterEach(async () => {
    await out?.stop();
    await cluster?.stop();
  });

  it('swaps, scales, runs a canary, promotes it and rolls back a broken version under load, every record counted once', async () => {
    const c = (cluster = await startCluster({ workers: 2 }));
    await c.client.deployFile('test/fixtures/alo-counter.ts', { instances: 2 });
    out = await tapStream(c.client, ALO_OUT, (key, value, producer) => ({ key, producer, ...(value as CountValue) }));
    await c.client.deployFile('test/fixtures/alo-source.ts');
    await waitFor(() => out!.records.length > 2_000, { what: 'counted records flowing', timeoutMs: 20_000 });
    const flowing = async (what: string) => {
      const n = out!.records.length;
      await waitFor(() => out!.records.length > n + 1_000, { what: `records flowing after ${what}`, timeoutMs: 20_000 });
    };
    const steps: string[] = [];
    const r1 = await c.client.swap(ALO_COUNTER, 'test/fixtures/alo-counter-v2.ts');
    steps.push(`swap ${r1.result} (pause ${Math.round(r1.pauseMs ?? 0)} ms)`);
    await flowing('the swap');
    const s1 = await c.client.scale(ALO_COUNTER, 4);
    steps.push(`scale to ${s1.instances}`);
    await flowing('the scale up');
    const canary = await c.client.swap(ALO_COUNTER, 'test/fixtures/alo-counter.ts', { canary: 25 });
    steps.push(`canary ${canary.result}`);
    await flowing('the canary');
    await c.client.promote(ALO_COUNTER);
    steps.push('promote');
    await flowing('the promote');
    const broken = await c.client.swap(ALO_COUNTER, 'test/fixtures/alo-counter-throws.ts').then(() => 'committed', (e: Error) => `rolled back (${e.message.slice(0, 60)})`);
    steps.push(`broken swap ${broken}`);
    expect(broken).toMatch(/^rolled back/);
    await flowing('the rollback');
    const s2 = await c.client.scale(ALO_COUNTER, 1);
    steps.push(`scale to ${s2.instances}`);
    await flowing('the scale down');
    await c.client.kill(ALO_SOURCE);
    await untilSettled(out!.records, 'output settled', 20_000, 1_000);
    const e = exactness(out.records);
    console.log(`at-least-once live changes: ${steps.join('; ')}; ${out.records.length} output records, ${e.minMax} ticks per key at least; ` +
      `wrong counts ${e.wrong}, missing ticks ${e.missing}, duplicates at the output ${e.duplicates}`);
    expect(e.keys).toBe(ALO_KEYS);
    expect({ wrong: e.wrong, missing: e.missing, examples: e.examples }).toEqual({ wrong: 0, missing: 0, examples: [] });
  }, 180_000);
});
