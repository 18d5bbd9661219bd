/**
 * The controller killed with -9 (idle, in the middle of a swap, a scale, a
 * fuse and a rebalance move) and started again the way `topo up` does it:
 * by its supervisor, by `topo up` asking a live supervisor to start it now,
 * or by `topo up` after the supervisor died too. Real processes throughout
 * (the supervised topology of `topo up`, nats-server, controller, 3 workers).
 *
 * A sequence-numbered source feeds a key-grouped counter; the counter's input
 * and output are tapped and audited per key. Streams are at-most-once core
 * NATS, so the only loss allowed is none: a paused producer holds its output,
 * and the workers running a change roll it back by themselves when its lease
 * runs out while the upstreams are still paused. Each case checks that the
 * outcome is in history (never left "in progress"), the topology is healthy
 * (`topo status`), and the next change of the same kind works.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SwapRolledBackError, subjects, type Heartbeat, type HistoryEntry, type InstanceState } from '../protocol/index.js';
import { TopoClient } from '../runtime/client/client.js';
import { swapReplyOf } from '../runtime/client/index.js';
import { isAlive } from '../runtime/client/processes.js';
import { downSupervised, readSupervisedRun, upSupervised, type SupervisedRunInfo } from '../runtime/client/supervised.js';
import { decodeJson } from '../runtime/transport/rpc.js';
import { COUNTER, SOURCE } from './fixtures/swap-e2e-lib.js';
import { settingsFrom } from '../runtime/controller/controller.js';
import { runTopo, topoBin, waitFor } from './harness.js';
import { audit, fixture, NO_PROBLEMS, problems, settle, tapCounter, type OutRecord, type Tap } from './swap-helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Latest reported state of every instance, from the workers' heartbeats. */
function watchHeartbeats(client: TopoClient) {
  const states = new Map<string, { state: InstanceState; workerId: string; computation: string }>();
  const sub = client.nc.subscribe(subjects.heartbeatAll, {
    callback: (err, msg) => {
      if (err) return;
      const hb = decodeJson<Heartbeat>(msg.data);
      for (const i of hb.instances) states.set(i.instanceId, { state: i.state, workerId: hb.workerId, computation: i.computation });
    },
  });
  return { states, stop: () => sub.unsubscribe() };
}

/** A topology started as `topo up` starts it (supervised), in a fresh folder. */
class Topology {
  input!: Tap<{ key: string; seq: number }>;
  output!: Tap<OutRecord>;
  heartbeats!: ReturnType<typeof watchHeartbeats>;
  readonly children: ChildProcess[] = [];
  private readonly pids = new Set<number>();

  private constructor(readonly base: string, readonly dir: string, readonly client: TopoClient, readonly env: NodeJS.ProcessEnv) {}

  static async up(opts: { workers: number; env?: NodeJS.ProcessEnv }): Promise<Topology> {
    const base = mkdtempSync(join(tmpdir(), 'topo-ctlkill-'));
    const dir = join(base, '.topo');
    const env = { TOPO_AUTOPILOT: '0', ...opts.env };
    const up = await upSupervised({ dir, workers: opts.workers, env });
    const client = await TopoClient.connect(up.run.natsUrl, { name: 'controller-kill-test', creds: up.run.credsFile });
    const t = new Topology(base, dir, client, env);
    t.remember();
    t.heartbeats = watchHeartbeats(client);
    return t;
  }

  run(): SupervisedRunInfo {
    const r = readSupervisedRun(this.dir);
    if (!r) throw new Error(`no run.json in ${this.dir}`);
    return r;
  }

  /** Every pid seen, so that none outlives the test. */
  remember(): void {
    const r = readSupervisedRun(this.dir);
    if (!r) return;
    for (const pid of [r.supervisorPid, r.pids.nats, r.pids.controller, ...r.pids.workers]) if (pid && pid > 0) this.pids.add(pid);
  }

