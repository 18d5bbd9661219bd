/**
 * Fusion live, end to end through the real controller, workers and client:
 * a running chain source -> relay -> counter is fused (relay and counter in
 * one process, records handed over by direct calls) and split again under
 * sustained load, with the counter's output audited per key: nothing lost,
 * duplicated or reordered, counts continuing. While fused, the stream
 * between them stays visible to `topo tap`, and `topo status` shows the group.
 */
import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../protocol/index.js';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { COUNTER, MID, RELAY, TALLY, TALLY_OUT } from './fixtures/fusion-lib.js';
import { SOURCE } from './fixtures/swap-e2e-lib.js';
import { runTopo, topoBin, waitFor } from './harness.js';
import { audit, NO_PROBLEMS, problems, settle, tapCounter, tapStream, type Tap, perTest } from './swap-helpers.js';

const fixture = (name: string): string => `test/fixtures/${name}.ts`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const run = perTest();
const taps = run.taps;

describe('fusion of a running chain', () => {
  it('is done by the oracle by default, undone by topo split and redone by topo fuse, under load with nothing lost', async () => {
    const c = (await run.cluster({ workers: 2 }));
    await c.client.deployFile(fixture('fusion-counter'));
    await c.client.deployFile(fixture('fusion-relay'));
    const { input, output } = await tapCounter(c.client);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    await c.client.deployFile(fixture('scale-source'));
    await waitFor(() => output.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 15_000 });

    // The oracle fuses the whole chain by default: every edge is chainable (one producer, one input, one instance each).
    const auto = await waitFor(async () => {
      const s = await c.client.status();
      return s.fusion?.find((g) => g.members.length === 3) ? s : undefined;
    }, { what: 'the chain fused by the oracle', timeoutMs: 30_000 });
    expect(auto.fusion).toEqual([{ group: `fg-${SOURCE}`, members: [SOURCE, RELAY, COUNTER] }]);
    const workersOf = (name: string) => auto.computations.find((x) => x.name === name)!.instances.map((i) => i.workerId);
    expect(workersOf(RELAY)).toEqual(workersOf(SOURCE));
    expect(workersOf(COUNTER)).toEqual(workersOf(SOURCE));
    const text = await runTopo(['status'], { env: { TOPO_NATS_URL: c.url } });
    expect(text.stdout).toContain('FUSION GROUPS');
    expect(text.stdout).toContain(`fg-${SOURCE}: ${SOURCE} -> ${RELAY} -> ${COUNTER}`);
    const history = (await c.client.history(COUNTER)).map((e) => e.action);
    expect(history).toContain('fuse');

    // Nobody taps the stream between relay and counter: it is handed over in-process and not published at all.
    let published = 0;
    const raw = c.client.nc.subscribe(`topo.data.${MID}.*`, { callback: () => void published++ });
    const counted = output.records.length;
    await sleep(1_500);
    raw.unsubscribe();
    expect(output.records.length).toBeGreaterThan(counted + 1_000);
    expect(published).toBe(0);
    // A tap announces itself, and the producer publishes a copy for it.
    const mid = await tapStream(c.client, MID, (key) => key);
    taps.push(mid as Tap<unknown>);
    await waitFor(() => mid.records.length > 200, { what: 'the fused stream on a tap', timeoutMs: 10_000 });

    // topo split takes the relay out, live; the oracle then leaves it apart.
    const split = await c.client.split(RELAY);
    expect(split.result).toBe('ok');
    expect(split.groups).toEqual([]);
    let mark = output.records.length;
    await waitFor(() => output.records.length > mark + 2_000, { what: 'output after the split', timeoutMs: 15_000 });
    await sleep(4_000);
    expect((await c.client.status()).fusion ?? []).toEqual([]);
    expect((await c.client.status()).computations.find((x) => x.name === RELAY)!.noFuse).toBe(true);

    // topo fuse names it again.
    const fused = await c.client.fuse([COUNTER, RELAY]);
    expect(fused.result).toBe('ok');
    expect(fused.groups).toEqual([{ group: `fg-${RELAY}`, members: [RELAY, COUNTER] }]);
    mark = output.records.length;
    await waitFor(() => output.records.length > mark + 2_000, { what: 'output after the fuse', timeoutMs: 15_000 });

    await c.client.kill(SOURCE);
    const upTo = await settle(input.records, output.records, 60_000);
    const a = audit(output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    expect(a.keys).toBe(40);
    const records = [...upTo.values()].reduce((n, s) => n + s, 0);
    console.log(`fusion: ${records} records over 40 keys, lost ${a.lost}, duplicated ${a.duplicated}, reordered ${a.reordered}; ` +
      `split paused upstreams ${split.pauseMs} ms (total ${Math.round(split.elapsedMs)} ms), fuse ${fused.pauseMs} ms (total ${Math.round(fused.elapsedMs)} ms)`);
  }, 180_000);

  it('keeps a fused chain together when its worker is killed with -9: re-placed as a group on a live worker, and flowing again', async () => {
    // Three workers: after the kill, re-placement has two to choose from, and the chain must not be spread over them.
    const c = (await run.cluster({ workers: 3 }));
    await c.client.deployFile(fixture('fusion-counter'));
    await c.client.deployFile(fixture('fusion-relay'));
    const out = await tapStream(c.client, 'swap-out', (key) => key);
    taps.push(out as Tap<unknown>);
    await c.client.deployFile(fixture('scale-source'));
    const fusedOn = async () => {
      const s = await c.client.status();
      if (!s.fusion?.find((g) => g.members.length === 3)) return undefined;
      const at = [SOURCE, RELAY, COUNTER].map((n) => s.computations.find((x) => x.name === n)!.instances[0]!);
      return at.every((i) => i.state === 'running' && i.workerId === at[0]!.workerId) ? at[0]!.workerId : undefined;
    };
    const fusedAgain = await waitFor(fusedOn, { what: 'the chain fused on one worker', timeoutMs: 30_000 });
    const n = Number(fusedAgain.replace('w-', ''));
    const seen = out.records.length;
    await c.killWorker(n, 'SIGKILL');
    const after = await waitFor(async () => {
      const w = await fusedOn();
      return w && w !== fusedAgain ? w : undefined;
    }, { what: 'the fused chain re-placed together on the live worker', timeoutMs: 30_000 });
    expect(after).not.toBe(fusedAgain);
    await waitFor(() => out.records.length > seen + 2_000, { what: 'output flowing again after the re-placement', timeoutMs: 20_000 });
    const s = await c.client.status();
    expect(s.fusion).toEqual([{ group: expect.any(String), members: [SOURCE, RELAY, COUNTER] }]);
  }, 180_000);

  it('moves a fused group instance by instance, as a whole, onto a worker that joins, with every record delivered once', async () => {
    const c = (await run.cluster({ workers: 1 }));
    await c.client.deployFile(fixture('fusion-tally'), { instances: 2 });
    await c.client.deployFile(fixture('fusion-relay'), { instances: 2 });
    const input = await tapStream(c.client, 'swap-in', (key, value) => `${key}:${(value as { seq: number }).seq}`);
    const output = await tapStream(c.client, TALLY_OUT, (key, value) => `${key}:${(value as { seq: number }).seq}`);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    await c.client.deployFile(fixture('scale-source'));
    await waitFor(async () => (await c.client.status()).fusion?.some((g) => g.members.join() === `${RELAY},${TALLY}`), { what: 'relay and tally fused', timeoutMs: 30_000 });

    const joined = spawn(process.execPath, [topoBin, 'worker', '--nats', c.url, '--id', 'w-new', '--data-dir', join(c.dir, 'worker-new')], { stdio: 'ignore' });
    try {
      const s = await waitFor(async () => {
        const st = await c.client.status();
        const on = (name: string, w: string) => st.computations.find((x) => x.name === name)!.instances.filter((i) => i.workerId === w && i.state === 'running').length;
        return on(RELAY, 'w-new') === 1 && on(TALLY, 'w-new') === 1 ? st : undefined;
      }, { what: 'instance 0 or 1 of the fused group on the new worker', timeoutMs: 40_000 });
      // Moved together: instance i of relay and of tally on the same worker, one index on each worker.
      const where = (name: string) => s.computations.find((x) => x.name === name)!.instances.map((i) => `${i.index}@${i.workerId}`).sort();
      expect(where(TALLY)).toEqual(where(RELAY));
      expect(new Set(where(RELAY).map((x) => x.split('@')[1]))).toEqual(new Set(['w-1', 'w-new']));
      expect(s.fusion?.find((g) => g.members[0] === RELAY)?.members).toEqual([RELAY, TALLY]);
      const moves = (await c.client.history(RELAY)).filter((e) => e.action === 'move');
      expect(moves.length).toBeGreaterThanOrEqual(1);
      const mark = output.records.length;
      await waitFor(() => output.records.length > mark + 2_000, { what: 'output after the move', timeoutMs: 15_000 });
      await c.client.kill(SOURCE);
      await waitFor(() => output.records.length >= input.records.length, { what: 'every record through the tally', timeoutMs: 30_000 });
      await sleep(500);
      const seen = new Map<string, number>();
      for (const o of output.records) seen.set(o, (seen.get(o) ?? 0) + 1);
      const lost = input.records.filter((i) => !seen.has(i)).length;
      const duplicated = [...seen.values()].filter((n) => n > 1).length;
      console.log(`fused group move: ${input.records.length} records, lost ${lost}, duplicated ${duplicated}, ${moves.length} move(s), pauses ${moves.map((m) => m.pauseMs).join(', ')} ms`);
      expect({ lost, duplicated }).toEqual({ lost: 0, duplicated: 0 });
      // kill -9 of `topo worker` takes its worker process with it (it would linger otherwise).
      joined.kill('SIGKILL');
      const dataDir = join(c.dir, 'worker-new');
      await waitFor(() => !execFileSync('ps', ['-eo', 'args']).toString().includes(dataDir), { what: 'the worker of `topo worker` gone after kill -9', timeoutMs: 10_000 });
    } finally {
      joined.kill('SIGKILL');
    }
  }, 180_000);

  it('runs the wordcount example as one fused chain, once, and stays so (no flapping)', async () => {
    const c = (await run.cluster({ workers: 2 }));
    const counts = await tapStream(c.client, 'counts', (key) => key);
    taps.push(counts as Tap<unknown>);
    for (const n of ['sentences', 'split', 'count']) await c.client.deployFile(`examples/wordcount/${n}.ts`);
    const chain = ['sentences', 'split', 'count'];
    await waitFor(async () => (await c.client.status()).fusion?.some((g) => g.members.join() === chain.join()), { what: 'wordcount fused', timeoutMs: 60_000 });
    const fusesAt = async () => (await c.client.history('count')).filter((e) => e.action === 'fuse' || e.action === 'split').length;
    const before = await fusesAt();
    const seen = counts.records.length;
    await sleep(8_000);
    expect(await fusesAt()).toBe(before);
    expect((await c.client.status()).fusion).toEqual([{ group: 'fg-sentences', members: chain }]);
    // Counts keep coming out of the fused chain (and the tap sees them).
    expect(counts.records.length).toBeGreaterThan(seen);
  }, 120_000);

  it('does not fuse the tweets demo, whose streams are at-least-once (rule 12)', async () => {
    const c = (await run.cluster({ workers: 1 }));
    for (const n of ['generator', 'hashtags', 'counter', 'sink']) await c.client.deployFile(`examples/tweets/${n}.ts`);
    await sleep(4_000);
    expect((await c.client.status()).fusion ?? []).toEqual([]);
    await expect(c.client.fuse(['hashtags', 'counter'])).rejects.toThrow(/at-least-once/);
  }, 120_000);

  it('topo fuse refuses what may not be fused, with the rule that says so', async () => {
    // The oracle is off here: this is about the rules of the verb alone.
    const c = (await run.cluster({ workers: 1, env: { TOPO_AUTOPILOT: '0' } }));
    await c.client.deployFile(fixture('fusion-counter'));
    await c.client.deployFile(fixture('fusion-relay'));
    await c.client.deployFile(fixture('scale-source'));
    // The counter does not read what the source produces.
    await expect(c.client.fuse([SOURCE, COUNTER])).rejects.toThrow(/chain/);
    await c.client.scale(COUNTER, 2);
    await expect(c.client.fuse([RELAY, COUNTER])).rejects.toThrow(/different parallelism/);
    await expect(c.client.fuse([RELAY, 'nope'])).rejects.toThrow(/not deployed/);
    await expect(c.client.fuse([RELAY])).rejects.toThrow(BadRequestError);
    const cli = await runTopo(['fuse', RELAY], { env: { TOPO_NATS_URL: c.url } });
    expect(cli.code).toBe(2);
    const ok = await runTopo(['fuse', SOURCE, RELAY, '--json'], { env: { TOPO_NATS_URL: c.url } });
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).groups).toEqual([{ group: `fg-${SOURCE}`, members: [SOURCE, RELAY] }]);
  }, 120_000);
});
