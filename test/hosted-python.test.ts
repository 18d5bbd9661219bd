/**
 * Python computations hosted by TS workers (PROTOCOL.md, "Hosted operators"),
 * end to end through the real CLI, controller, workers and Python operator
 * processes: deploy of a .py file, its logs, stdout and metrics, hot swap,
 * a rolled-back swap, canary and promote, rollback, scale and kill, all with
 * keyed state and the swap tests' per-key audit (nothing lost, duplicated or
 * reordered, counts carrying on); and the supervision of a process that
 * crashes: restart, the record at fault dead-lettered, cool-down.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isMalformed } from '../runtime/client/client.js';
import { encodeBatch, subjects } from '../protocol/index.js';
import { describeProto } from '../protocol/types.js';
import { runTopo, waitFor, type Cluster } from './harness.js';
import { audit, NO_PROBLEMS, problems, settle, tapCounter, tapStream, type Tap, perTest } from './swap-helpers.js';

const py = (name: string): string => join(import.meta.dirname, 'fixtures', 'python', `${name}.py`);
const COUNTER = 'swap-counter';

const run = perTest();
const taps = run.taps;

const cli = (c: Cluster, args: string[]) => runTopo([...args, '--nats', c.url], { timeoutMs: 60_000 });

async function running(c: Cluster, name: string, n: number) {
  return waitFor(async () => {
    const s = await c.client.status();
    const insts = s.computations.find((x) => x.name === name)?.instances ?? [];
    return insts.length === n && insts.every((i) => i.state === 'running') ? insts : undefined;
  }, { what: `${n} running instance(s) of ${name}`, timeoutMs: 20_000 });
}

describe('a Python computation hosted by a TS worker', () => {
  it('deploys from a .py file, counts with keyed state, and its logs, stdout and metrics show', async () => {
    const c = (await run.cluster({ workers: 1 }));
    const { input, output } = await tapCounter(c.client);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    const d = await cli(c, ['deploy', py('counter_a')]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/swap-counter/);
    await c.client.deployFile('test/fixtures/swap-e2e-source.ts');
    await waitFor(() => output.records.length > 500, { what: 'counted records from the Python counter', timeoutMs: 20_000 });
    expect(output.records.every((o) => o.code === 'py-a')).toBe(true);
    const upTo = await settle(input.records, output.records);
    expect(problems(audit(output.records, upTo))).toEqual(NO_PROBLEMS);

    const rec = await c.client.computation(COUNTER);
    expect(rec?.lang).toBe('python');
    // Metrics are the worker's (it keeps the data plane), in the next heartbeats.
    const inst = await waitFor(async () => {
      const [i] = await running(c, COUNTER, 1);
      return i && i.metrics.recordsIn > 0 && i.metrics.recordsOut > 0 ? i : undefined;
    }, { what: 'records in and out in the counter\'s metrics' });
    expect(inst.metrics.errors).toBe(0);

    const logs = await cli(c, ['logs', COUNTER, '--json']);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/python counter py-a starts as instance 1 of 1/);
    expect(logs.stdout).toMatch(/python counter py-a says hello on stdout/);
  });

  it('swaps live to another Python version, rolls back a throwing one, runs a canary, promotes, rolls back, scales and is killed, losing nothing', async () => {
    const c = (await run.cluster({ workers: 2 }));
    const { input, output } = await tapCounter(c.client);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    expect((await cli(c, ['deploy', py('counter_a')])).code).toBe(0);
    await c.client.deployFile('test/fixtures/swap-e2e-source.ts');
    await waitFor(() => output.records.length > 300, { what: 'output of py-a', timeoutMs: 20_000 });

    const s1 = await cli(c, ['swap', COUNTER, py('counter_b')]);
    expect(s1.code, s1.stdout + s1.stderr).toBe(0);
    await waitFor(() => output.records.some((o) => o.code === 'py-b'), { what: 'output of py-b', timeoutMs: 20_000 });

    const bad = await cli(c, ['swap', COUNTER, py('counter_throws')]);
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stderr).toMatch(/ROLLED BACK: .*counter py-throws cannot count/);
    const afterBad = output.records.length;
    await waitFor(() => output.records.length > afterBad + 100 && output.records.at(-1)!.code === 'py-b', { what: 'py-b counting on after the rollback', timeoutMs: 20_000 });

    const canary = await cli(c, ['swap', COUNTER, py('counter_a'), '--canary', '50']);
    expect(canary.code, canary.stdout + canary.stderr).toBe(0);
    const afterCanary = output.records.length;
    await waitFor(() => {
      const since = output.records.slice(afterCanary);
      return since.some((o) => o.code === 'py-a') && since.some((o) => o.code === 'py-b');
    }, { what: 'both versions counting during the canary', timeoutMs: 20_000 });
    const promote = await cli(c, ['promote', COUNTER]);
    expect(promote.code, promote.stdout + promote.stderr).toBe(0);

    const rb = await cli(c, ['rollback', COUNTER]);
    expect(rb.code, rb.stdout + rb.stderr).toBe(0);

    const sc = await cli(c, ['scale', COUNTER, '2']);
    expect(sc.code, sc.stdout + sc.stderr).toBe(0);
    await running(c, COUNTER, 2);
    const afterScale = output.records.length;
    await waitFor(() => output.records.length > afterScale + 300, { what: 'output after the scale to 2', timeoutMs: 20_000 });

    const upTo = await settle(input.records, output.records, 20_000);
    const a = audit(output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    // Keyed state went along every change: counts continue where a different code took over a key.
    expect(a.continuedAcrossVersions).toBeGreaterThan(0);

    const k = await cli(c, ['kill', COUNTER]);
    expect(k.code, k.stderr).toBe(0);
    await waitFor(async () => !(await c.client.status()).computations.some((x) => x.name === COUNTER), { what: 'the counter gone' });
    // No operator process outlives its instance.
    const ps = await runPs();
    expect(ps.filter((l) => l.includes('counter_') && l.includes('-m topo run'))).toEqual([]);
  });
});

describe('a typed stream read by a Python computation', () => {
  it('decodes the TS source\'s protobuf records; garbage is dead-lettered as a type mismatch, and nothing else changes', async () => {
    // The same descriptor bytes as the TS side (the fingerprint must match): embedded in the Python file.
    const tweet = describeProto(readFileSync(join(import.meta.dirname, 'fixtures', 'typed-tweet.proto'), 'utf8'), 'demo.Tweet');
    const dir = mkdtempSync(join(tmpdir(), 'topo-py-typed-'));
    const file = join(dir, 'typed_consumer.py');
    writeFileSync(file, [
      'import base64',
      'from topo import Computation, Metadata',
      'from topo.typed import describe_descriptor_set',
      `DESCRIPTOR = base64.b64decode("${tweet.descriptor}")`,
      '',
      'class TypedConsumer(Computation):',
      '    def metadata(self):',
      '        return Metadata(name="typed-consumer", istreams=["typed-tweets"], ostreams=["typed-seen"],',
      '                        types={"typed-tweets": describe_descriptor_set(DESCRIPTOR, "demo.Tweet")})',
      '',
      '    def process_record(self, ctx, record):',
      '        t = record.value',
      '        ctx.produce_record("typed-seen", record.key, {"n": t["user"]["id"], "text": t["text"], "kind": t["kind"]})',
      '',
    ].join('\n'));
    try {
      const c = (await run.cluster({ workers: 1 }));
      const seen = await tapStream(c.client, 'typed-seen', (key, value) => ({ key, ...(value as { n: number; text: string; kind: string }) }));
      taps.push(seen as Tap<unknown>);
      const d = await cli(c, ['deploy', file]);
      expect(d.code, d.stderr).toBe(0);
      c.client.nc.publish(subjects.data('typed-tweets', 3), encodeBatch({
        v: 1, src: 'garbage-producer', stream: 'typed-tweets', bseq: 1,
        recs: [['g1', { text: 'not protobuf' }, Date.now(), 1], ['g2', Buffer.from([0xff, 0xff, 0xff]), Date.now(), 2]],
      }));
      await c.client.nc.flush();
      await c.client.deployFile(join(import.meta.dirname, 'fixtures', 'typed-source.ts'));
      await waitFor(() => seen.records.length >= 300, { what: () => `300 decoded records (got ${seen.records.length})`, timeoutMs: 20_000 });
      const ns = seen.records.map((r) => r.n).sort((a, b) => a - b);
      expect(ns.slice(0, 300)).toEqual([...Array(300).keys()].map((i) => i + 1));
      expect(seen.records.find((r) => r.n === 7)).toEqual({ key: 'k0', n: 7, text: 'tweet 7', kind: 'RETWEET' });

      const letters = await waitFor(async () => {
        const out: { reason: string; error: string; key?: string }[] = [];
        for await (const l of c.client.deadLetters('typed-consumer')) if (!isMalformed(l)) out.push({ reason: l.reason, error: l.error, key: l.record?.key });
        return out.length >= 2 ? out : undefined;
      }, { what: 'two dead letters of the Python consumer' });
      expect(letters.map((l) => [l.key, l.reason])).toEqual([['g1', 'type mismatch'], ['g2', 'type mismatch']]);
      expect(letters[0]!.error).toMatch(/^stream "typed-tweets" is typed demo.Tweet \(fingerprint [0-9a-f]{12}\): expected its protobuf encoding/);
      const st = await waitFor(async () => {
        const x = (await c.client.status()).computations.find((y) => y.name === 'typed-consumer');
        return x && x.deadLetters === 2 ? x : undefined;
      }, { what: 'two dead letters in status' });
      expect(st.errors).toBe(0);
      expect(st.instances.every((i) => i.state === 'running')).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('supervision of a Python operator process', () => {
  it('does not outlive its worker: kill -9 of the worker ends it, and the counter is placed again and counts on', async () => {
    const c = (await run.cluster({ workers: 2 }));
    const { input, output } = await tapCounter(c.client);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    expect((await cli(c, ['deploy', py('counter_a')])).code).toBe(0);
    await c.client.deployFile('test/fixtures/swap-e2e-source.ts');
    const [inst] = await running(c, COUNTER, 1);
    await waitFor(() => output.records.length > 200, { what: 'output of py-a', timeoutMs: 20_000 });
    const operators = (await runPs()).filter((l) => l.includes(c.dir) && l.includes('-m topo run'));
    expect(operators.length).toBe(1);
    const n = Number(inst!.workerId.replace('w-', ''));
    await c.killWorker(n, 'SIGKILL');
    // End of file on its fd 3: the operator exits by itself.
    await waitFor(async () => (await runPs()).filter((l) => l.includes(`${c.dir}`) && l.includes('-m topo run')).length === 0, {
      what: 'the operator process of the killed worker to exit', timeoutMs: 5_000,
    });
    await waitFor(async () => {
      const [moved] = await running(c, COUNTER, 1);
      return moved!.workerId !== inst!.workerId;
    }, { what: 'the counter placed on the other worker', timeoutMs: 20_000 });
    const before = output.records.length;
    await waitFor(() => output.records.length > before + 200, { what: 'counting again on the other worker', timeoutMs: 20_000 });
  });


  it('restarts a process that dies, dead-letters the record it died on, and cools down when it keeps dying', async () => {
    const c = (await run.cluster({ workers: 1, env: { POISON_EVERY: '40', TOPO_OPERATOR_COOLDOWN_MS: '3000' } }));
    const echoed = await tapStream(c.client, 'echo-out', (key, value) => ({ key, seq: (value as { seq: number }).seq }));
    taps.push(echoed as Tap<unknown>);
    expect((await cli(c, ['deploy', py('echo_poison')])).code).toBe(0);
    await c.client.deployFile('test/fixtures/swap-e2e-source.ts');

    // The source ticks every few ms: a poison record of key-0 every 40 ticks, so five crashes come quickly.
    const letters: { reason: string; error: string; key?: string; seq?: number }[] = [];
    await waitFor(async () => {
      letters.length = 0;
      for await (const d of c.client.deadLetters('py-echo', { follow: false })) {
        if (isMalformed(d)) continue;
        letters.push({ reason: d.reason, error: d.error, key: d.record?.key, seq: (d.record?.value as { seq?: number } | undefined)?.seq });
      }
      return letters.length >= 5;
    }, { what: () => `5 dead letters of py-echo (${letters.length} so far)`, timeoutMs: 30_000, intervalMs: 500 });
    for (const l of letters) {
      expect(l.reason).toBe('python process crashed');
      expect(l.key).toBe('key-0');
      expect(l.seq! % 40).toBe(0);
      expect(l.error).toMatch(/exited with code 3/);
    }
    const st = await waitFor(async () => {
      const s = await c.client.status();
      const i = s.computations.find((x) => x.name === 'py-echo')?.instances[0];
      return i?.lastError?.includes('cooling down') ? i : undefined;
    }, { what: 'the instance in cool-down', timeoutMs: 30_000 });
    expect(st.lastError).toMatch(/crashed 5 times within 60 s: cooling down for 3000 ms/);
    // After the cool-down it runs again: records other than the poison ones keep being echoed, none lost.
    const before = echoed.records.length;
    await waitFor(() => echoed.records.length > before + 200, { what: 'echo after the cool-down', timeoutMs: 30_000 });
    const poison = new Set(letters.map((l) => l.seq));
    const key0 = echoed.records.filter((r) => r.key === 'key-0').map((r) => r.seq);
    const maxSeq = Math.max(...key0);
    const missing: number[] = [];
    const seen = new Set(key0);
    for (let s = 1; s < maxSeq; s++) if (!seen.has(s) && s % 40 !== 0) missing.push(s);
    expect(missing).toEqual([]);
    expect([...poison].every((s) => !seen.has(s!))).toBe(true);
  });
});

async function runPs(): Promise<string[]> {
  const { execFileSync } = await import('node:child_process');
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n');
}