  /** Deploys `counter` (instances) and the 40-key source, with both streams tapped; waits for output. */
  async deploy(counter: string, instances: number): Promise<void> {
    await this.client.deployFile(fixture(counter), { instances });
    ({ input: this.input, output: this.output } = await tapCounter(this.client));
    await this.client.deployFile(fixture('source'));
    await waitFor(() => this.output.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 20_000 });
  }

  controllerPid(): number {
    return this.run().pids.controller;
  }

  /** kill -9 of the controller; resolves once it is gone. */
  async killController(): Promise<number> {
    const pid = this.controllerPid();
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !isAlive(pid), { what: `controller pid ${pid} gone`, intervalMs: 10 });
    return pid;
  }

  /**
   * kill -9 of the controller the moment it sends `op` to a worker (seen on the workers' control
   * subjects, which any client may subscribe to); resolves once it is gone.
   */
  async killControllerOn(op: string): Promise<number> {
    const pid = this.controllerPid();
    let seen!: () => void;
    const sent = new Promise<void>((r) => (seen = r));
    const sub = this.client.nc.subscribe(subjects.workerControl('*'), {
      callback: (err, msg) => {
        if (err || decodeJson<{ op?: string }>(msg.data).op !== op) return;
        sub.unsubscribe();
        process.kill(pid, 'SIGKILL');
        seen();
      },
    });
    await this.client.nc.flush();
    await sent;
    await waitFor(() => !isAlive(pid), { what: `controller pid ${pid} gone`, intervalMs: 10 });
    return pid;
  }

  /** Waits until the supervisor has started a new controller (not `old`) and it answers status. */
  async controllerBack(old: number, timeoutMs = 20_000): Promise<number> {
    const pid = await waitFor(() => {
      const p = this.run().processes?.find((x) => x.name === 'controller');
      return p?.state === 'running' && p.pid !== old && p.pid !== undefined && isAlive(p.pid) ? p.pid : undefined;
    }, { what: 'a new controller started by the supervisor', timeoutMs });
    this.remember();
    await waitFor(() => this.client.status({ timeoutMs: 1_000 }), { what: 'the new controller answering status', timeoutMs });
    return pid;
  }

  /** `topo up` again, as the CLI runs it (with this topology's environment). */
  async topoUp(): Promise<{ code: number; stdout: string; stderr: string }> {
    const r = await runTopo(['up', '--dir', this.dir], { cwd: this.base, env: this.env, timeoutMs: 60_000 });
    this.remember();
    return r;
  }

  /** Every computation's instances running, 3 workers alive, each a process the supervisor runs; the CLI's view too. */
  async healthy(): Promise<void> {
    await waitFor(async () => {
      const s = await this.client.status({ timeoutMs: 2_000 });
      return s.computations.length > 0 && s.computations.every((c) => c.instances.length > 0 && c.instances.every((i) => i.state === 'running')) &&
        s.workers.filter((w) => w.alive).length >= 3;
    }, { what: 'every instance running on live workers', timeoutMs: 30_000, intervalMs: 200 });
    const cli = await runTopo(['status', '--json'], { cwd: this.base });
    expect(cli.code, cli.stderr).toBe(0);
    const parsed = JSON.parse(cli.stdout) as { processes?: { name: string; state: string }[]; computations: { name: string }[] };
    expect(parsed.processes?.every((p) => p.state === 'running'), JSON.stringify(parsed.processes)).toBe(true);
    expect(parsed.computations.map((c) => c.name).sort()).toEqual([SOURCE, COUNTER].sort());
  }

  /** Waits until heartbeats show every instance of `name` listed in `ids` as `state`. */
  async until(ids: string[], state: InstanceState, what: string): Promise<void> {
    await waitFor(() => ids.every((id) => this.heartbeats.states.get(id)?.state === state), { what, timeoutMs: 15_000, intervalMs: 5 });
  }

  /** Stops the source, waits until everything it published was counted, audits every key. */
  async audited(): Promise<{ records: number; keys: number }> {
    await this.client.kill(SOURCE);
    const upTo = await settle(this.input.records, this.output.records, 60_000);
    const a = audit(this.output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    expect(a.keys).toBe(40);
    return { records: [...upTo.values()].reduce((n, s) => n + s, 0), keys: a.keys };
  }

  async stop(): Promise<void> {
    this.heartbeats?.stop();
    await this.input?.stop().catch(() => undefined);
    await this.output?.stop().catch(() => undefined);
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await this.client.close().catch(() => undefined);
    this.remember();
    await downSupervised(this.dir).catch(() => undefined);
    for (const pid of this.pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    if (process.env.TOPO_KEEP_TEST_DIRS === '1') console.log(`controller-kill.test: kept ${this.base}`);
    else rmSync(this.base, { recursive: true, force: true });
  }
}

let topology: Topology | undefined;
afterEach(async () => {
  await topology?.stop();
  topology = undefined;
});

async function instancesOf(t: Topology, name: string) {
  const s = await t.client.status();
  return s.computations.find((c) => c.name === name)?.instances ?? [];
}

/** The latest history entry of `action`, once there is one at or after `since` that is not in progress. */
async function outcome(t: Topology, name: string, action: HistoryEntry['action'], since: number): Promise<HistoryEntry> {
  return waitFor(async () => (await t.client.history(name)).filter((e) => e.action === action && e.at >= since).at(-1),
    { what: `the outcome of the ${action} of ${name} in history`, timeoutMs: 30_000, intervalMs: 250 });
}

/** The swap journal the controller keeps while a change runs: gone once the outcome is recorded. */
async function noJournal(t: Topology): Promise<void> {
  const { Kvm } = await import('@nats-io/kv');
  const kv = await new Kvm(t.client.nc).open('topo_state');
  await waitFor(async () => {
    const left: string[] = [];
    for await (const k of await kv.keys('swap.>')) left.push(k);
    return left.length === 0;
  }, { what: 'no swap journal left in topo_state', timeoutMs: 15_000 });
}

describe('the controller killed with -9', () => {
  it('while idle: the supervisor starts it again, nothing is lost, the next swap works', async () => {
    const t = (topology = await Topology.up({ workers: 3 }));
    await t.deploy('counter-a', 2);
    const before = (await instancesOf(t, COUNTER)).map((i) => i.instanceId).sort();
    const old = await t.killController();
    const killedAt = Date.now();
    const pid = await t.controllerBack(old);
    const backMs = Date.now() - killedAt;
    await t.healthy();
    // Nothing was re-placed: the same instances run (the workers kept running without a controller).
    expect((await instancesOf(t, COUNTER)).map((i) => i.instanceId).sort()).toEqual(before);
    const mark = t.output.records.length;
    await waitFor(() => t.output.records.length > mark + 2_000, { what: 'records flowing after the restart' });
    const r = await t.client.swap(COUNTER, fixture('counter-b'));
    expect(r.result).toBe('ok');
    const { records } = await t.audited();
    console.log(`controller-kill.test: idle kill, new controller pid ${pid} serving ${backMs} ms after the kill; ${records} records, 0 lost`);
  }, 120_000);

  it('mid-swap (after preload, upstreams paused), started again at once by its supervisor: rolled back, 0 lost, the next swap works', async () => {
    const t = (topology = await Topology.up({ workers: 3 }));
    await t.deploy('counter-a', 2);
    const olds = (await instancesOf(t, COUNTER)).map((i) => i.instanceId);
    const source = (await instancesOf(t, SOURCE)).map((i) => i.instanceId);
    const sentAt = Date.now();
    // init of the new version takes 1 s: the kill lands while the upstreams are paused and the old instances on standby.
    const swap = t.client.swap(COUNTER, fixture('counter-init-slow')).then(
      (r) => new Error(`swap answered ${r.result} although its controller was killed`), (e: unknown) => e);
    await t.until(olds, 'standby', 'the old counter instances released (standby)');
    const old = await t.killController();
    const killedAt = Date.now();
    await t.controllerBack(old);

    // The interrupted client learns the outcome from history, from the restarted controller.
    const err = await swap;
    expect(err).toBeInstanceOf(SwapRolledBackError);
    const entry = await outcome(t, COUNTER, 'swap', sentAt);
    expect(entry.result).toBe('rolled-back');
    expect(entry.error).toMatch(/controller stopped/);
    expect(swapReplyOf(err)?.version).toBe(entry.version);
    // History says how far it got: loaded, upstreams paused (the source), then the restarted controller's
    // rollback: the source paused again, the abort, the source resumed.
    const steps = entry.steps ?? [];
    expect(steps.filter((s) => s.ok).map((s) => s.step).slice(0, 2)).toEqual(['preload', 'pause']);
    expect(steps.find((s) => s.step === 'pause')?.detail).toContain(source[0]);
    expect(steps.slice(-3).map((s) => s.step)).toEqual(['pause', 'abort', 'resume']);
    expect(steps.at(-2)).toMatchObject({ ok: true, detail: expect.stringMatching(/by the restarted controller on 2 worker/) });
    const recoveredMs = Date.now() - killedAt;
    await noJournal(t);
    await t.healthy();
    const rec = (await t.client.computation(COUNTER))!;
    expect(rec.version).toBe(entry.fromVersion);
    expect(rec.placements.map((p) => p.instanceId).sort()).toEqual([...olds].sort());

    const next = await t.client.swap(COUNTER, fixture('counter-b'));
    expect(next.result).toBe('ok');
    const { records } = await t.audited();
    console.log(`controller-kill.test: mid-swap kill, restarted by the supervisor; outcome in history ${recoveredMs} ms after the kill ` +
      `(steps ${steps.map((st) => st.step).join(' > ')}; abort ${steps.at(-2)?.detail}); ${records} records, 0 lost`);
  }, 120_000);

  it('mid-swap, away past every lease with its supervisor dead too: the workers roll back by themselves, `topo up` starts a controller that records it', async () => {
    const t = (topology = await Topology.up({ workers: 3 }));
    await t.deploy('counter-a', 2);
    const olds = (await instancesOf(t, COUNTER)).map((i) => i.instanceId);
    const sentAt = Date.now();
    const swap = t.client.swap(COUNTER, fixture('counter-init-slow')).then(
      (r) => new Error(`swap answered ${r.result} although its controller was killed`), (e: unknown) => e);
    await t.until(olds, 'standby', 'the old counter instances released (standby)');
    const supervisor = t.run().supervisorPid!;
    process.kill(supervisor, 'SIGKILL');
    await t.killController();
    await waitFor(() => !isAlive(supervisor), { what: 'supervisor gone' });
    // Past the swap lease (3.5 s) and the pause lease (5 s): the workers rolled back, the source runs again.
    await waitFor(() => olds.every((id) => t.heartbeats.states.get(id)?.state === 'running'), { what: 'the old instances running again without a controller', timeoutMs: 10_000 });
    const mark = t.output.records.length;
    await waitFor(() => t.output.records.length > mark + 2_000, { what: 'records flowing with no controller' });
    expect(new Set(t.output.records.slice(mark).map((o) => o.code))).toEqual(new Set(['a']));

    const up = await t.topoUp();
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain('still running: kept them');
    expect(up.stdout).toMatch(/started .*controller \(pid \d+\)/);
    const err = await swap;
    // Silent for longer than the client waits (15 s) or recorded: either way the outcome is in history now.
    const entry = await outcome(t, COUNTER, 'swap', sentAt);
    expect(entry.result).toBe('rolled-back');
    expect(entry.error).toMatch(/controller stopped/);
    if (!(err instanceof SwapRolledBackError)) expect((err as Error).message).toMatch(/stopped answering|rolled back/);
    await noJournal(t);
    await t.healthy();
    const next = await t.client.swap(COUNTER, fixture('counter-b'));
    expect(next.result).toBe('ok');
    const { records } = await t.audited();
    console.log(`controller-kill.test: mid-swap kill with the supervisor dead, \`topo up\` after the leases; rolled back by the workers; ${records} records, 0 lost`);
  }, 150_000);

  it('mid-scale, left in its supervisor\'s backoff until `topo up` starts it: rolled back, 0 lost, the next scale works', async () => {
    // A restart backoff of about a minute: the controller stays dead until `topo up` asks the supervisor to start it.
    const t = (topology = await Topology.up({ workers: 3, env: { TOPO_RESTART_BASE_MS: '60000' } }));
    await t.deploy('counter-init-slow', 2);
    const olds = (await instancesOf(t, COUNTER)).map((i) => i.instanceId);
    const sentAt = Date.now();
    const scale = t.client.scale(COUNTER, 3).then(
      (r) => new Error(`scale answered ${r.result} although its controller was killed`), (e: unknown) => e);
    await t.until(olds, 'standby', 'the old counter instances released (standby)');
    await t.killController();
    await waitFor(() => t.run().processes?.find((p) => p.name === 'controller')?.state === 'backoff', { what: 'the controller in backoff' });
    await waitFor(() => olds.every((id) => t.heartbeats.states.get(id)?.state === 'running'), { what: 'the old instances running again without a controller', timeoutMs: 10_000 });

    const up = await t.topoUp();
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/started controller \(pid \d+, was in backoff\)/);
    await scale;
    const entry = await outcome(t, COUNTER, 'scale', sentAt);
    expect(entry.result).toBe('rolled-back');
    expect(entry.error).toMatch(/controller stopped/);
    await noJournal(t);
    await t.healthy();
    expect((await t.client.computation(COUNTER))!.instances).toBe(2);

    const next = await t.client.scale(COUNTER, 3);
    expect(next.result).toBe('ok');
    await t.healthy();
    const { records } = await t.audited();
    console.log(`controller-kill.test: mid-scale kill, \`topo up\` started it from backoff; rolled back; ${records} records, 0 lost`);
  }, 150_000);

  // After the resume, the new instances take input while on probation (their output held). A scale's new
  // instance may take records whose old owner runs on another worker: rolled back, those go back through the
  // store (a handback) and must reach that old instance before the upstreams go, whoever rolls back.
  for (const how of ['started again at once by its supervisor', 'away past the leases until `topo up` starts it'] as const) {
    it(`mid-scale on probation (upstreams resumed), ${how}: rolled back, what the new instances took handed back, 0 lost`, async () => {
      const late = how.startsWith('away');
      const t = (topology = await Topology.up({ workers: 3, ...(late ? { env: { TOPO_RESTART_BASE_MS: '60000' } } : {}) }));
      // Each new instance's first record takes 1.2 s: they stay on probation that long after the resume.
      await t.deploy('counter-first-slow', 2);
      const olds = (await instancesOf(t, COUNTER)).map((i) => i.instanceId);
      const sentAt = Date.now();
      const scale = t.client.scale(COUNTER, 3).then(
        (r) => new Error(`scale answered ${r.result} although its controller was killed`), (e: unknown) => e);
      // Killed as it asks for the health verdict: the upstreams have resumed and the new instances take their input.
      const old = await t.killControllerOn('health');
      const mark = t.input.records.length;
      await waitFor(() => t.input.records.length > mark + 400, { what: 'the source publishing (resumed)', timeoutMs: 10_000, intervalMs: 5 });
      if (late) {
        await waitFor(() => olds.every((id) => t.heartbeats.states.get(id)?.state === 'running'), { what: 'the old instances running again without a controller', timeoutMs: 10_000 });
        await sleep(3_000);
        const up = await t.topoUp();
        expect(up.code, up.stderr).toBe(0);
      } else await t.controllerBack(old);
      await scale;
      const entry = await outcome(t, COUNTER, 'scale', sentAt);
      expect(entry.result).toBe('rolled-back');
      await noJournal(t);
      await t.healthy();
      expect((await t.client.computation(COUNTER))!.instances).toBe(2);
      const { records } = await t.audited();
      console.log(`controller-kill.test: mid-scale kill on probation, ${how}; rolled back; ${records} records, 0 lost`);
    }, 150_000);
  }

  // A fused chain's members are released front to back and reinstated back to front: the counter must be
  // subscribed again before the reinstated source publishes, whoever rolls back (the restarted controller, or
  // the workers by themselves once the swap lease runs out).
  for (const how of ['started again at once by its supervisor', 'away past the leases until `topo up` starts it'] as const) {
    it(`mid-fuse, ${how}: rolled back for every member, 0 lost, the next fuse and split work`, async () => {
      const late = how.startsWith('away');
      const t = (topology = await Topology.up({ workers: 3, ...(late ? { env: { TOPO_RESTART_BASE_MS: '60000' } } : {}) }));
      await t.deploy('counter-init-slow', 1);
      const olds = [...(await instancesOf(t, COUNTER)), ...(await instancesOf(t, SOURCE))].map((i) => i.instanceId);
      const sentAt = Date.now();
      const fuse = t.client.fuse([SOURCE, COUNTER]).then(
        (r) => new Error(`fuse answered ${r.result} although its controller was killed`), (e: unknown) => e);
      await t.until(olds, 'standby', 'the source and counter released (standby)');
      const old = await t.killController();
      if (late) {
        await waitFor(() => olds.every((id) => t.heartbeats.states.get(id)?.state === 'running'), { what: 'both running again without a controller', timeoutMs: 10_000 });
        const up = await t.topoUp();
        expect(up.code, up.stderr).toBe(0);
        expect(up.stdout).toMatch(/started controller \(pid \d+, was in backoff\)/);
      } else await t.controllerBack(old);
      const err = await fuse;
      expect(err).toBeInstanceOf(SwapRolledBackError);
      for (const name of [SOURCE, COUNTER]) {
        const entry = await outcome(t, name, 'fuse', sentAt);
        expect(entry.result, `${name}: ${JSON.stringify(entry)}`).toBe('rolled-back');
        expect(entry.error).toMatch(/controller stopped/);
      }
      await noJournal(t);
      await t.healthy();
      expect((await t.client.status()).fusion ?? []).toEqual([]);

      const fused = await t.client.fuse([SOURCE, COUNTER]);
      expect(fused.result).toBe('ok');
      expect((await t.client.status()).fusion?.map((g) => g.members)).toEqual([[SOURCE, COUNTER]]);
      const split = await t.client.split(COUNTER);
      expect(split.result).toBe('ok');
      await t.healthy();
      const { records } = await t.audited();
      console.log(`controller-kill.test: mid-fuse kill, ${how}; rolled back, then fused and split; ${records} records, 0 lost`);
    }, 150_000);
  }

  it('mid-move of a rebalance, started again by its supervisor: rolled back, the restarted controller moves it, 0 lost', async () => {
    const t = (topology = await Topology.up({ workers: 3, env: { TOPO_AUTOPILOT: '0' } }));
    // 4 counter instances and the source on 3 workers: 2/2/1. A fourth worker joins: one instance moves to it.
    await t.deploy('counter-init-slow', 4);
    // From the project folder: `topo worker` makes itself a worker credential from its .topo/auth.
    const joined = spawn(process.execPath, [topoBin, 'worker', '--nats', t.run().natsUrl, '--id', 'w-new', '--data-dir', join(t.dir, 'worker-new')],
      { stdio: 'ignore', cwd: t.base, env: { ...process.env, ...t.env } });
    t.children.push(joined);
    const sentAt = Date.now();
    const released = await waitFor(() => [...t.heartbeats.states].find(([, s]) => s.computation === COUNTER && s.state === 'standby')?.[0],
      { what: 'an instance released for a move to w-new', timeoutMs: 30_000, intervalMs: 5 });
    const old = await t.killController();
    await t.controllerBack(old);
    const first = await waitFor(async () => (await t.client.history(COUNTER)).find((e) => e.action === 'move' && e.at >= sentAt),
      { what: 'the interrupted move in history', timeoutMs: 30_000, intervalMs: 250 });
    expect(first.result).toBe('rolled-back');
    expect(first.error).toMatch(/controller stopped/);
    // The restarted controller rebalances again: w-new gets an instance, moved with its state.
    await waitFor(async () => (await instancesOf(t, COUNTER)).some((i) => i.workerId === 'w-new' && i.state === 'running'),
      { what: 'an instance moved to w-new by the restarted controller', timeoutMs: 30_000 });
    const moves = (await t.client.history(COUNTER)).filter((e) => e.action === 'move' && e.at >= sentAt);
    expect(moves.map((e) => e.result)).toEqual(['rolled-back', 'ok']);
    await noJournal(t);
    await t.healthy();
    const { records } = await t.audited();
    console.log(`controller-kill.test: mid-move kill (${released} on standby), restarted by the supervisor; rolled back, then moved; ${records} records, 0 lost`);
  }, 150_000);
});

