/**
 * Bridges: producers and consumers outside the controller (PROTOCOL.md,
 * "Bridges"). A registered producer feeding a keyed counter loses nothing
 * while the counter is hot-swapped twice, and its credit debt ends at 0; a
 * registered consumer that is slow makes a fast producer wait and gets every
 * record; garbage registrations, heartbeats, control requests and pause
 * replies are refused or ignored and change nothing. Real nats-server,
 * controller and workers.
 */
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, runTopo, waitFor, type Cluster } from './harness.js';
import { tapStream, type Tap } from './swap-helpers.js';
import { call, encodeJson, serve } from '../runtime/transport/rpc.js';
import { connectNats } from '../runtime/transport/connect.js';
import { packr, subjects, type HistoryEntry } from '../protocol/index.js';
import type { BridgeProducer } from '../runtime/client/bridge.js';
import { BridgeTable } from '../runtime/controller/bridges.js';
import { startController, type ControllerOptions } from '../runtime/controller/controller.js';
import { startNatsServer } from '../runtime/transport/natsServer.js';
import { TopoClient } from '../runtime/client/client.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { BridgeConsumerRegistration } from '../protocol/index.js';

const COUNTER = 'bridge-counter';
const V1 = 'test/fixtures/bridge-counter-v1.ts';
const V2 = 'test/fixtures/bridge-counter-v2.ts';

interface Out { key: string; seq: number; count: number; version: number }

/** Every key's output seqs must be exactly 1..n in order, with counts equal to seqs (state handed over). */
function audit(out: readonly Out[], sent: Map<string, number>): { lost: number; duplicated: number; outOfOrder: number; badCount: number; versions: Set<number> } {
  const byKey = new Map<string, Out[]>();
  for (const r of out) (byKey.get(r.key) ?? byKey.set(r.key, []).get(r.key)!).push(r);
  let lost = 0, duplicated = 0, outOfOrder = 0, badCount = 0;
  const versions = new Set<number>();
  for (const [key, n] of sent) {
    const rs = byKey.get(key) ?? [];
    const seen = new Set<number>();
    let last = 0;
    for (const r of rs) {
      versions.add(r.version);
      if (seen.has(r.seq)) duplicated++;
      seen.add(r.seq);
      if (r.seq < last) outOfOrder++;
      last = r.seq;
      if (r.count !== r.seq) badCount++;
    }
    for (let s = 1; s <= n; s++) if (!seen.has(s)) lost++;
  }
  return { lost, duplicated, outOfOrder, badCount, versions };
}

