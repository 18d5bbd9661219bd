/**
 * End to end: real nats-server, controller and three worker processes.
 * Records cross processes; computations join and leave a running topology;
 * bad input is dead-lettered or refused while everything else keeps running.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packr, subjects, InvalidMetadataError, ModuleLoadError, InitFailedError, type StatusReply } from '../protocol/index.js';
import { isMalformed, type TapRecord, type TopoClient } from '../runtime/client/client.js';
import { startCluster, waitFor, type Cluster } from './harness.js';

const fixture = (name: string) => `test/fixtures/${name}.ts`;

/** Collects records of a stream in the background until stop(). */
function collect(client: TopoClient, stream: string) {
  const records: TapRecord[] = [];
  const ac = new AbortController();
  const done = (async () => {
    for await (const item of client.tap(stream, { signal: ac.signal })) if (!isMalformed(item)) records.push(item);
  })();
  return { records, stop: async () => (ac.abort(), await done) };
}

function instancesOf(status: StatusReply, name: string) {
  return status.computations.find((c) => c.name === name)?.instances ?? [];
}

describe('a topology across three worker processes', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ workers: 3 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('delivers every record end to end, key-grouped across two instances', async () => {
    const { client } = cluster;
    const out = collect(client, 'e2e-doubled');
    await client.deployFile(fixture('e2e-double'), { instances: 2 });
    await client.deployFile(fixture('e2e-source'));
    const status = await client.status();
    const workersUsed = new Set([...instancesOf(status, 'e2e-double'), ...instancesOf(status, 'e2e-source')].map((i) => i.workerId));
    expect(workersUsed.size).toBe(3);

    await waitFor(() => out.records.length >= 6000, { what: '6000 doubled records', timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 200)); // would reveal duplicates arriving late
    await out.stop();
    const ns = out.records.map((r) => (r.value as { n: number }).n);
    expect(new Set(ns).size).toBe(6000);
    expect(ns.length).toBe(6000);
    expect(Math.min(...ns)).toBe(1);
    expect(Math.max(...ns)).toBe(6000);
    for (const r of out.records) {
      const v = r.value as { n: number; doubled: number };
      expect(v.doubled).toBe(v.n * 2);
    }
    // Key grouping: every key was handled by exactly one instance, and its per-key count has no gaps.
    const byKey = new Map<string, { instances: Set<number>; seen: number[] }>();
    for (const r of out.records) {
      const v = r.value as { seen: number; instance: number };
      const e = byKey.get(r.key) ?? { instances: new Set(), seen: [] };
      e.instances.add(v.instance);
      e.seen.push(v.seen);
      byKey.set(r.key, e);
    }
    expect(byKey.size).toBe(50);
    const usedInstances = new Set<number>();
    for (const [, e] of byKey) {
      expect(e.instances.size).toBe(1);
      usedInstances.add([...e.instances][0]!);
      expect([...e.seen].sort((a, b) => a - b)).toEqual(Array.from({ length: e.seen.length }, (_, i) => i + 1));
    }
    expect(usedInstances.size).toBe(2);

    const after = await client.status();
    const dbl = after.computations.find((c) => c.name === 'e2e-double')!;
    await waitFor(async () => {
      const s = await client.status();
      return s.computations.find((c) => c.name === 'e2e-double')!.instances.reduce((a, i) => a + i.metrics.recordsIn, 0) === 6000;
    }, { what: 'status counts 6000 records in', timeoutMs: 5_000 });
    expect(dbl.errors).toBe(0);
    await client.kill('e2e-source');
    await client.kill('e2e-double');
  });

  it('lets a computation join and leave a running topology without restarting anything else', async () => {
    const { client } = cluster;
    await client.deployFile(fixture('e2e-ticker'));
    const before = instancesOf(await client.status(), 'e2e-ticker');
    expect(before).toHaveLength(1);

    const echoes = collect(client, 'e2e-echoes');
    await client.deployFile(fixture('e2e-echo'));
    await waitFor(() => echoes.records.length >= 10, { what: 'echoes from the newly deployed computation', timeoutMs: 10_000 });

    // Every 5th tick throws: dead-lettered with the error, counted, and processing goes on.
    const status = await waitFor(async () => {
      const s = await client.status();
      const echo = s.computations.find((c) => c.name === 'e2e-echo');
      return echo && echo.errors >= 2 && echo.deadLetters >= 2 ? s : undefined;
    }, { what: 'echo errors counted in status', timeoutMs: 10_000 });
    expect(status.computations.find((c) => c.name === 'e2e-echo')!.instances[0]!.lastError).toMatch(/refusing tick/);
    const letters = [];
    for await (const d of client.deadLetters('e2e-echo')) letters.push(d);
    expect(letters.length).toBeGreaterThanOrEqual(2);
    const first = letters[0]!;
    expect('malformed' in first).toBe(false);
    if (!('malformed' in first)) {
      expect(first.reason).toBe('processRecord threw');
      expect(first.error).toMatch(/refusing tick \d+/);
      expect((first.record!.value as { n: number }).n % 5).toBe(0);
    }
    const echoed = echoes.records.length;
    await waitFor(() => echoes.records.length > echoed + 5, { what: 'echo keeps running after errors' });

    await client.kill('e2e-echo');
    const afterKill = await client.status();
    expect(afterKill.computations.map((c) => c.name)).not.toContain('e2e-echo');
    const tickerAfter = instancesOf(afterKill, 'e2e-ticker');
    expect(tickerAfter.map((i) => i.instanceId)).toEqual(before.map((i) => i.instanceId));
    await echoes.stop();
  });

  it('dead-letters malformed bytes on a stream subject and keeps going', async () => {
    const { client } = cluster;
    await client.deployFile(fixture('e2e-echo'));
    const echoes = collect(client, 'e2e-echoes');
    await waitFor(() => echoes.records.length > 2, { what: 'echoes flowing' });
    client.nc.publish(subjects.data('e2e-ticks', 7), new TextEncoder().encode('this is not msgpack'));
    client.nc.publish(subjects.data('e2e-ticks', 7), packr.pack({ v: 1, src: 'x', stream: 'e2e-ticks', bseq: 1, recs: [[1, 2]] }));
    const s = await waitFor(async () => {
      const st = await client.status();
      const m = st.computations.find((c) => c.name === 'e2e-echo')?.instances[0]?.metrics.malformed ?? 0;
      return m >= 2 ? st : undefined;
    }, { what: 'two malformed batches counted' });
    expect(s.computations.find((c) => c.name === 'e2e-echo')!.instances[0]!.state).toBe('running');
    const malformed = [];
    for await (const d of client.deadLetters('e2e-echo')) if (!('malformed' in d) && d.reason === 'malformed batch') malformed.push(d);
    expect(malformed).toHaveLength(2);
    expect(malformed.map((d) => d.error).join('\n')).toMatch(/recs\[0\]/);
    expect(Buffer.from(malformed[0]!.raw!).toString()).toBe('this is not msgpack');
    const n = echoes.records.length;
    await waitFor(() => echoes.records.length > n + 3, { what: 'echo still processing after garbage' });
    await echoes.stop();
    await client.kill('e2e-echo');
  });

  it('refuses broken deploys with a clear error and leaves the running topology untouched', async () => {
    const { client } = cluster;
    const before = await client.status();
    const names = before.computations.map((c) => c.name).sort();
    const ids = before.computations.flatMap((c) => c.instances.map((i) => i.instanceId)).sort();

    await expect(client.deployFile(fixture('e2e-bad-grouping'))).rejects.toSatisfy(
      (e: Error) => e.name === InvalidMetadataError.name && /istreams\[0\]\.grouping/.test(e.message),
    );
    await expect(client.deployFile(fixture('e2e-throws-at-load'))).rejects.toSatisfy(
      (e: Error) => e.name === ModuleLoadError.name && /e2e-throws-at-load/.test(e.message) && /JSON/.test(e.message),
    );
    await expect(client.deployFile(fixture('e2e-init-throws'))).rejects.toSatisfy(
      (e: Error) => e.name === InitFailedError.name && /database unreachable/.test(e.message),
    );

    const after = await client.status();
    expect(after.computations.map((c) => c.name).sort()).toEqual(names);
    expect(after.computations.flatMap((c) => c.instances.map((i) => i.instanceId)).sort()).toEqual(ids);
    const ticker = after.computations.find((c) => c.name === 'e2e-ticker')!;
    const out0 = ticker.instances[0]!.metrics.recordsOut;
    await waitFor(async () => {
      const s = await client.status();
      return (s.computations.find((c) => c.name === 'e2e-ticker')?.instances[0]?.metrics.recordsOut ?? 0) > out0;
    }, { what: 'ticker still producing' });
  });

  it('re-places the instances of a killed worker process', async () => {
    const { client } = cluster;
    const s = await client.status();
    const ticker = instancesOf(s, 'e2e-ticker')[0]!;
    const n = Number(ticker.workerId.replace('w-', ''));
    const ticks = collect(client, 'e2e-ticks');
    await cluster.killWorker(n, 'SIGKILL');
    const moved = await waitFor(async () => {
      const st = await client.status();
      const i = instancesOf(st, 'e2e-ticker')[0];
      return i && i.workerId !== ticker.workerId && i.state === 'running' ? i : undefined;
    }, { what: 'ticker re-placed on a live worker', timeoutMs: 15_000 });
    expect(moved.workerId).not.toBe(ticker.workerId);
    const seen = ticks.records.length;
    await waitFor(() => ticks.records.length > seen + 5, { what: 'ticks flowing again from the new worker' });
    await ticks.stop();
    await cluster.startWorker(n);
  });
});