describe('the swap lease of a controller that dies', () => {
  // Worst case: the controller renewed the swap lease just before it died, and the upstream pauses
  // one renewal period (pauseRenewMs) before that. The workers' self-rollback first pauses the
  // upstreams again: it needs the swap lease to run out a margin before any pause can.
  it('runs out at least a second before the upstream pauses can, with the default settings', () => {
    const s = settingsFrom({ natsUrl: 'nats://127.0.0.1:4222' });
    const pausesHoldAtLeastMs = s.pauseLeaseMs - s.pauseRenewMs;
    expect(pausesHoldAtLeastMs - s.swapLeaseMs).toBeGreaterThanOrEqual(1_000);
  });

  it('keeps a margin with other pause settings, and refuses a swap lease that could outlast the pauses', () => {
    for (const [pauseLeaseMs, pauseRenewMs] of [[1_000, 100], [400, 100], [3_000, 1_000], [20_000, 5_000]] as const) {
      const s = settingsFrom({ natsUrl: 'nats://127.0.0.1:4222', pauseLeaseMs, pauseRenewMs });
      expect(s.swapLeaseMs, `pauseLeaseMs ${pauseLeaseMs}, pauseRenewMs ${pauseRenewMs}`).toBeLessThan(pauseLeaseMs - pauseRenewMs);
      expect(s.swapLeaseMs).toBeGreaterThan(pauseRenewMs / 2);
    }
    expect(() => settingsFrom({ natsUrl: 'nats://127.0.0.1:4222', swapLeaseMs: 3_600 })).toThrow(/swapLeaseMs \(3600\) must be shorter than pauseLeaseMs - pauseRenewMs \(3500/);
  });
});
