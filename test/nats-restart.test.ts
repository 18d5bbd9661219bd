/**
 * nats-server restarts under load, with its JetStream data on disk (what the supervisor of `topo up`
 * does when the server dies): the topology must resume by itself. Workers and controller reconnect,
 * desired state and artifacts are still in KV and the Object Store, every instance runs again and
 * records flow again on the output stream.
 *
 * Records in flight on core NATS while the server is down are lost (streams are at-most-once): what
 * the source publishes meanwhile is dropped by nats.js itself, which resets its outbound buffer on every
 * connection attempt. The test counts them in its output but does not assert zero.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Objm } from '@nats-io/obj';
import { buckets, type ComputationRecord, type Heartbeat, type StatusReply } from '../protocol/index.js';
import { WorkerTable } from '../runtime/controller/workerTable.js';
import { isMalformed, type TapRecord, type TopoClient } from '../runtime/client/client.js';
import { startCluster, waitFor, type Cluster } from './harness.js';

const fixture = (name: string) => `test/fixtures/${name}.ts`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects records of a stream in the background until stop(); the tap follows the client's reconnects. */
function collect(client: TopoClient, stream: string) {
  const records: TapRecord[] = [];
  const ac = new AbortController();
  const done = (async () => {
    for await (const item of client.tap(stream, { signal: ac.signal })) if (!isMalformed(item)) records.push(item);
  })();
  return { records, stop: async () => (ac.abort(), await done) };
}

const nOf = (r: TapRecord) => (r.value as { n: number }).n;
const maxN = (records: TapRecord[]) => records.reduce((m, r) => Math.max(m, nOf(r)), 0);

/** Every computation of `expected` has all its desired instances running on live workers. */
function allRunning(status: StatusReply, expected: Map<string, number>): boolean {
  const alive = new Set(status.workers.filter((w) => w.alive).map((w) => w.workerId));
  return [...expected].every(([name, count]) => {
    const c = status.computations.find((x) => x.name === name);
    return c !== undefined && c.instances.length === count && c.instances.every((i) => i.state === 'running' && alive.has(i.workerId));
  });
}

/** "computation#index" -> "instanceId@workerId", for every instance in the status. */
function placements(status: StatusReply): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of status.computations) for (const i of c.instances) out[`${c.name}#${i.index}`] = `${i.instanceId}@${i.workerId}`;
  return out;
}

function describeStatus(status: StatusReply | undefined): string {
  if (!status) return 'no status';
  const workers = status.workers.map((w) => `${w.workerId}:${w.alive ? 'alive' : 'dead'}`).join(' ');
  const comps = status.computations.map((c) => `${c.name}[${c.instances.map((i) => `${i.index}@${i.workerId}:${i.state}`).join(',')}]`).join(' ');
  return `workers ${workers}; ${comps}`;
}