describe('bridges: producers and consumers outside the controller', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ workers: 2 });
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('a registered producer loses nothing while its consumer is hot-swapped twice, and its debt ends at 0', async () => {
    const { client } = cluster;
    await client.deployFile(V1);
    const output: Tap<Out> = await tapStream(client, 'bridge-out', (key, value) => ({ key, ...(value as Omit<Out, 'key'>) }));
    const producer = await client.producer({ id: 'bp-swap', streams: ['bridge-in'] });
    try {
      // Listed by the controller, in status --json and in the text status.
      const st = await client.status();
      expect(st.bridges?.producers.map((p) => p.id)).toContain('bp-swap');

      const TOTAL = 100_000;
      const KEYS = 64;
      const sent = new Map<string, number>();
      let produced = 0;
      const produceSome = async (n: number): Promise<void> => {
        for (let i = 0; i < n && produced < TOTAL; i++) {
          const key = `k${produced % KEYS}`;
          const seq = (sent.get(key) ?? 0) + 1;
          sent.set(key, seq);
          produced++;
          await producer.produce('bridge-in', key, { seq });
        }
      };

      await produceSome(10_000);
      // Two swaps, one after the other, while records keep coming.
      const swaps = (async () => {
        const a = await client.swap(COUNTER, V2);
        const b = await client.swap(COUNTER, V1);
        return [a, b];
      })();
      let swapsDone = false;
      void swaps.finally(() => (swapsDone = true)).catch(() => undefined);
      while (produced < TOTAL) {
        await produceSome(500);
        // Paced, and never finished before both swaps are: records must be produced during their pauses.
        await new Promise((r) => setTimeout(r, produced > TOTAL - 5_000 && !swapsDone ? 50 : 10));
        if (produced >= TOTAL - 1_000 && !swapsDone) {
          await swaps.catch(() => undefined);
        }
      }
      const [first, second] = await swaps;
      expect(first!.result).toBe('ok');
      expect(second!.result).toBe('ok');
      await producer.flush();
      expect(producer.stats().produced).toBe(TOTAL);

      const history: HistoryEntry[] = await client.history(COUNTER);
      const swapEntries = history.filter((h) => h.action === 'swap' && h.result === 'ok');
      // Nothing lost shows in the output before it settles: wait for it, or for nothing more to come.
      let lastLen = -1;
      await waitFor(() => {
        const done = output.records.length >= TOTAL || (output.records.length === lastLen && lastLen > 0);
        lastLen = output.records.length;
        return done;
      }, {
        what: () => `${TOTAL} counter outputs (have ${output.records.length}; producer ${JSON.stringify(producer.stats())})`, timeoutMs: 30_000, intervalMs: 1_000,
      });
      await new Promise((r) => setTimeout(r, 500)); // duplicates would arrive late
      await output.stop();
      const a = audit(output.records, sent);
      console.log(`bridge swap: sent ${TOTAL}, outputs ${output.records.length}, lost ${a.lost}, duplicated ${a.duplicated}, out of order ${a.outOfOrder}, ` +
        `versions ${[...a.versions].join(',')}, pauses ${producer.stats().pauses}, swaps paused ${swapEntries.map((h) => h.pauseMs).join(' / ')} ms`);
      expect(a.lost).toBe(0);
      expect(a.duplicated).toBe(0);
      expect(a.outOfOrder).toBe(0);
      expect(a.badCount).toBe(0);
      expect(output.records.length).toBe(TOTAL);
      expect(a.versions).toEqual(new Set([1, 2]));
      // Both swaps paused the bridge as an upstream (their pause step names it).
      expect(swapEntries.length).toBe(2);
      for (const h of swapEntries) expect(h.steps?.find((s) => s.step === 'pause')?.detail ?? '').toContain('bridge:bp-swap');
      expect(producer.stats().pauses).toBeGreaterThanOrEqual(2);
      // Every record was credited back by the counter, across both hand-overs.
      await waitFor(() => producer.debt() === 0, { what: () => `the producer's debt to reach 0 (is ${producer.debt()})`, timeoutMs: 10_000 });
      console.log(`bridge swap: final debt ${producer.debt()}`);

      const text = await runTopo(['status', '--nats', cluster.url]);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain('BRIDGES');
      expect(text.stdout).toMatch(/bp-swap\s+bridge-in/);
      expect(text.stdout).toMatch(/bridge-in: bridge:bp-swap -> bridge-counter \(key\)/);
      const json = await runTopo(['status', '--json', '--nats', cluster.url]);
      expect(JSON.parse(json.stdout).bridges.producers.map((p: { id: string }) => p.id)).toContain('bp-swap');
    } finally {
      await producer.close();
      await client.kill(COUNTER).catch(() => undefined);
    }
    // Closed: no longer listed.
    await waitFor(async () => !(await client.status()).bridges?.producers.some((p) => p.id === 'bp-swap'), { what: 'bp-swap unlisted' });
  }, 120_000);

  it('a slow registered consumer makes a fast producer wait (debt bounded by the window) and receives everything', async () => {
    const { client } = cluster;
    const WINDOW = 8_192;
    const TOTAL = 60_000;
    const consumer = client.consume('bridge-fc', { group: 'slowgroup', grouping: 'shuffle', id: 'bc-slow' });
    await consumer.ready;
    expect(consumer.creditGroup).toBe('slowgroup');
    const listed = (await client.status()).bridges?.consumers.find((c) => c.id === 'bc-slow');
    expect(listed).toMatchObject({ group: 'slowgroup', stream: 'bridge-fc', grouping: 'shuffle', creditGroup: 'slowgroup' });
    let producer: BridgeProducer | undefined;
    try {
      producer = await client.producer({ id: 'bp-fast', streams: ['bridge-fc'], window: WINDOW });
      const got = new Map<string, Set<number>>();
      let received = 0, dup = 0;
      const reading = (async () => {
        for await (const r of consumer) {
          const seen = got.get(r.key) ?? got.set(r.key, new Set()).get(r.key)!;
          const seq = (r.value as { seq: number }).seq;
          if (seen.has(seq)) dup++;
          seen.add(seq);
          received++;
          // Slow: about 20k records per second at best.
          if (received % 100 === 0) await new Promise((res) => setTimeout(res, 5));
          if (received === TOTAL) break;
        }
      })();
      let maxDebt = 0;
      const t0 = Date.now();
      for (let i = 0; i < TOTAL; i++) {
        await producer.produce('bridge-fc', `k${i % 16}`, { seq: Math.floor(i / 16) + 1 });
        const d = producer.debt();
        if (d > maxDebt) maxDebt = d;
      }
      await producer.flush();
      const produceMs = Date.now() - t0;
      await reading;
      console.log(`bridge flow control: sent ${TOTAL}, received ${received}, duplicated ${dup}, max debt ${maxDebt} (window ${WINDOW}), ` +
        `producer waited ${producer.stats().waits} time(s), producing took ${produceMs} ms`);
      expect(received).toBe(TOTAL);
      expect(dup).toBe(0);
      expect([...got.values()].reduce((n, s) => n + s.size, 0)).toBe(TOTAL);
      // The producer owed the consumer group, was held back by it, and never ran more than a batch past the window.
      expect(maxDebt).toBeGreaterThan(WINDOW / 2);
      expect(maxDebt).toBeLessThanOrEqual(WINDOW + 256);
      expect(producer.stats().waits).toBeGreaterThan(0);
      // Consumer closed (break): its group is gone from desired state, so the producer owes nothing.
      await waitFor(() => producer!.debt() === 0, { what: () => `debt 0 after the consumer left (is ${producer!.debt()})`, timeoutMs: 10_000 });
      await waitFor(async () => !(await client.status()).bridges?.consumers.some((c) => c.id === 'bc-slow'), { what: 'bc-slow unlisted' });
    } finally {
      await consumer.close();
      await producer?.close();
    }
  }, 120_000);

  it('a computation may not take the name of a bridge consumer group (their credits would mix): the deploy is refused', async () => {
    const { client } = cluster;
    const c = client.consume('bridge-mid', { group: 'bridge-sink', grouping: 'shuffle', id: 'bc-named' });
    await c.ready;
    try {
      await expect(client.deployFile('test/fixtures/bridge-sink.ts')).rejects.toThrow(/"bridge-sink" is the consumer group of a registered bridge consumer/);
      expect(await client.computation('bridge-sink')).toBeUndefined();
    } finally {
      await c.close();
    }
  }, 60_000);

  it('a registered producer of a stream between two computations keeps them apart: fusing them is refused, naming it', async () => {
    const { client } = cluster;
    // Registered first: the stream bridge-mid then has two producers, bridge-relay and the bridge.
    const mid = await client.producer({ id: 'bp-mid', streams: ['bridge-mid'] });
    await client.deployFile('test/fixtures/bridge-relay.ts');
    await client.deployFile('test/fixtures/bridge-sink.ts');
    try {
      await expect(client.fuse(['bridge-relay', 'bridge-sink'])).rejects.toThrow(/bridge-mid has 2 producers \(.*bridge:bp-mid.*\)/);
      expect((await client.computation('bridge-sink'))?.fusion).toBeUndefined();
    } finally {
      await mid.close();
      await client.kill('bridge-sink').catch(() => undefined);
      await client.kill('bridge-relay').catch(() => undefined);
    }
  }, 60_000);

  it('a producer of a stream fed in-process inside a fusion group is refused (its records would not reach the fused reader)', async () => {
    const { client } = cluster;
    await client.deployFile('test/fixtures/bridge-relay.ts');
    await client.deployFile('test/fixtures/bridge-sink.ts');
    try {
      // The autopilot may have fused them already: then this changes nothing.
      await client.fuse(['bridge-relay', 'bridge-sink']);
      await waitFor(async () => (await client.computation('bridge-sink'))?.fusion?.inputs.includes('bridge-mid'), { what: 'bridge-sink fused' });
      await expect(client.producer({ id: 'bp-fused', streams: ['bridge-mid'] })).rejects.toThrow(/stream bridge-mid is fused into bridge-sink/);
      expect((await client.status()).bridges?.producers.some((p) => p.id === 'bp-fused') ?? false).toBe(false);
      // The head's input is read on NATS: fine.
      const head = await client.producer({ id: 'bp-head', streams: ['bridge-rin'] });
      await head.close();
    } finally {
      await client.kill('bridge-sink').catch(() => undefined);
      await client.kill('bridge-relay').catch(() => undefined);
    }
  }, 60_000);

  it('garbage registrations, heartbeats and control requests are refused or ignored and change nothing', async () => {
    const { client } = cluster;
    const nc = client.nc;
    const before = (await client.status()).bridges;
    const count = (b: typeof before) => (b?.producers.length ?? 0) + (b?.consumers.length ?? 0);
    const refused = async (body: unknown, subject: string = subjects.bridgeRegister): Promise<string> => {
      const raw = typeof body === 'string' ? new TextEncoder().encode(body) : encodeJson(body);
      const msg = await nc.request(subject, raw, { timeout: 5_000 });
      const reply = JSON.parse(new TextDecoder().decode(msg.data)) as { ok: boolean; error?: { code: string; message: string } };
      expect(reply.ok).toBe(false);
      return `${reply.error!.code}: ${reply.error!.message}`;
    };
    const now = Date.now();
    expect(await refused('not json')).toMatch(/^BAD_REQUEST: .*not JSON/);
    expect(await refused({ id: 'x', streams: ['a'], startedAt: now })).toMatch(/^BAD_REQUEST: .*kind/);
    expect(await refused({ kind: 'producer', id: 'a.b', streams: ['a'], startedAt: now })).toMatch(/^BAD_REQUEST: .*id/);
    expect(await refused({ kind: 'producer', id: 'ok', streams: [], startedAt: now })).toMatch(/^BAD_REQUEST: .*streams/);
    expect(await refused({ kind: 'producer', id: 'ok', streams: ['bad stream'], startedAt: now })).toMatch(/^BAD_REQUEST: .*streams\[0\]/);
    expect(await refused({ kind: 'consumer', id: 'ok', group: '9x', stream: 's', grouping: 'key', startedAt: now })).toMatch(/^BAD_REQUEST: .*group/);
    expect(await refused({ kind: 'consumer', id: 'ok', group: 'g', stream: 's', grouping: 'sideways', startedAt: now })).toMatch(/^BAD_REQUEST: .*grouping/);
    expect(await refused({ id: 7 }, subjects.bridgeUnregister)).toMatch(/^BAD_REQUEST: .*id/);
    // A consumer group may not take a computation's name (producers would count the two as one group).
    await client.deployFile(V1);
    try {
      expect(await refused({ kind: 'consumer', id: 'ok', group: COUNTER, stream: 'x', grouping: 'shuffle', startedAt: now })).toMatch(/^CONFLICT: .*computation/);
      // A second member of a key-grouped group, or a member reading another stream, is refused.
      const c1 = client.consume('bridge-k', { group: 'kgroup', grouping: 'key', id: 'bc-k1' });
      await c1.ready;
      try {
        await expect(client.consume('bridge-k', { group: 'kgroup', grouping: 'key', id: 'bc-k2' }).ready).rejects.toThrow(/one member/);
        await expect(client.consume('other', { group: 'kgroup', grouping: 'key', id: 'bc-k3' }).ready).rejects.toThrow(/reads bridge-k/);
        // The same id from another process is refused while the first is alive.
        expect(await refused({ kind: 'consumer', id: 'bc-k1', group: 'kgroup', stream: 'bridge-k', grouping: 'key', startedAt: 1 })).toMatch(/^CONFLICT: .*another process/);
      } finally {
        await c1.close();
      }

      // Garbage heartbeats: not JSON, not a heartbeat, an id that is not the subject's: nobody is listed.
      nc.publish(subjects.bridgeHeartbeat('g1'), new TextEncoder().encode('{nope'));
      nc.publish(subjects.bridgeHeartbeat('g2'), encodeJson({ kind: 'producer', id: 'g2', streams: 'bridge-in', startedAt: now, at: now }));
      nc.publish(subjects.bridgeHeartbeat('g3'), encodeJson({ kind: 'producer', id: 'someone-else', streams: ['bridge-in'], startedAt: now, at: now }));
      nc.publish(subjects.bridgeHeartbeat('g4'), encodeJson({ kind: 'consumer', id: 'g4', group: COUNTER, stream: 'bridge-in', grouping: 'shuffle', startedAt: now, at: now }));
      await nc.flush();
      await new Promise((r) => setTimeout(r, 500));
      const after = (await client.status()).bridges;
      expect(count(after)).toBe(count(before));
      // The refused consumer of the counter's name did not reach desired state.
      const kv = await new Kvm(nc).open('topo_state');
      expect(await kv.get(`consumer.${COUNTER}`)).toBeNull();

      // Garbage control requests to a real registered producer: refused, and it is not paused.
      const p = await client.producer({ id: 'bp-ctl', streams: ['bridge-in'] });
      try {
        const ctl = subjects.bridgeControl('bp-ctl');
        expect(await refused('junk', ctl)).toMatch(/^BAD_REQUEST/);
        expect(await refused({ op: 'release', instanceId: 'bp-ctl', swapId: 's', export: 'memory' }, ctl)).toMatch(/^BAD_REQUEST: .*bridge control op/);
        expect(await refused({ op: 'pause', instanceId: 'bp-ctl', leaseMs: -5 }, ctl)).toMatch(/^BAD_REQUEST: .*leaseMs/);
        expect(await refused({ op: 'pause', instanceId: 'bp-ctl', swapId: 'a.b' }, ctl)).toMatch(/^BAD_REQUEST: .*swapId/);
        expect(await refused({ op: 'pause', instanceId: 'someone-else' }, ctl)).toMatch(/^NOT_FOUND/);
        expect(p.paused).toBe(false);
        // A real pause holds it, and its lease ends the pause by itself.
        const reply = await call<{ producer: string; fences: Record<string, number> }>(nc, ctl, { op: 'pause', instanceId: 'bp-ctl', leaseMs: 300 });
        expect(reply.producer).toBe('bp-ctl');
        expect(reply.fences).toEqual({ 'bridge-in': 0 });
        expect(p.paused).toBe(true);
        await waitFor(() => !p.paused, { what: 'the pause lease to end', timeoutMs: 3_000 });
      } finally {
        await p.close();
      }

      // A registered producer whose pause replies are garbage fails the swap before anything changed,
      // and one that stops heartbeating is dropped from the table once its lease runs out.
      const fake = await connectNats(cluster.url, { name: 'fake-bridge' });
      try {
        serve<object, object>(fake, subjects.bridgeControl('bp-garbage'), (req) => ((req as { op?: string }).op === 'pause' ? { producer: 5, fences: 'x' } : {}));
        await fake.flush();
        await call(fake, subjects.bridgeRegister, { kind: 'producer', id: 'bp-garbage', streams: ['bridge-in'], startedAt: Date.now() });
        const versionBefore = (await client.computation(COUNTER))?.version;
        const swapped = await client.swap(COUNTER, V2).then(() => 'swapped', (e: Error) => e.message);
        expect(swapped).toMatch(/could not pause upstream bp-garbage/);
        expect(swapped).toMatch(/pause reply/);
        const rec = await client.computation(COUNTER);
        expect(rec?.version).toBe(versionBefore);
        expect((await client.status()).bridges?.producers.some((b) => b.id === 'bp-garbage')).toBe(true);
        await waitFor(async () => !(await client.status()).bridges?.producers.some((b) => b.id === 'bp-garbage'),
          { what: 'bp-garbage dropped after its lease', timeoutMs: 12_000, intervalMs: 250 });
        // Without it the swap goes through.
        expect((await client.swap(COUNTER, V2)).result).toBe('ok');
      } finally {
        await fake.close();
      }
      // A credit that is not valid is ignored by a bridge producer (counted), never applied.
      const q = await client.producer({ id: 'bp-credit', streams: ['bridge-in'] });
      try {
        nc.publish(subjects.credit('bp-credit'), packr.pack({ g: COUNTER, n: -5 }));
        nc.publish(subjects.credit('bp-credit'), new Uint8Array([0xc1]));
        nc.publish(subjects.credit('bp-credit'), packr.pack({ g: 'bad group!', n: 3 }));
        await nc.flush();
        await waitFor(() => q.stats().malformedCredits === 3, { what: () => `3 malformed credits counted (${q.stats().malformedCredits})` });
        expect(q.debt()).toBe(0);
      } finally {
        await q.close();
      }
    } finally {
      await client.kill(COUNTER).catch(() => undefined);
    }
  }, 120_000);
});

