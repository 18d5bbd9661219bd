/**
 * The tweets demo in two languages, as a new user runs it: `topo up --demo
 * --mixed` (generator and sink in Python, hashtags and counter in
 * TypeScript, wired by stream name only), then a live `topo swap` of the
 * Python generator to its v2 while the tweets stream is tapped: every tweet
 * id exactly once across the swap, the v2 tweets after the v1 ones, and the
 * Python sink logging the counter's top-N all along.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { StatusReply } from '../protocol/index.js';
import { TopoClient } from '../runtime/client/client.js';
import { stopLocalTopology } from '../runtime/client/launcher.js';
import { readRunInfo } from '../runtime/client/runInfo.js';
import { runTopo, topoBin, waitFor } from './harness.js';
import { tapStream, type Tap } from './swap-helpers.js';

const root = join(import.meta.dirname, '..');

interface TweetSeen {
  id: number;
  v?: number;
  producer: string;
}

describe('topo up --demo --mixed', () => {
  const project = mkdtempSync(join(tmpdir(), 'topo-mixed-demo-'));
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.TOPO_NATS_URL;
  let client: TopoClient | undefined;
  let tweets: Tap<TweetSeen> | undefined;
  afterAll(async () => {
    await tweets?.stop();
    await client?.close();
    await stopLocalTopology(join(project, '.topo'));
    rmSync(project, { recursive: true, force: true });
  });

  it('runs the Python generator and sink with the TypeScript hashtags and counter, and swaps the generator live losing no tweet', async () => {
    const child = spawn(process.execPath, [topoBin, 'up', '--demo', '--mixed'], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitFor(() => /^\d\d:\d\d:\d\d\.\d{3}  top-hashtags\/\d+ /m.test(stdout), {
        what: () => `a top-hashtags record\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`,
        timeoutMs: 40_000,
      });
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    for (const name of ['mock-tweets-generator', 'hashtags', 'counter', 'sink']) expect(stdout).toMatch(new RegExp(`deployed ${name} v\\d+`));

    const st = await runTopo(['status', '--json'], { cwd: project, env });
    expect(st.code, st.stderr).toBe(0);
    const langOf = new Map((JSON.parse(st.stdout) as StatusReply).computations.map((c) => [c.name, c.lang]));
    expect(Object.fromEntries(langOf)).toEqual({ 'mock-tweets-generator': 'python', hashtags: 'ts', counter: 'ts', sink: 'python' });

    const run = readRunInfo(join(project, '.topo'));
    client = await TopoClient.connect(run!.natsUrl, { creds: run!.credsFile });
    tweets = await tapStream(client, 'tweets', (_key, value, producer) => ({ id: (value as TweetSeen).id, v: (value as TweetSeen).v, producer }));
    await waitFor(() => tweets!.records.length > 200, { what: 'tweets from the Python generator', timeoutMs: 15_000 });

    const swap = await runTopo(['swap', 'mock-tweets-generator', join(root, 'examples', 'tweets', 'generator_v2.py')], { cwd: project, env, timeoutMs: 60_000 });
    expect(swap.code, swap.stdout + swap.stderr).toBe(0);
    expect(swap.stdout).toMatch(/^swapped mock-tweets-generator v\d+ -> v\d+/m);
    await waitFor(() => tweets!.records.filter((t) => t.v === 2).length > 200, { what: 'tweets from v2', timeoutMs: 20_000 });

    // One generator instance: ids 0, 1, 2, ... (state "next" went to v2 with the swap). The tap started mid-stream.
    const ids = tweets.records.map((t) => t.id);
    const first = ids[0]!;
    const last = ids.at(-1)!;
    const seen = new Set(ids);
    const missing: number[] = [];
    for (let i = first; i <= last; i++) if (!seen.has(i)) missing.push(i);
    expect({ missing: missing.length, duplicated: ids.length - seen.size }).toEqual({ missing: 0, duplicated: 0 });
    const firstV2 = tweets.records.findIndex((t) => t.v === 2);
    expect(firstV2).toBeGreaterThan(0);
    expect(tweets.records.slice(firstV2).every((t) => t.v === 2)).toBe(true);
    expect(tweets.records.slice(0, firstV2).every((t) => t.v === undefined)).toBe(true);

    // The Python sink logs the TypeScript counter's top-N (topo logs).
    const logs = await runTopo(['logs', 'sink', '--lines', '50'], { cwd: project, env });
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/top hashtags/i);

    const down = await runTopo(['down'], { cwd: project, env });
    expect(down.code, down.stderr).toBe(0);
  });
});