describe('worker leases across a broker outage', () => {
  const LEASE = 1_000;
  const hb = (workerId: string): Heartbeat => ({ workerId, host: 'h', pid: 1, lang: 'ts', at: 0, instances: [] });

  it('start afresh for live workers when the controller is back, and leave dead and unconfirmed ones alone', () => {
    const t = new WorkerTable(LEASE);
    for (const id of ['w-1', 'w-2']) {
      t.heartbeat(hb(id), 0);
      t.heartbeat(hb(id), 0);
    }
    t.heartbeat(hb('w-3'), 0); // seen once: not a worker yet
    t.heartbeat(hb('w-2'), 100);
    expect(t.expire(LEASE + 50).map((w) => w.workerId)).toEqual(['w-1']);
    // Back at 3 000 after an outage: w-2 gets a lease from there, as after a controller restart.
    expect(t.renewLeases(3_000)).toBe(1);
    expect(t.expire(3_000 + LEASE)).toEqual([]);
    expect(t.isAlive('w-2')).toBe(true);
    expect(t.isAlive('w-1')).toBe(false);
    expect(t.get('w-3')).toBeUndefined();
    expect(t.expire(3_000 + LEASE + 1).map((w) => w.workerId)).toEqual(['w-2']);
  });
});

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe('nats-server restarts under load with its JetStream data on disk', () => {
  // SIGTERM: a clean shutdown, back at once. SIGKILL: a crash, down for longer than a worker lease (5 s),
  // so the controller declares the workers dead during the outage and must sort it out when they are back.
  for (const { signal, downMs } of [{ signal: 'SIGTERM', downMs: 500 }, { signal: 'SIGKILL', downMs: 6_500 }] as const) {
    it(`resumes by itself after ${signal} (down ${downMs} ms)`, async () => {
      cluster = await startCluster({ workers: 2 });
      const c = cluster;
      const { client } = c;
      const out = collect(client, 'restart-counts');
      await client.deployFile(fixture('restart-counter'), { instances: 2 });
      await client.deployFile(fixture('restart-source'));
      const expected = new Map([['restart-counter', 2], ['restart-source', 1]]);
      await waitFor(async () => allRunning(await client.status(), expected), { what: 'every instance running' });
      await waitFor(() => out.records.length >= 1_000, { what: '1000 counted records before the restart', timeoutMs: 15_000 });

      const desired = new Map<string, ComputationRecord>();
      for (const name of expected.keys()) desired.set(name, (await client.computation(name))!);
      const placedBefore = placements(await client.status());

      const seenBefore = out.records.length;
      const maxBefore = maxN(out.records);
      const downAt = Date.now();
      await c.stopNats(signal);
      await sleep(downMs);
      await c.startNats();
      const upAt = Date.now();

      // The controller answers again and reports every instance running on a live worker.
      let last: StatusReply | undefined;
      await waitFor(async () => allRunning((last = await client.status({ timeoutMs: 1_000 })), expected), {
        what: () => `every instance running again after the restart (${describeStatus(last)})\n--- controller ---\n${c.logTail('controller', 20)}`,
        timeoutMs: 30_000,
      });
      const runningAt = Date.now();
      // Nothing was re-placed: the outage silenced every worker at once, none of them died.
      expect(placements(last!), `instances after the restart\n--- controller ---\n${c.logTail('controller', 20)}`).toEqual(placedBefore);
      // Records flow again: numbers the source made after the restart reach the output stream.
      await waitFor(() => maxN(out.records) > maxBefore + 2_000, {
        what: () => `records flowing again after the restart (max n ${maxN(out.records)}, was ${maxBefore} before)\n--- worker 1 ---\n${c.logTail(1, 15)}\n--- worker 2 ---\n${c.logTail(2, 15)}`,
        timeoutMs: 30_000,
      });
      const flowingAt = Date.now();

      // Desired state and artifacts came back from disk unchanged.
      const objects = await new Objm(client.nc).open(buckets.artifacts);
      for (const [name, before] of desired) {
        const after = (await client.computation(name))!;
        expect(after, `${name} in KV after the restart`).toBeDefined();
        expect({ sha: after.sha, version: after.version, instances: after.instances }).toEqual({ sha: before.sha, version: before.version, instances: before.instances });
        const info = await objects.info(before.sha);
        expect(info && !info.deleted && info.size > 0, `artifact ${before.sha} of ${name} in the Object Store`).toBe(true);
      }

      // The workers still follow desired state (their KV watch outlived the restart): a key-grouped reader
      // deployed now makes the counter partition its output by key, so each key reaches one instance only.
      // Its instances start before its desired state is written (lifecycle.ts), so what the counter sent in
      // between went unkeyed to both: only tallies from half a second after the deploy count.
      const tallies = collect(client, 'restart-tallies');
      await client.deployFile(fixture('restart-tally'), { instances: 2 });
      const keyedFrom = Date.now() + 500;
      const settled = () => tallies.records.filter((r) => r.timestamp >= keyedFrom);
      await waitFor(() => settled().length >= 1_000, { what: '1000 tallies from the reader deployed after the restart', timeoutMs: 20_000 });
      await tallies.stop();
      const instancesByKey = new Map<string, Set<number>>();
      for (const r of settled()) instancesByKey.set(r.key, (instancesByKey.get(r.key) ?? new Set()).add((r.value as { instance: number }).instance));
      const spread = [...instancesByKey].filter(([, is]) => is.size > 1).map(([k]) => k);
      expect(spread, 'keys that reached both instances of the reader').toEqual([]);
      expect(new Set([...instancesByKey.values()].flatMap((is) => [...is])).size, 'instances of the reader that got keys').toBe(2);

      // At-most-once on core NATS: count what the outage cost, once the source is gone and the counter drained.
      await client.kill('restart-source');
      await sleep(500);
      await out.stop();
      const ns = out.records.map(nOf);
      const distinct = new Set(ns);
      const top = Math.max(...ns);
      const lost = top - distinct.size;
      const duplicated = ns.length - distinct.size;
      console.log(
        `nats-server restart (${signal}, down ${upAt - downAt} ms): ${seenBefore} records before, ${ns.length} in all up to n=${top}; ` +
          `lost ${lost} (${((100 * lost) / top).toFixed(2)}%), duplicated ${duplicated}; ` +
          `all running ${runningAt - upAt} ms after the restart, records flowing again after ${flowingAt - upAt} ms`,
      );
      // The counter kept its state: whatever was lost, no key's count repeats.
      const counts = new Map<string, number[]>();
      for (const r of out.records) counts.set(r.key, [...(counts.get(r.key) ?? []), (r.value as { count: number }).count]);
      for (const [key, cs] of counts) expect(new Set(cs).size, `counts of ${key} are distinct`).toBe(cs.length);
    });
  }
});
