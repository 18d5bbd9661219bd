/**
 * Live placement changes end to end, through the real controller, workers
 * and client: `topo scale` of a key-grouped counter and of a shuffle
 * computation under sustained load, its errors, rebalancing onto a worker
 * that joins a running topology (`topo worker`), and the CLI verb. Every
 * load case audits the output per key: nothing lost, duplicated or
 * reordered, and the counts carry on across every change (state moved with
 * the partitions of its keys).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BadRequestError, NotFoundError, PARTITIONS, SwapRolledBackError, partitionOf, partitionsOwnedBy, subjects } from '../protocol/index.js';
import { swapReplyOf } from '../runtime/client/index.js';
import { call } from '../runtime/transport/rpc.js';
import { COUNTER, ECHO, ECHO_OUT, SOURCE, SWAP_IN, type EchoValue } from './fixtures/scale-lib.js';
import { chooseMove, type RebalancePlacement } from '../runtime/controller/rebalance.js';
import { movePlan, scalePlan, scaleProblem } from '../runtime/controller/scale.js';
import { runTopo, startCluster, topoBin, waitFor, type Cluster } from './harness.js';
import { audit, maxSeqByKey, NO_PROBLEMS, problems, settle, tapCounter, tapStream, type Tap } from './swap-helpers.js';

const fixture = (name: string): string => `test/fixtures/scale-${name}.ts`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster | undefined;
const taps: Tap<unknown>[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const t of taps.splice(0)) await t.stop();
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    }
  }
  await cluster?.stop();
  cluster = undefined;
});

async function placementOf(c: Cluster, name: string) {
  const s = await c.client.status();
  return s.computations.find((x) => x.name === name)?.instances ?? [];
}

/** Waits until every instance of `name` reports running, and returns them. */
async function allRunning(c: Cluster, name: string, n: number) {
  return waitFor(async () => {
    const insts = await placementOf(c, name);
    return insts.length === n && insts.every((i) => i.state === 'running') ? insts : undefined;
  }, { what: `${n} running instance(s) of ${name}`, timeoutMs: 15_000 });
}

describe('topo scale of a key-grouped counter under sustained load', () => {
  it('goes 1 -> 2 -> 4 -> 2 with nothing lost, per-key order kept and the counts continuing', async () => {
    const c = (cluster = await startCluster({ workers: 3 }));
    await c.client.deployFile(fixture('counter'), { instances: 1 });
    const { input, output } = await tapCounter(c.client);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    await c.client.deployFile(fixture('source'));
    await waitFor(() => output.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 15_000 });
    const version = (await c.client.computation(COUNTER))!.version;

    const figures: string[] = [];
    for (const n of [2, 4, 2]) {
      const before = output.records.length;
      const reply = await c.client.scale(COUNTER, n);
      expect(reply.result).toBe('ok');
      expect(reply.instances).toBe(n);
      expect(reply.version).toBe(version);
      expect(reply.placements.map((p) => p.index).sort()).toEqual([...Array(n).keys()]);
      // Spread over the workers: 2 instances on 2 workers, 4 on all 3.
      expect(new Set(reply.placements.map((p) => p.workerId)).size).toBe(Math.min(n, 3));
      const release = reply.steps.find((s) => s.step === 'release')!;
      figures.push(`-> ${n}: pause ${reply.pauseMs} ms, total ${Math.round(reply.elapsedMs)} ms, release: ${release.detail}`);
      const insts = await allRunning(c, COUNTER, n);
      expect(insts.map((i) => i.count)).toEqual(Array(n).fill(n));
      // The new instances count on: records keep coming out, from every instance.
      await waitFor(() => output.records.length > before + 2_000, { what: `output after the scale to ${n}`, timeoutMs: 15_000 });
      const mark = output.records.length;
      await waitFor(() => new Set(output.records.slice(mark).map((o) => o.producer)).size === n, { what: `output from all ${n} instances`, timeoutMs: 10_000 });
      await sleep(1_500);
    }

    // Each instance produced only keys of the partitions it owns.
    const rec = (await c.client.computation(COUNTER))!;
    const last = output.records.slice(-2_000);
    for (const p of rec.placements) {
      const owned = new Set(partitionsOwnedBy(p.index, rec.instances));
      const mine = last.filter((o) => o.producer === p.instanceId);
      expect(mine.length).toBeGreaterThan(0);
      expect(mine.every((o) => owned.has(partitionOf(o.key)))).toBe(true);
    }

    await c.client.kill(SOURCE);
    const upTo = await settle(input.records, output.records, 60_000);
    const a = audit(output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    expect(a.keys).toBe(40);
    const records = [...upTo.values()].reduce((n, s) => n + s, 0);
    console.log(`scale: ${records} records over 40 keys, lost ${a.lost}, duplicated ${a.duplicated}, reordered ${a.reordered}, bad counts ${a.badCounts}; ${figures.join('; ')}`);

    // History: three scales of the same version, after the deploy.
    const h = (await c.client.history(COUNTER)).filter((e) => e.action === 'scale');
    expect(h.map((e) => [e.version, e.result])).toEqual([[version, 'ok'], [version, 'ok'], [version, 'ok']]);
    expect(h.map((e) => e.steps?.find((s) => s.step === 'target')?.detail)).toEqual([
      expect.stringMatching(/^1 -> 2 instance/), expect.stringMatching(/^2 -> 4 instance/), expect.stringMatching(/^4 -> 2 instance/),
    ]);
  }, 180_000);
});

