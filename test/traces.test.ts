/**
 * Traces end to end (PROTOCOL.md, Traces), through the real controller,
 * workers and CLI: sources sample traces, and a record produced while
 * processing a traced record carries its trace on every path a record is
 * processed: inline, a fused chain (handed over in-process), a thread
 * (cpu 'heavy'), at-least-once streams (JetStream) and a Python operator.
 * Each chain is source -> relay -> sink, and the sink writes the trace id
 * its processRecord saw; every record is followed from the source's stream
 * to the sink's output by its key. `topo tap --trace` follows one trace
 * across streams, and a malformed trace on the wire is dropped and counted.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TopoClient } from '../runtime/client/client.js';
import { isMalformed, type TapRecord } from '../runtime/client/client.js';
import { encodeBatch, PROTOCOL_VERSION, subjects, type WireRecord } from '../protocol/index.js';
import { isTraceId, TRACE_ID_PATTERN } from '../protocol/trace.js';
import { runTopo, startCluster, waitFor, type Cluster } from './harness.js';
import { SOURCE_RECORDS, type SinkValue } from './fixtures/traces-lib.js';
import type { ProbeValue } from './fixtures/traces-otel-probe.js';

const fixture = (name: string): string => `test/fixtures/traces-${name}.ts`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The rate of the source without a traceSample hint, from the workers' environment. */
const ENV_RATE = 0.25;

interface Collector {
  records: TapRecord[];
  stop(): Promise<void>;
}

/** Every record of `stream`, with its trace as it travelled (client.tap), until stop(). */
async function collect(client: TopoClient, stream: string): Promise<Collector> {
  const ac = new AbortController();
  const records: TapRecord[] = [];
  const it = client.tap(stream, { signal: ac.signal });
  const first = it.next();
  await client.nc.flush();
  const done = (async () => {
    for (let r = await first; !r.done; r = await it.next()) if (!isMalformed(r.value)) records.push(r.value);
  })();
  return { records, stop: async () => { ac.abort(); await done; } };
}

const byKey = (records: TapRecord[]) => new Map(records.map((r) => [r.key, r]));

let c: Cluster;
const taps: Collector[] = [];
const CHAINS = ['inline', 'fused', 'thread', 'alo', 'py'] as const;
const streamsOf = (i: number) => ({ input: `trc-a${i}`, out: `trc-out${i}` });
const tapped = new Map<string, Collector>();

beforeAll(async () => {
  // No autopilot: the test decides what is fused (only the 'fused' chain).
  c = await startCluster({ workers: 2, env: { TOPO_AUTOPILOT: '0', TOPO_TRACE_SAMPLE: String(ENV_RATE) } });
  for (const s of [...CHAINS.flatMap((_, i) => Object.values(streamsOf(i + 1))), 'trc-b1', 'trc-never', 'trc-env']) {
    const t = await collect(c.client, s);
    taps.push(t);
    tapped.set(s, t);
  }
  // Consumers first, sources last: every record a source produces is seen.
  for (const name of ['sink-inline', 'relay-inline', 'sink-fused', 'relay-fused', 'sink-thread', 'relay-thread', 'sink-alo', 'relay-alo', 'sink-py']) {
    await c.client.deployFile(fixture(name));
  }
  await c.client.deployFile(join(import.meta.dirname, 'fixtures', 'python', 'trace_relay.py'));
  const fused = await c.client.fuse(['trc-relay-fused', 'trc-sink-fused']);
  expect(fused.groups).toEqual([{ group: 'fg-trc-relay-fused', members: ['trc-relay-fused', 'trc-sink-fused'] }]);
  for (const name of ['src-inline', 'src-fused', 'src-thread', 'src-alo', 'src-py', 'src-never', 'src-env']) await c.client.deployFile(fixture(name));
}, 180_000);

afterAll(async () => {
  for (const t of taps) await t.stop();
  await c?.stop();
});

describe('a sampled trace reaches the sink', () => {
  it.each(CHAINS.map((chain, i) => [chain, i + 1] as const))('through a %s relay', async (chain, i) => {
    const { input, out } = streamsOf(i);
    const source = tapped.get(input)!;
    const sink = tapped.get(out)!;
    await waitFor(() => new Set(sink.records.map((r) => r.key)).size >= SOURCE_RECORDS, {
      what: () => `${SOURCE_RECORDS} records out of the ${chain} chain (${sink.records.length} so far)\n${c.logTail(1, 15)}\n${c.logTail(2, 15)}`,
      timeoutMs: 60_000,
    });
    const sent = byKey(source.records);
    expect(sent.size).toBe(SOURCE_RECORDS);
    const traces = new Set<string>();
    for (const r of sink.records) {
      const origin = sent.get(r.key);
      expect(origin, `sink record ${r.key} has a source record`).toBeDefined();
      // The source sampled every record (traceSample 1): a well-formed trace id, one per record.
      expect(origin!.trace).toMatch(TRACE_ID_PATTERN);
      // The sink's processRecord saw the source's trace, and what it produced carries it on the wire.
      expect((r.value as SinkValue).seen).toBe(origin!.trace);
      expect(r.trace).toBe(origin!.trace);
      traces.add(r.trace!);
    }
    expect(traces.size).toBe(SOURCE_RECORDS);
    if (chain === 'fused') {
      const status = await c.client.status();
      expect(status.fusion).toEqual([{ group: 'fg-trc-relay-fused', members: ['trc-relay-fused', 'trc-sink-fused'] }]);
    }
  }, 90_000);
});