describe('the controller\'s bridge table (runtime/controller/bridges.ts)', () => {
  const noComputation = (): boolean => false;
  const consumer = (id: string, over: Partial<BridgeConsumerRegistration> = {}): BridgeConsumerRegistration =>
    ({ kind: 'consumer', id, group: 'g', stream: 's', grouping: 'broadcast', startedAt: 1, ...over });

  it('keeps a member\'s index, takes the lowest free one, and drops what misses its lease', () => {
    const t = new BridgeTable(5_000);
    expect(t.register(consumer('a'), 0, noComputation).entry).toMatchObject({ index: 0 });
    expect(t.register(consumer('b'), 0, noComputation).entry).toMatchObject({ index: 1 });
    expect(t.register(consumer('a'), 1_000, noComputation)).toMatchObject({ fresh: false, entry: { index: 0 } });
    expect(t.recordOf('g', 1_000)?.members).toEqual([{ id: 'a', index: 0 }, { id: 'b', index: 1 }]);
    // b stops heartbeating: dropped after its lease, and the group's record lists a only.
    t.register(consumer('a'), 5_500, noComputation);
    expect(t.expire(6_001).map((e) => e.id)).toEqual(['b']);
    expect(t.recordOf('g', 6_001)?.members).toEqual([{ id: 'a', index: 0 }]);
    expect(t.register(consumer('c'), 6_002, noComputation).entry).toMatchObject({ index: 1 });
    expect(t.expire(20_000).length).toBe(2);
    expect(t.recordOf('g', 20_000)).toBeUndefined();
  });

  it('refuses what would change a live registration, and changes nothing then', () => {
    const t = new BridgeTable(5_000);
    t.register({ kind: 'producer', id: 'p', streams: ['s'], startedAt: 1 }, 0, noComputation);
    expect(() => t.register({ kind: 'producer', id: 'p', streams: ['s'], startedAt: 2 }, 10, noComputation)).toThrow(/another process/);
    expect(() => t.register(consumer('p'), 10, noComputation)).toThrow(/registered as a producer/);
    expect(() => t.register(consumer('x', { group: 'counter' }), 10, (n) => n === 'counter')).toThrow(/deployed computation/);
    t.register(consumer('k1', { group: 'kg', grouping: 'key' }), 10, noComputation);
    expect(() => t.register(consumer('k2', { group: 'kg', grouping: 'key' }), 10, noComputation)).toThrow(/one member/);
    expect(() => t.register(consumer('k3', { group: 'kg', grouping: 'shuffle' }), 10, noComputation)).toThrow(/reads s with key grouping/);
    expect(() => t.register({ kind: 'producer', id: 'q', streams: ['a', 'mid'], startedAt: 1 }, 10, noComputation, (s) => (s === 'mid' ? 'tail' : undefined)))
      .toThrow(/stream mid is fused into tail/);
    expect(t.status().producers.map((p) => p.id)).toEqual(['p']);
    expect(t.status().consumers.map((c) => c.id)).toEqual(['k1']);
    // After its lease another process may take the id.
    expect(t.register({ kind: 'producer', id: 'p', streams: ['s'], startedAt: 2 }, 6_000, noComputation).fresh).toBe(true);
  });

  it('takes back a member remembered from KV after a controller restart, whatever its process start', () => {
    const t = new BridgeTable(5_000);
    t.seed({ group: 'g', stream: 's', grouping: 'broadcast', members: [{ id: 'a', index: 3 }], updatedAt: 0 }, 100);
    expect(t.status().consumers[0]).toMatchObject({ id: 'a', index: 3, creditGroup: 'g#3' });
    // Its first heartbeat (a real startedAt) is accepted, with the same index (its credit group), and needs no KV write.
    expect(t.register(consumer('a', { startedAt: 777 }), 200, noComputation)).toMatchObject({ fresh: false, entry: { index: 3 } });
    expect(() => t.register(consumer('a', { startedAt: 778 }), 300, noComputation)).toThrow(/another process/);
    // Not heard from within a lease: gone.
    const u = new BridgeTable(5_000);
    u.seed({ group: 'g', stream: 's', grouping: 'shuffle', members: [{ id: 'z', index: 0 }], updatedAt: 0 }, 100);
    expect(u.expire(5_101).map((e) => e.id)).toEqual(['z']);
  });
});