describe('a scale whose new instances fail', () => {
  it('is rolled back under load: the old instances resume with their state, nothing lost', async () => {
    const c = (cluster = await startCluster({ workers: 2 }));
    await c.client.deployFile(fixture('counter-picky'), { instances: 2 });
    const { input, output } = await tapCounter(c.client);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    await c.client.deployFile(fixture('source'));
    await waitFor(() => output.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 15_000 });
    const before = (await c.client.computation(COUNTER))!;

    const err = await c.client.scale(COUNTER, 3).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SwapRolledBackError);
    expect((err as Error).message).toMatch(/scale of "swap-counter" v1 from 2 to 3 instance\(s\) rolled back: .*will not run as one of 3 instances/);
    const reply = swapReplyOf(err)!;
    expect(reply.steps.find((s) => s.step === 'adopt')).toMatchObject({ ok: false });
    expect(reply.steps.find((s) => s.step === 'abort')).toMatchObject({ ok: true });
    // Desired state unchanged; the old instances run again and count on.
    expect(await c.client.computation(COUNTER)).toEqual(before);
    await allRunning(c, COUNTER, 2);
    const mark = output.records.length;
    await waitFor(() => output.records.length > mark + 1_000, { what: 'counting again after the rollback', timeoutMs: 15_000 });
    // 4 is fine for it.
    expect((await c.client.scale(COUNTER, 4)).instances).toBe(4);

    await c.client.kill(SOURCE);
    const upTo = await settle(input.records, output.records, 60_000);
    const a = audit(output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    const h = (await c.client.history(COUNTER)).filter((e) => e.action === 'scale').map((e) => e.result);
    expect(h).toEqual(['rolled-back', 'ok']);
    console.log(`scale (rolled back): ${[...upTo.values()].reduce((n, s) => n + s, 0)} records, lost ${a.lost}, duplicated ${a.duplicated}, reordered ${a.reordered}; paused ${reply.pauseMs} ms`);
  }, 120_000);
});

describe('topo scale of a shuffle computation', () => {
  it('goes 1 -> 3 -> 1 under load with every record echoed exactly once', async () => {
    const c = (cluster = await startCluster({ workers: 2 }));
    await c.client.deployFile(fixture('echo'), { instances: 1 });
    const input = await tapStream(c.client, SWAP_IN, (key, value) => ({ key, seq: (value as { seq: number }).seq }));
    const output = await tapStream(c.client, ECHO_OUT, (key, value, producer) => ({ key, producer, ...(value as EchoValue) }));
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    await c.client.deployFile(fixture('source'));
    await waitFor(() => output.records.length > 1_000, { what: 'echoed records flowing', timeoutMs: 15_000 });

    const up = await c.client.scale(ECHO, 3);
    expect(up).toMatchObject({ result: 'ok', fromInstances: 1, instances: 3 });
    await allRunning(c, ECHO, 3);
    const mark = output.records.length;
    // Queue groups share the records among all three.
    await waitFor(() => new Set(output.records.slice(mark).map((o) => o.producer)).size === 3, { what: 'records echoed by all 3 instances', timeoutMs: 10_000 });
    const down = await c.client.scale(ECHO, 1);
    expect(down).toMatchObject({ result: 'ok', fromInstances: 3, instances: 1 });
    await allRunning(c, ECHO, 1);
    await sleep(1_000);

    await c.client.kill(SOURCE);
    const target = maxSeqByKey(input.records);
    const want = [...target.values()].reduce((n, s) => n + s, 0);
    await waitFor(() => output.records.length >= want, { what: () => `${want} echoed records (have ${output.records.length})`, timeoutMs: 30_000 });
    await sleep(500);
    const seen = new Set<string>();
    let duplicated = 0;
    for (const o of output.records) {
      const id = `${o.key}#${o.seq}`;
      if (seen.has(id)) duplicated++;
      seen.add(id);
    }
    let lost = 0;
    for (const [k, s] of target) for (let i = 1; i <= s; i++) if (!seen.has(`${k}#${i}`)) lost++;
    console.log(`scale (shuffle): ${want} records, lost ${lost}, duplicated ${duplicated}; pause ${up.pauseMs} ms up, ${down.pauseMs} ms down`);
    expect({ lost, duplicated }).toEqual({ lost: 0, duplicated: 0 });
    // The echo's per-instance state (records echoed) was merged into the single instance: its count carries on.
    const last = output.records.at(-1)!;
    expect(last.echoed).toBeGreaterThan(0);
  }, 120_000);
});

