/**
 * The hot-swap commands (topo swap, rollback, promote, history) driven through
 * the real `topo` binary, the swap examples with the test kit, and the swap
 * output formatting. The cluster tests need the controller's swap API and the
 * workers' swap ops (runtime/controller, runtime/worker).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMalformed } from '../runtime/client/index.js';
import { renderDiff, renderHistory, renderSwapOutcome } from '../runtime/cli/swapFormat.js';
import { createTestContext } from '../sdk/testing/index.js';
import type { HistoryEntry, MetadataDiff, StatusReply, SwapReply } from '../protocol/index.js';
import counterV1, { WINDOW_MS } from '../examples/tweets/counter.js';
import counterV2, { TOP_N as TOP_N_V2, type TopHashtagsV2 } from '../examples/tweets/counter_v2.js';
import counterInitThrows from '../examples/tweets/broken/counter_init_throws.js';
import counterThrows from '../examples/tweets/broken/counter_throws.js';
import counterHangs from '../examples/tweets/broken/counter_hangs.js';
import { runTopo, startCluster, waitFor, type CliResult, type Cluster } from './harness.js';

const root = join(import.meta.dirname, '..');
const fixture = (name: string): string => join(root, 'test', 'fixtures', name);
const scratch = mkdtempSync(join(tmpdir(), 'topo-cli-swap-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function topo(args: string[]): Promise<CliResult> {
  return runTopo(args, { cwd: scratch });
}

const SWAP_VERBS = ['swap', 'rollback', 'promote', 'history'];
const noDiff: MetadataDiff = { istreams: { gained: [], lost: [], regrouped: [] }, ostreams: { gained: [], lost: [] }, producersAffected: [], consumersAffected: [] };

describe('swap commands without a topology', () => {
  it('topo --help lists the swap commands', async () => {
    const r = await topo(['--help']);
    expect(r.code).toBe(0);
    for (const v of SWAP_VERBS) expect(r.stdout).toMatch(new RegExp(`^  ${v}\\s+\\S`, 'm'));
  });

  it.each(SWAP_VERBS)('topo %s --help shows usage, options and examples', async (verb) => {
    const r = await topo([verb, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: topo ${verb} <name>`);
    expect(r.stdout).toContain('--json');
    expect(r.stdout).toMatch(new RegExp(`Examples:\\n  topo ${verb} `));
  });

  it.each([
    [['swap'], 'needs a computation name and a file'],
    [['swap', 'counter'], 'needs a computation name and a file'],
    [['swap', 'counter', 'a.ts', 'b.ts'], 'unexpected argument for `topo swap`: b.ts'],
    [['swap', 'counter', 'a.ts', '--canary', '0'], '--canary must be a percentage of the keys from 1 to 99, got "0"'],
    [['swap', 'counter', 'a.ts', '--canary', '100'], '--canary must be a percentage'],
    [['swap', 'counter', 'a.ts', '--canary', 'half'], '--canary must be a percentage'],
    [['swap', 'counter', 'a.ts', '--probation-ms', 'soon'], '--probation-ms must be an integer'],
    [['swap', 'counter', 'a.ts', '--force'], 'unknown option --force for `topo swap`'],
    [['rollback'], 'needs the name of a computation'],
    [['rollback', 'counter', '--to', 'v1'], '--to must be an integer >= 1'],
    [['promote'], 'needs the name of a computation'],
    [['history'], 'needs the name of a computation'],
    [['history', 'a', 'b'], 'unexpected argument for `topo history`: b'],
  ])('topo %j is a usage error, exit 2', async (args, message) => {
    const r = await topo(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain(`topo ${args[0]} --help`);
  });

  it('swap of a file with invalid metadata names the field before contacting anything, exit 1', async () => {
    const r = await topo(['swap', 'bad-metadata', fixture('cli-bad-metadata.ts')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('invalid computation metadata of "bad-metadata": ostreams[1]');
    expect(r.stderr).not.toContain('no running topo');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('swap of a file defining another computation says so before contacting anything, exit 1', async () => {
    const r = await topo(['swap', 'counter', fixture('cliswap-count-v2.ts')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('defines the computation "cliswap-count", not "counter"');
    expect(r.stderr).not.toContain('no running topo');
  });

  it('swap of a valid file with no topology running says there is none, exit 1', async () => {
    const r = await topo(['swap', 'cliswap-count', fixture('cliswap-count-v2.ts')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no running topo found here');
  });
});

describe('swap output', () => {
  const reply: SwapReply = {
    name: 'counter', result: 'ok', fromVersion: 1, version: 2, sha: '1a2b3c4d5e6f7a8b9c0d', pauseMs: 4.12, loadMs: 85.4,
    steps: [{ step: 'preload', at: 0, ms: 85.4, ok: true }, { step: 'pause', at: 0, ms: 1.2, ok: true, detail: '2 upstream instance(s)' }],
    diff: noDiff,
  };

  it('a swap prints versions, sha, timings and the steps', () => {
    const text = renderSwapOutcome('swap', { ...reply, elapsedMs: 212.3 });
    expect(text.split('\n')[0]).toBe('swapped counter v1 -> v2 (sha 1a2b3c4d5e6f) in 212 ms; upstreams paused 4.1 ms; load 85 ms (not paused)');
    expect(text).toMatch(/STEP\s+MS\s+OK\s+DETAIL/);
    expect(text).toMatch(/preload\s+85\.4\s+yes/);
    expect(text).toMatch(/pause\s+1\.2\s+yes\s+2 upstream instance\(s\)/);
  });

  it('a diff lists what changes, or says nothing does', () => {
    expect(renderDiff(noDiff)).toEqual(['no stream changes (same istreams, groupings and ostreams)']);
    const lines = renderDiff({
      istreams: { gained: ['b'], lost: [], regrouped: [{ stream: 'a', from: 'key', to: 'shuffle' }] },
      ostreams: { gained: [], lost: ['out'] }, producersAffected: ['src'], consumersAffected: ['sink', 'tap2'],
    });
    expect(lines).toEqual([
      'istreams gained:    b',
      'istreams regrouped: a (key -> shuffle)',
      'ostreams lost:      out',
      'producers affected: src',
      'consumers affected: sink, tap2',
    ]);
  });

  it('history is a table, newest last, with missing figures as "-"', () => {
    const entries: HistoryEntry[] = [
      { name: 'c', version: 1, sha: 'aaaaaaaaaaaaaaaa', action: 'deploy', at: Date.UTC(2025, 0, 1), result: 'ok' },
      { name: 'c', version: 2, sha: 'bbbbbbbbbbbbbbbb', action: 'swap', at: Date.UTC(2025, 0, 2), result: 'rolled-back', fromVersion: 1, pauseMs: 3.25, loadMs: 40, error: 'processRecord threw: boom' },
    ];
    const lines = renderHistory(entries).split('\n');
    expect(lines[0]).toMatch(/^VERSION\s+ACTION\s+RESULT\s+SHA\s+WHEN\s+PAUSE MS\s+LOAD MS\s+FROM\s+ERROR$/);
    expect(lines[1]).toMatch(/^v1\s+deploy\s+ok\s+aaaaaaaaaaaa\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+-\s+-\s+-$/);
    expect(lines[2]).toMatch(/^v2\s+swap\s+rolled-back\s+bbbbbbbbbbbb\s+.+\s+3\.3\s+40\s+v1\s+processRecord threw: boom$/);
  });
});

describe('the swap examples (test kit)', () => {
  const tag = (t: string) => ({ tag: t, user: 'ada', at: 0 });

  it('counter_v2 keeps counting from v1 state and emits its top 10 with version 2', async () => {
    // The counters align windows to the wall clock (Date.now() in init), so the fake clock starts there too.
    const v1 = createTestContext(counterV1, { now: Date.now() });
    for (let i = 0; i < 3; i++) await v1.send('hashtags', 'nats', tag('nats'));
    await v1.send('hashtags', 'rust', tag('rust'));
    // What a swap hands over: the keyed state of the window in progress.
    const v2 = createTestContext(counterV2, { now: Date.now() });
    v2.state.restore(v1.state.snapshot());
    await v2.init();
    const windowEnd = v2.timers.find((t) => t.key === 'window')?.atMs;
    expect(windowEnd).toBeGreaterThan(v2.now);
    await v2.send('hashtags', 'nats', tag('nats'));
    const others = Array.from({ length: 12 }, (_, i) => `tag${String(i).padStart(2, '0')}`);
    for (const t of others) await v2.send('hashtags', t, tag(t));
    await v2.advanceTo(windowEnd!);
    const out = v2.takeOutputs();
    expect(out).toHaveLength(1);
    const value = out[0]!.value as TopHashtagsV2;
    expect(value.version).toBe(2);
    expect(value.window).toBe(windowEnd! - WINDOW_MS);
    expect(value.top).toHaveLength(TOP_N_V2);
    expect(value.top[0]).toEqual({ tag: 'nats', count: 4 });
    expect(value.top[1]).toEqual({ tag: 'rust', count: 1 });
  });

  it('the broken counters fail the way their names say', async () => {
    await expect(createTestContext(counterInitThrows).init()).rejects.toThrow('cannot start');
    await expect(createTestContext(counterThrows).send('hashtags', 'nats', tag('nats'))).rejects.toThrow('cannot count #nats');
    const hanging = createTestContext(counterHangs).send('hashtags', 'nats', tag('nats')).then(() => 'returned');
    const after = new Promise((r) => setTimeout(() => r('still running'), 200));
    expect(await Promise.race([hanging, after])).toBe('still running');
    for (const c of [counterInitThrows, counterThrows, counterHangs, counterV2]) {
      expect({ name: c.name, istreams: c.istreams, ostreams: c.ostreams }).toEqual({ name: counterV1.name, istreams: counterV1.istreams, ostreams: counterV1.ostreams });
    }
  });
});

// Needs the controller's swap API and the workers' swap ops.
describe('topo swap against a running cluster', () => {
  let cluster: Cluster;
  interface Count { key: string; count: number; version: number }
  const nats = (): string[] => ['--nats', cluster.url];

  const status = async (): Promise<StatusReply> => {
    const r = await topo(['status', '--json', ...nats()]);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as StatusReply;
  };
  const versionOf = async (): Promise<number | undefined> => (await status()).computations.find((c) => c.name === 'cliswap-count')?.version;

  /** The first record on cliswap-counts from now on that `pred` accepts. */
  async function nextCount(pred: (c: Count) => boolean, what: string, timeoutMs = 10_000): Promise<Count> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    try {
      for await (const item of cluster.client.tap('cliswap-counts', { signal: ac.signal })) {
        if (!isMalformed(item) && pred(item.value as Count)) return item.value as Count;
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    throw new Error(`no record on cliswap-counts within ${timeoutMs} ms: ${what}\n${cluster.logTail('controller', 20)}`);
  }

  beforeAll(async () => {
    cluster = await startCluster({ workers: 2 });
    await cluster.client.deployFile(fixture('cliswap-count-v1.ts'));
    await cluster.client.deployFile(fixture('cliswap-source.ts'));
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('history of a name never deployed is a clear NOT_FOUND, exit 1', async () => {
    const r = await topo(['history', 'nope', ...nats()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('nope');
    expect(r.stderr).toMatch(/not found|no computation|never deployed|no history/i);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('--dry-run prints the stream changes and changes nothing', async () => {
    const before = await versionOf();
    const r = await topo(['swap', 'cliswap-count', fixture('cliswap-count-regrouped.ts'), '--dry-run', ...nats()]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^dry run: swap cliswap-count v\d+ -> v\d+ \(sha [0-9a-f]{12}\)/);
    expect(r.stdout).toMatch(/istreams regrouped: cliswap-words \(key -> shuffle\)/);
    expect(r.stdout).toMatch(/ostreams gained:\s+cliswap-extra/);
    expect(r.stdout).toContain('nothing was changed (dry run)');
    const same = await topo(['swap', 'cliswap-count', fixture('cliswap-count-v2.ts'), '--dry-run', ...nats()]);
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout).toContain('no stream changes');
    expect(await versionOf()).toBe(before);
    // Still v1 output.
    await nextCount((c) => c.version === 1, 'v1 still counting');
  });

  it('swaps v1 for v2, which counts on from v1 state', async () => {
    // Wait until a key has been counted a few times, so a reset to 1 would show.
    const seen = await nextCount((c) => c.version === 1 && c.key === 'k0' && c.count >= 5, 'k0 counted 5 times by v1');
    const before = await versionOf();
    const r = await topo(['swap', 'cliswap-count', fixture('cliswap-count-v2.ts'), ...nats()]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^swapped cliswap-count v\d+ -> v\d+ \(sha [0-9a-f]{12}\) in \d+(\.\d)? ms; upstreams paused \d+(\.\d)? ms; load \d+(\.\d)? ms \(not paused\)$/m);
    for (const step of ['preload', 'pause', 'release', 'adopt', 'resume', 'health', 'commit']) expect(r.stdout).toMatch(new RegExp(`^  ${step}\\s+\\d+(\\.\\d)?\\s+yes`, 'm'));
    const after = await versionOf();
    expect(after).toBeGreaterThan(before ?? Infinity);
    const v2 = await nextCount((c) => c.version === 2 && c.key === 'k0', 'k0 counted by v2');
    expect(v2.count).toBeGreaterThan(seen.count);
  });

  it('a version that throws is rolled back: exit 1 with the error and the steps; the old one keeps counting', async () => {
    const running = await versionOf();
    const seen = await nextCount((c) => c.version === 2 && c.key === 'k1', 'k1 counted by v2');
    const r = await topo(['swap', 'cliswap-count', fixture('cliswap-count-throws.ts'), ...nats()]);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^swap of cliswap-count to v\d+ ROLLED BACK: .*cliswap-count-throws refuses k\d/m);
    // The steps were printed on stdout as they happened (progress events); stderr says why and what runs.
    expect(r.stdout).toMatch(/^  abort\s+\d+(\.\d)?\s+yes/m);
    expect(r.stderr).toMatch(/^v\d+ is running again$/m);
    expect(await versionOf()).toBe(running);
    const later = await nextCount((c) => c.version === 2 && c.key === 'k1', 'k1 counted by v2 after the rollback');
    expect(later.count).toBeGreaterThan(seen.count);
  });

  it('history lists the deploy, the swap and the rolled-back attempt, newest last', async () => {
    const r = await topo(['history', 'cliswap-count', ...nats()]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^VERSION\s+ACTION\s+RESULT\s+SHA\s+WHEN/);
    expect(lines[1]).toMatch(/^v\d+\s+deploy\s+ok\s+[0-9a-f]{12}\s/);
    expect(r.stdout).toMatch(/^v\d+\s+swap\s+ok\s+/m);
    expect(lines.at(-1)).toMatch(/^v\d+\s+swap\s+rolled-back\s+[0-9a-f]{12}\s.*\sv\d+\s+processRecord .*threw/);

    const json = await topo(['history', 'cliswap-count', '--json', ...nats()]);
    expect(json.code, json.stderr).toBe(0);
    const all = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as HistoryEntry);
    // The oracle may have fused the counter with its source meanwhile (a 'fuse' entry of the same version): not a code change.
    expect(all.filter((e) => e.action === 'fuse').every((e) => e.result === 'ok')).toBe(true);
    const entries = all.filter((e) => e.action !== 'fuse');
    expect(entries.map((e) => `${e.action} ${e.result}`)).toEqual(['deploy ok', 'swap ok', 'swap rolled-back']);
    expect(entries[1]!.steps?.map((s) => s.step)).toEqual(expect.arrayContaining(['preload', 'pause', 'release', 'adopt', 'commit']));
    for (let i = 1; i < entries.length; i++) expect(entries[i]!.at).toBeGreaterThanOrEqual(entries[i - 1]!.at);
  });

  it('rollback goes back to v1 code, keeping the counts', async () => {
    const seen = await nextCount((c) => c.version === 2 && c.key === 'k2', 'k2 counted by v2');
    const r = await topo(['rollback', 'cliswap-count', ...nats()]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^rolled back cliswap-count v\d+ -> v\d+ \(sha [0-9a-f]{12}\) in /m);
    const v1 = await nextCount((c) => c.version === 1 && c.key === 'k2', 'k2 counted by v1 again');
    expect(v1.count).toBeGreaterThan(seen.count);
  });

  it('a canary runs v2 on part of the keys beside v1, shows in status, and promote moves all keys to it', async () => {
    const r = await topo(['swap', 'cliswap-count', fixture('cliswap-count-v2.ts'), '--canary', '50', ...nats()]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^canary started: cliswap-count v\d+ -> v\d+/m);
    expect(r.stdout).toMatch(/runs on 50% of the keys: partitions [\d, ]+ \(16 of 32 partitions\)/);

    const st = await topo(['status', ...nats()]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/NAME\s+VER\s+CANARY/);
    expect(st.stdout).toMatch(/^\s+cliswap-count\s+\d+\s+v\d+ on 50%/m);
    expect(st.stdout).toMatch(/cliswap-count canary v\d+ \(sha [0-9a-f]{12}\) on 50% of the keys/);
    // Both versions produce, each for its own keys.
    await nextCount((c) => c.version === 2, 'a record from the canary');
    await nextCount((c) => c.version === 1, 'a record from v1 beside the canary');

    const p = await topo(['promote', 'cliswap-count', ...nats()]);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/^promoted cliswap-count v\d+ -> v\d+ .*now runs on all keys/m);
    await waitFor(async () => !(await topo(['status', ...nats()])).stdout.includes('CANARY'), { what: 'the canary gone from status' });
    for (const key of ['k0', 'k3', 'k5']) await nextCount((c) => c.version === 2 && c.key === key, `${key} counted by v2 after promote`);
  });
});