describe('sampling at sources', () => {
  it('starts no trace at rate 0 and about the share TOPO_TRACE_SAMPLE says without a hint', async () => {
    const never = tapped.get('trc-never')!;
    const env = tapped.get('trc-env')!;
    await waitFor(() => never.records.length >= SOURCE_RECORDS && env.records.length >= SOURCE_RECORDS, {
      what: () => `both sources done (${never.records.length}, ${env.records.length})`, timeoutMs: 60_000,
    });
    expect(never.records.filter((r) => r.trace !== undefined)).toEqual([]);
    const traced = env.records.filter((r) => r.trace !== undefined);
    for (const r of traced) expect(isTraceId(r.trace)).toBe(true);
    // Binomial(400, 0.25): mean 100, sd 8.7; these bounds are more than 4.5 sd away.
    expect(traced.length).toBeGreaterThan(60);
    expect(traced.length).toBeLessThan(140);
  }, 90_000);

  it('refuses to start a worker with a TOPO_TRACE_SAMPLE that is not a rate', () => {
    const r = spawnSync(process.execPath, [join(import.meta.dirname, '..', 'dist', 'worker.mjs'), '--nats', 'nats://127.0.0.1:1'], {
      env: { ...process.env, TOPO_TRACE_SAMPLE: '1.5' }, encoding: 'utf8', timeout: 20_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('TOPO_TRACE_SAMPLE must be a number from 0 to 1');
    expect(r.stderr).toContain('"1.5"');
  });
});

describe('topo tap --trace', () => {
  it('prints the records of one trace on every stream it crosses, in arrival order', async () => {
    const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const p = await c.client.producer({ streams: ['trc-a1'] });
    const cli = runTopo(['tap', '--trace', trace, '--json', '--limit', '9'], { env: { TOPO_NATS_URL: c.url }, timeoutMs: 40_000 });
    const text = runTopo(['tap', '--trace', trace, '--limit', '3'], { env: { TOPO_NATS_URL: c.url }, timeoutMs: 40_000 });
    let done = false;
    void Promise.all([cli, text]).then(() => (done = true));
    // The taps subscribe at some point after they start: one traced record every 300 ms (and untraced ones between) until both are done.
    for (let n = 0; !done && n < 100; n++) {
      await p.produce('trc-a1', `bridge-${n}`, { n: 10_000 + n }, trace);
      await p.produce('trc-a1', `untraced-${n}`, { n: 20_000 + n });
      await p.flush();
      await sleep(300);
    }
    await p.close();
    const json = await cli;
    expect(json.code, json.stderr).toBe(0);
    const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as TapRecord);
    expect(lines).toHaveLength(9);
    for (const r of lines) {
      expect(r.trace).toBe(trace);
      expect(r.key).toMatch(/^bridge-/);
      expect(['trc-a1', 'trc-b1', 'trc-out1']).toContain(r.stream);
    }
    // A record seen on all three streams was seen in the order it flowed: source stream, relay's, sink's.
    const order = new Map<string, string[]>();
    for (const r of lines) order.set(r.key, [...(order.get(r.key) ?? []), r.stream]);
    const whole = [...order.values()].filter((s) => s.length === 3);
    expect(whole.length).toBeGreaterThan(0);
    for (const s of whole) expect(s).toEqual(['trc-a1', 'trc-b1', 'trc-out1']);
    const t = await text;
    expect(t.code, t.stderr).toBe(0);
    expect(t.stderr).toContain(`following trace ${trace}`);
    const printed = t.stdout.trim().split('\n');
    expect(printed).toHaveLength(3);
    for (const l of printed) expect(l).toContain(`trace=${trace}`);
    expect(new Set(printed.map((l) => /\b(trc-[a-z0-9]+)\/\d+/.exec(l)?.[1])).size).toBeGreaterThan(1);
  }, 60_000);

  it('refuses a malformed trace id, naming what a trace id is', async () => {
    for (const bad of ['4BF92F3577B34DA6A3CE929D0E0E4736', 'abc', '0'.repeat(32), 'x'.repeat(5000)]) {
      const r = await runTopo(['tap', '--trace', bad], { env: { TOPO_NATS_URL: c.url } });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('invalid trace id');
      expect(r.stderr).toContain('32 lowercase hex digits');
      expect(r.stderr.length).toBeLessThan(600);
    }
    const both = await runTopo(['tap', 'trc-a1', '--trace', '4bf92f3577b34da6a3ce929d0e0e4736'], { env: { TOPO_NATS_URL: c.url } });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('leave out the stream name');
    await expect(c.client.producer({ streams: ['trc-a1'] }).then(async (p) => {
      try {
        await p.produce('trc-a1', 'k', 1, 'not-a-trace');
      } finally {
        await p.close();
      }
    })).rejects.toThrow(/invalid trace id "not-a-trace"/);
  });
});

describe('a malformed trace on the wire', () => {
  it('is dropped and counted: the record is processed untraced and the relay keeps going', async () => {
    const relayed = tapped.get('trc-b1')!;
    const badTraces = async () => (await c.client.status()).computations.find((x) => x.name === 'trc-relay-inline')!.instances
      .reduce((n, i) => n + (i.metrics.badTraces ?? 0), 0);
    const before = await badTraces();
    const bad = ['x'.repeat(5_000), '4BF92F3577B34DA6A3CE929D0E0E4736', '0'.repeat(32), 'abc\n\u001b[31mred'];
    const recs: WireRecord[] = bad.map((t, i) => [`hostile-${i}`, { n: -1 - i }, Date.now(), i + 1, t]);
    const good = '0af7651916cd43dd8448eb211c80319c';
    recs.push(['hostile-good', { n: -100 }, Date.now(), recs.length + 1, good]);
    c.client.nc.publish(subjects.data('trc-a1', 0), encodeBatch({ v: PROTOCOL_VERSION, src: 'hostile-1', stream: 'trc-a1', bseq: 1, recs }));
    const out = await waitFor(() => {
      const m = byKey(tapped.get('trc-out1')!.records);
      return recs.every((r) => m.has(r[0])) ? m : undefined;
    }, { what: 'the hostile records through the inline chain', timeoutMs: 20_000 });
    for (let i = 0; i < bad.length; i++) {
      const r = out.get(`hostile-${i}`)!;
      expect(r.trace).toBeUndefined();
      expect((r.value as SinkValue).seen).toBeNull();
      expect(byKey(relayed.records).get(`hostile-${i}`)!.trace).toBeUndefined();
    }
    // A well-formed one in the same batch is kept.
    expect(out.get('hostile-good')!.trace).toBe(good);
    expect((out.get('hostile-good')!.value as SinkValue).seen).toBe(good);
    await waitFor(async () => (await badTraces()) - before === bad.length, { what: `badTraces of trc-relay-inline up by ${bad.length}`, timeoutMs: 10_000 });
    const status = await c.client.status();
    expect(status.computations.find((x) => x.name === 'trc-relay-inline')!.instances.every((i) => i.state === 'running')).toBe(true);
  }, 60_000);
});

describe('OpenTelemetry (TOPO_OTEL=1)', () => {
  it('runs a traced record\'s processRecord in a span of its trace, found through the provider a computation registered', async () => {
    const o = await startCluster({ workers: 1, env: { TOPO_AUTOPILOT: '0', TOPO_OTEL: '1' } });
    const out = await collect(o.client, 'trc-otel-out');
    try {
      await o.client.deployFile(fixture('otel-probe'));
      const p = await o.client.producer({ streams: ['trc-otel-a'] });
      await p.produce('trc-otel-a', 'untraced', { n: 0 });
      await p.close();
      await o.client.deployFile(fixture('otel-src'));
      await waitFor(() => out.records.length > 50, { what: () => `probe outputs (${out.records.length})\n${o.logTail(1, 20)}`, timeoutMs: 30_000 });
      const values = out.records.map((r) => [r.key, r.value as ProbeValue] as const);
      const untraced = values.find(([k]) => k === 'untraced')![1];
      expect(untraced).toMatchObject({ recordTrace: null, activeTrace: null, spanName: null });
      const traced = values.filter(([k]) => k !== 'untraced').map(([, v]) => v);
      expect(traced.length).toBeGreaterThan(50);
      for (const v of traced) {
        expect(v.recordTrace).toMatch(TRACE_ID_PATTERN);
        expect(v.activeTrace).toBe(v.recordTrace);
        expect(v.spanName).toBe('trc-otel-probe processRecord');
        // One remote parent per trace, made from the trace id (the wire carries no span id).
        expect(v.parentSpanId).toBe(v.recordTrace!.slice(16));
        expect(v.attributes).toMatchObject({ 'topo.computation': 'trc-otel-probe', 'topo.stream': 'trc-otel-a' });
      }
      // Spans end when the callback returns: the later records saw the earlier spans ended.
      expect(traced.at(-1)!.endedBefore).toBeGreaterThanOrEqual(traced.length - 1);
    } finally {
      await out.stop();
      await o.stop();
    }
  }, 90_000);
});
