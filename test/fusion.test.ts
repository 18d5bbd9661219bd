/**
 * Fusion live, end to end through the real controller, workers and client:
 * a running chain source -> relay -> counter is fused (relay and counter in
 * one process, records handed over by direct calls) and split again under
 * sustained load, with the counter's output audited per key: nothing lost,
 * duplicated or reordered, counts continuing. While fused, the stream
 * between them stays visible to `topo tap`, and `topo status` shows the group.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BadRequestError, ConflictError } from '../protocol/index.js';
import { COUNTER, MID, RELAY } from './fixtures/fusion-lib.js';
import { SOURCE } from './fixtures/swap-e2e-lib.js';
import { runTopo, startCluster, waitFor, type Cluster } from './harness.js';
import { audit, NO_PROBLEMS, problems, settle, tapCounter, tapStream, type Tap } from './swap-helpers.js';

const fixture = (name: string): string => `test/fixtures/${name}.ts`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster | undefined;
const taps: Tap<unknown>[] = [];

afterEach(async () => {
  for (const t of taps.splice(0)) await t.stop();
  await cluster?.stop();
  cluster = undefined;
});

describe('topo fuse and topo split of a running chain', () => {
  it('fuses and splits under load with nothing lost, the fused stream still tapped, and status showing the group', async () => {
    const c = (cluster = await startCluster({ workers: 2 }));
    await c.client.deployFile(fixture('fusion-counter'));
    await c.client.deployFile(fixture('fusion-relay'));
    const { input, output } = await tapCounter(c.client);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    await c.client.deployFile(fixture('scale-source'));
    await waitFor(() => output.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 15_000 });

    const fused = await c.client.fuse([COUNTER, RELAY]);
    expect(fused.result).toBe('ok');
    expect(fused.groups).toEqual([{ group: `fg-${RELAY}`, members: [RELAY, COUNTER] }]);
    const status = await c.client.status();
    const relayAt = status.computations.find((x) => x.name === RELAY)!.instances.map((i) => i.workerId);
    const counterAt = status.computations.find((x) => x.name === COUNTER)!.instances.map((i) => i.workerId);
    expect(counterAt).toEqual(relayAt);
    const text = await runTopo(['status'], { env: { TOPO_NATS_URL: c.url } });
    expect(text.stdout).toContain('FUSION GROUPS');
    expect(text.stdout).toContain(`fg-${RELAY}: ${RELAY} -> ${COUNTER}`);
    // Fusing again changes nothing.
    expect((await c.client.fuse([RELAY, COUNTER])).result).toBe('unchanged');

    // Nobody taps it yet: the fused stream is handed over in-process and not published at all.
    let published = 0;
    const raw = c.client.nc.subscribe(`topo.data.${MID}.*`, { callback: () => void published++ });
    const counted = output.records.length;
    await sleep(1_500);
    raw.unsubscribe();
    expect(output.records.length).toBeGreaterThan(counted + 1_000);
    expect(published).toBe(0);

    // A tap announces itself, and the producer publishes a copy for it.
    const before = output.records.length;
    const mid = await tapStream(c.client, MID, (key) => key);
    taps.push(mid as Tap<unknown>);
    await waitFor(() => mid.records.length > 200, { what: 'the fused stream on a tap', timeoutMs: 10_000 });
    await waitFor(() => output.records.length > before + 2_000, { what: 'output while fused', timeoutMs: 15_000 });
    // A fused computation keeps its parallelism while fused.
    await expect(c.client.scale(COUNTER, 2)).rejects.toThrow(ConflictError);

    const split = await c.client.split(COUNTER);
    expect(split.result).toBe('ok');
    expect(split.groups).toEqual([]);
    const afterSplit = output.records.length;
    await waitFor(() => output.records.length > afterSplit + 2_000, { what: 'output after the split', timeoutMs: 15_000 });
    expect((await c.client.status()).computations.find((x) => x.name === COUNTER)!.noFuse).toBe(true);
    await sleep(500);

    await c.client.kill(SOURCE);
    const upTo = await settle(input.records, output.records, 60_000);
    const a = audit(output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    expect(a.keys).toBe(40);
    const records = [...upTo.values()].reduce((n, s) => n + s, 0);
    console.log(`fusion: ${records} records over 40 keys, lost ${a.lost}, duplicated ${a.duplicated}, reordered ${a.reordered}; ` +
      `fuse paused upstreams ${fused.pauseMs} ms (total ${Math.round(fused.elapsedMs)} ms), split ${split.pauseMs} ms (total ${Math.round(split.elapsedMs)} ms)`);
    const h = (await c.client.history(COUNTER)).map((e) => e.action);
    expect(h).toEqual(expect.arrayContaining(['fuse', 'split']));
  }, 180_000);

  it('refuses what may not be fused, with the rule that says so', async () => {
    const c = (cluster = await startCluster({ workers: 1 }));
    await c.client.deployFile(fixture('fusion-counter'));
    await c.client.deployFile(fixture('fusion-relay'));
    await c.client.deployFile(fixture('scale-source'));
    // The source produces swap-in, which the relay reads; the counter does not read what the source produces.
    await expect(c.client.fuse([SOURCE, COUNTER])).rejects.toThrow(/chain/);
    await c.client.scale(COUNTER, 2);
    await expect(c.client.fuse([RELAY, COUNTER])).rejects.toThrow(/different parallelism|key grouping/);
    await expect(c.client.fuse([RELAY, 'nope'])).rejects.toThrow(/not deployed/);
    await expect(c.client.fuse([RELAY])).rejects.toThrow(BadRequestError);
    const cli = await runTopo(['fuse', RELAY], { env: { TOPO_NATS_URL: c.url } });
    expect(cli.code).toBe(2);
  }, 120_000);
});