describe('bridges across a controller restart (in-process controller)', () => {
  it('a consumer keeps its group and credit group, a producer is listed again by its next heartbeat', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'topo-bridge-restart-'));
    const nats = await startNatsServer({ storeDir: join(dir, 'js') });
    const opts: ControllerOptions = { natsUrl: nats.url, logger: pino({ level: 'silent' }), heartbeatMs: 200, leaseMs: 1_000 };
    let controller = await startController(opts);
    const client = await TopoClient.connect(nats.url, { name: 'bridge-restart-test' });
    const kv = await new Kvm(client.nc).open('topo_state');
    try {
      const c = client.consume('rs', { group: 'rgroup', grouping: 'broadcast', id: 'rc-1' });
      await c.ready;
      expect(c.creditGroup).toBe('rgroup#0');
      const p = await client.producer({ id: 'rp-1', streams: ['rs'] });
      await controller.stop();
      // The group stays in desired state while the controller is away: producers keep counting it.
      expect((await kv.get('consumer.rgroup'))?.json()).toMatchObject({ group: 'rgroup', members: [{ id: 'rc-1', index: 0 }] });
      controller = await startController(opts);
      await waitFor(() => {
        const b = controller.status().bridges;
        return b?.producers.some((x) => x.id === 'rp-1') && b.consumers.some((x) => x.id === 'rc-1' && x.creditGroup === 'rgroup#0' && x.pid === process.pid);
      }, { what: () => `both bridges listed again (${JSON.stringify(controller.status().bridges)})`, timeoutMs: 5_000 });
      // Several leases later both are still there (their heartbeats are accepted as the same processes).
      await new Promise((r) => setTimeout(r, 2_500));
      expect(controller.status().bridges?.consumers.map((x) => x.id)).toEqual(['rc-1']);
      expect(controller.status().bridges?.producers.map((x) => x.id)).toEqual(['rp-1']);
      // Records flow and are credited: the producer's debt to the group returns to 0.
      for (let i = 0; i < 100; i++) await p.produce('rs', `k${i}`, i);
      await p.flush();
      const got: number[] = [];
      for await (const r of c) {
        got.push(r.value as number);
        if (got.length === 100) break;
      }
      expect(got.sort((a, b) => a - b)).toEqual([...Array(100).keys()]);
      // The consumer left (break): the group is gone from KV, and the producer owes nothing.
      await waitFor(async () => (await kv.get('consumer.rgroup'))?.operation !== 'PUT', { what: 'consumer.rgroup deleted' });
      await waitFor(() => p.debt() === 0, { what: 'debt 0' });
      await p.close();
    } finally {
      await client.close();
      await controller.stop();
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