describe('topo scale errors', () => {
  it('refuses more instances than key partitions, 0, a bad count and an unknown name; the same count is a no-op', async () => {
    const c = (cluster = await startCluster({ workers: 1 }));
    await c.client.deployFile(fixture('counter'), { instances: 2 });
    await c.client.deployFile(fixture('echo'), { instances: 1 });

    const over = await c.client.scale(COUNTER, PARTITIONS + 1).then(() => undefined, (e: unknown) => e);
    expect(over).toBeInstanceOf(BadRequestError);
    expect((over as Error).message).toMatch(/at most 32 instances \(one per partition\), not 33/);
    expect((over as Error).message).toMatch(/"swap-in" grouped by key/);
    // A shuffle computation may go past 32 (up to 64).
    expect((await c.client.scale(ECHO, 40)).instances).toBe(40);

    // The controller checks the request too.
    const zero = await call(c.client.nc, subjects.api('scale'), { name: COUNTER, instances: 0 }).then(() => undefined, (e: unknown) => e);
    expect(zero).toBeInstanceOf(BadRequestError);
    expect((zero as Error).message).toMatch(/scale request: instances: must be an integer from 1 to 64/);
    const tooMany = await call(c.client.nc, subjects.api('scale'), { name: ECHO, instances: 65 }).then(() => undefined, (e: unknown) => e);
    expect((tooMany as Error).message).toMatch(/instances: must be an integer from 1 to 64/);
    await expect(c.client.scale(COUNTER, 0)).rejects.toThrow(/instances must be a positive integer/);

    const unknown = await c.client.scale('nosuch', 2).then(() => undefined, (e: unknown) => e);
    expect(unknown).toBeInstanceOf(NotFoundError);
    expect((unknown as Error).message).toMatch(/computation "nosuch" is not deployed/);

    const same = await c.client.scale(COUNTER, 2);
    expect(same).toMatchObject({ result: 'unchanged', fromInstances: 2, instances: 2, steps: [] });
    // Nothing was recorded for the no-op.
    expect((await c.client.history(COUNTER)).filter((e) => e.action === 'scale')).toEqual([]);
  }, 60_000);
});

describe('topo scale on the command line', () => {
  it('has help, prints the outcome (or JSON), and exits 2 on usage errors and 1 on refusals', async () => {
    const help = await runTopo(['scale', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^topo scale - /);
    expect(help.stdout).toMatch(/Usage: topo scale <name> <instances>/);
    expect(help.stdout).toMatch(/at most 32 instances/);

    for (const args of [['scale'], ['scale', COUNTER], ['scale', COUNTER, 'two'], ['scale', COUNTER, '0'], ['scale', COUNTER, '65'], ['scale', 'bad name', '2'], ['scale', COUNTER, '2', '--bogus']]) {
      const r = await runTopo([...args, '--nats', 'nats://127.0.0.1:1']);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/^topo: /);
      expect(r.stderr).toMatch(/topo scale --help/);
    }

    const workerHelp = await runTopo(['worker', '--help']);
    expect(workerHelp.code).toBe(0);
    expect(workerHelp.stdout).toMatch(/Usage: topo worker \[--nats URL\] \[--host NAME\] \[--id ID\]/);
    const badId = await runTopo(['worker', '--nats', 'nats://127.0.0.1:1', '--id', 'no.dots']);
    expect(badId.code).toBe(2);
    expect(badId.stderr).toMatch(/--id "no.dots" cannot be a worker id/);
    const noServer = await runTopo(['worker', '--nats', 'nats://127.0.0.1:1', '--id', 'w-x']);
    expect(noServer.code).toBe(1);

    const c = (cluster = await startCluster({ workers: 2 }));
    await c.client.deployFile(fixture('counter'), { instances: 1 });
    const nats = ['--nats', c.url];
    const scaled = await runTopo(['scale', COUNTER, '2', '--json', ...nats]);
    expect(scaled.code, scaled.stderr).toBe(0);
    const reply = JSON.parse(scaled.stdout) as { result: string; instances: number; fromInstances: number; placements: unknown[]; pauseMs: number };
    expect(reply).toMatchObject({ result: 'ok', instances: 2, fromInstances: 1 });
    expect(reply.placements).toHaveLength(2);

    const text = await runTopo(['scale', COUNTER, '3', ...nats]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^scaled swap-counter v1 from 2 to 3 instances in \d+ ms; upstreams paused [\d.]+ ms/);
    expect(text.stdout).toMatch(/placement: w-1 \(instances? [\d, ]+\), w-2/);
    expect(text.stdout).toMatch(/release/);

    const same = await runTopo(['scale', COUNTER, '3', ...nats]);
    expect(same.code).toBe(0);
    expect(same.stdout.trim()).toBe('swap-counter already runs on 3 instances (v1); nothing changed');

    const over = await runTopo(['scale', COUNTER, '33', ...nats]);
    expect(over.code).toBe(1);
    expect(over.stderr).toMatch(/^topo: "swap-counter" reads "swap-in" grouped by key.*at most 32 instances/);
    const unknown = await runTopo(['scale', 'nosuch', '2', ...nats]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/computation "nosuch" is not deployed \(deployed: swap-counter;/);

    const history = await runTopo(['history', COUNTER, ...nats]);
    expect(history.stdout).toMatch(/v1\s+scale\s+ok .*2 -> 3 instance/);
  }, 90_000);
});



describe('scale and move plans', () => {
  const rec = {
    name: 'counter', version: 3, sha: 'a'.repeat(64), lang: 'ts' as const, instances: 2, deployedAt: 1,
    metadata: { name: 'counter', istreams: [{ stream: 'in', grouping: 'key' as const }], ostreams: ['out'] },
    placements: [{ index: 1, instanceId: 'counter-1-aaaaaa', workerId: 'w-2' }, { index: 0, instanceId: 'counter-0-bbbbbb', workerId: 'w-1' }],
  };

  it('a scale releases every instance; each new one adopts from all of them, filtered by partition, same version', () => {
    const plan = scalePlan(rec, ['w-1', 'w-2', 'w-3']);
    expect(plan).toMatchObject({ action: 'scale', version: 3, fromVersion: 3 });
    expect(plan.releases.map((p) => p.instanceId)).toEqual(['counter-0-bbbbbb', 'counter-1-aaaaaa']);
    expect(plan.adopts.map((a) => [a.workerId, a.assignment.index, a.assignment.count, a.assignment.version, a.filterByPartition])).toEqual([
      ['w-1', 0, 3, 3, true], ['w-2', 1, 3, 3, true], ['w-3', 2, 3, 3, true],
    ]);
    for (const a of plan.adopts) expect(a.from).toEqual([{ workerId: 'w-1', instanceId: 'counter-0-bbbbbb' }, { workerId: 'w-2', instanceId: 'counter-1-aaaaaa' }]);
    const next = plan.committed();
    expect(next.instances).toBe(3);
    expect(next.version).toBe(3);
    expect(next.placements.map((p) => [p.index, p.workerId])).toEqual([[0, 'w-1'], [1, 'w-2'], [2, 'w-3']]);
    expect(plan.steps?.[0]?.detail).toBe('2 -> 3 instance(s), on w-1, w-2, w-3');
  });

  it('a move keeps index, count and state (from itself, not filtered) and changes only that placement', () => {
    const plan = movePlan(rec, rec.placements[0]!, 'w-3');
    expect(plan).toMatchObject({ action: 'move', version: 3, fromVersion: 3 });
    expect(plan.releases).toEqual([rec.placements[0]]);
    expect(plan.adopts).toHaveLength(1);
    expect(plan.adopts[0]).toMatchObject({ workerId: 'w-3', from: [{ workerId: 'w-2', instanceId: 'counter-1-aaaaaa' }], filterByPartition: false });
    expect(plan.adopts[0]!.assignment).toMatchObject({ index: 1, count: 2, version: 3, sha: rec.sha });
    const next = plan.committed();
    expect(next.placements).toEqual([{ index: 1, instanceId: plan.adopts[0]!.assignment.instanceId, workerId: 'w-3' }, rec.placements[1]]);
  });

  it('caps key-grouped parallelism at the 32 partitions', () => {
    expect(scaleProblem(rec, 32)).toBeUndefined();
    expect(scaleProblem(rec, 33)).toMatch(/at most 32 instances \(one per partition\), not 33/);
    expect(scaleProblem({ ...rec, metadata: { ...rec.metadata, istreams: [{ stream: 'in', grouping: 'shuffle' as const }] } }, 64)).toBeUndefined();
    expect(scaleProblem(rec, 0)).toMatch(/from 1 to 64/);
  });
});

describe('chooseMove (the rebalance policy)', () => {
  const place = (computation: string, workerId: string, index: number, movable = true): RebalancePlacement =>
    ({ computation, instanceId: `${computation}-${index}`, index, workerId, movable });

  it('moves from the most to the least loaded worker while they differ by more than one', () => {
    const placements = [0, 1, 2, 3].map((i) => place('counter', 'w-1', i)).concat([place('source', 'w-1', 0)]);
    expect(chooseMove({ workers: ['w-1', 'w-2'], placements })).toEqual({
      uneven: true, move: { computation: 'counter', instanceId: 'counter-0', index: 0, from: 'w-1', to: 'w-2', fromLoad: 5, toLoad: 0 },
    });
    // 3 and 2: even enough.
    const after = placements.map((p) => (p.index < 2 && p.computation === 'counter' ? { ...p, workerId: 'w-2' } : p));
    expect(chooseMove({ workers: ['w-1', 'w-2'], placements: after })).toEqual({ uneven: false });
  });

  it('spreads each computation: it takes an instance of the one most concentrated on the source worker', () => {
    const placements = [place('a', 'w-1', 0), place('b', 'w-1', 0), place('b', 'w-1', 1), place('b', 'w-1', 2), place('a', 'w-2', 1)];
    expect(chooseMove({ workers: ['w-1', 'w-2', 'w-3'], placements }).move).toMatchObject({ computation: 'b', from: 'w-1', to: 'w-3' });
  });

  it('does nothing with one worker or an even load, and ignores placements on workers that are not live', () => {
    expect(chooseMove({ workers: ['w-1'], placements: [place('a', 'w-1', 0), place('a', 'w-1', 1), place('a', 'w-1', 2)] })).toEqual({ uneven: false });
    expect(chooseMove({ workers: ['w-1', 'w-2'], placements: [place('a', 'w-1', 0), place('a', 'w-2', 1), place('a', 'dead', 2), place('a', 'dead', 3)] }))
      .toEqual({ uneven: false });
  });

  it('skips what may not move and tries the next loaded worker; reports uneven when nothing can move', () => {
    const stuck = [0, 1, 2].map((i) => place('a', 'w-1', i, false));
    expect(chooseMove({ workers: ['w-1', 'w-2'], placements: stuck })).toEqual({ uneven: true });
    const mixed = [...stuck, place('b', 'w-1', 0, false), place('c', 'w-3', 0), place('c', 'w-3', 1), place('c', 'w-3', 2)];
    expect(chooseMove({ workers: ['w-1', 'w-2', 'w-3'], placements: mixed }).move).toMatchObject({ computation: 'c', from: 'w-3', to: 'w-2', fromLoad: 3, toLoad: 0 });
  });

  it('is deterministic: ties go to the lowest worker id, then computation name and index', () => {
    const placements = [place('b', 'w-2', 0), place('a', 'w-2', 1), place('a', 'w-2', 0), place('b', 'w-3', 1), place('b', 'w-3', 2), place('b', 'w-3', 3)];
    // w-2 and w-3 both run 3: w-2 gives one; of its computations, a has the most there; its lowest index goes.
    expect(chooseMove({ workers: ['w-3', 'w-2', 'w-1'], placements }).move).toMatchObject({ computation: 'a', index: 0, from: 'w-2', to: 'w-1' });
    const tied = [place('b', 'w-2', 1), place('a', 'w-2', 1), place('b', 'w-2', 0)];
    expect(chooseMove({ workers: ['w-2', 'w-1', 'w-0'], placements: tied }).move).toMatchObject({ computation: 'b', index: 0, from: 'w-2', to: 'w-0' });
  });
});

describe('rebalance when a worker joins a running topology', () => {
  it('moves instances to a worker started with `topo worker`, one at a time, with nothing lost', async () => {
    const c = (cluster = await startCluster({ workers: 1 }));
    await c.client.deployFile(fixture('counter'), { instances: 4 });
    const { input, output } = await tapCounter(c.client);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    await c.client.deployFile(fixture('source'));
    await waitFor(() => output.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 15_000 });
    expect(new Set((await placementOf(c, COUNTER)).map((i) => i.workerId))).toEqual(new Set(['w-1']));

    const joined = spawn(process.execPath, [topoBin, 'worker', '--nats', c.url, '--id', 'w-new', '--host', 'joiner', '--data-dir', join(c.dir, 'worker-new')],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(joined);
    let stderr = '';
    joined.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    joined.stdout!.resume();

    const at = Date.now();
    const workers = await waitFor(async () => {
      const s = await c.client.status();
      const w = s.workers.filter((x) => x.alive);
      const insts = s.computations.flatMap((x) => x.instances);
      const on = (id: string) => insts.filter((i) => i.workerId === id && i.state === 'running').length;
      return w.length === 2 && on('w-1') === 3 && on('w-new') === 2 ? s.workers : undefined;
    }, { what: 'the load spread 3/2 over w-1 and w-new', timeoutMs: 30_000 });
    expect(workers.find((w) => w.workerId === 'w-new')).toMatchObject({ host: 'joiner', alive: true });
    const spreadMs = Date.now() - at;

    const moves = (await c.client.history(COUNTER)).filter((e) => e.action === 'move');
    expect(moves).toHaveLength(2);
    expect(moves.every((e) => e.result === 'ok' && /-> w-new$/.test(e.steps?.find((st) => st.step === 'target')?.detail ?? ''))).toBe(true);
    expect(stderr).toMatch(/starting worker w-new \(host joiner\)/);
    // And no further moves: balanced.
    await sleep(3_000);
    expect((await c.client.history(COUNTER)).filter((e) => e.action === 'move')).toHaveLength(2);
    expect(c.logTail('controller', 200)).toMatch(/rebalance: moving instance \d of \\?"swap-counter\\?" from w-1 \(5 instances\) to w-new \(0 instances\)/);

    await c.client.kill(SOURCE);
    const upTo = await settle(input.records, output.records, 60_000);
    const a = audit(output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    expect(a.keys).toBe(40);
    const records = [...upTo.values()].reduce((n, s) => n + s, 0);
    console.log(`rebalance: ${records} records over 40 keys, lost ${a.lost}, duplicated ${a.duplicated}, reordered ${a.reordered}, bad counts ${a.badCounts}; ` +
      `spread 3/2 ${spreadMs} ms after \`topo worker\`; pauses ${moves.map((e) => e.pauseMs).join(', ')} ms`);

    // Ctrl-C / SIGTERM stops the foreground worker cleanly.
    const exited = new Promise<number | null>((r) => joined.once('exit', (code) => r(code)));
    joined.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/worker w-new stopped/);
  }, 120_000);
});

describe('rebalance when a worker comes back', () => {
  it('moves instances back to a worker that died and was restarted', async () => {
    const c = (cluster = await startCluster({ workers: 2 }));
    await c.client.deployFile(fixture('counter'), { instances: 4 });
    const spread = await allRunning(c, COUNTER, 4);
    expect(spread.filter((i) => i.workerId === 'w-2')).toHaveLength(2);
    await c.killWorker(2);
    // Its lease runs out; its instances are re-placed on w-1.
    await waitFor(async () => {
      const insts = await placementOf(c, COUNTER);
      return insts.length === 4 && insts.every((i) => i.workerId === 'w-1' && i.state === 'running');
    }, { what: 'all 4 instances re-placed on w-1', timeoutMs: 20_000 });
    await c.startWorker(2);
    await waitFor(async () => {
      const insts = await placementOf(c, COUNTER);
      return insts.filter((i) => i.workerId === 'w-2' && i.state === 'running').length === 2;
    }, { what: 'two instances moved back to w-2', timeoutMs: 20_000 });
    const moves = (await c.client.history(COUNTER)).filter((e) => e.action === 'move');
    expect(moves.map((e) => e.result)).toEqual(['ok', 'ok']);
  }, 60_000);
});
