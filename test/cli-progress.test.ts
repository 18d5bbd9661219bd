/**
 * The CLI against a running cluster: deploy and swap print their steps as the controller ends
 * them (progress events on topo.progress.<id>, PROTOCOL.md), not all at once with the reply;
 * `--json` on deploy and kill; global options before the command (`topo --json status`,
 * `topo --nats URL status`). The client's onProgress is checked on its own too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleComputation } from '../runtime/client/bundle.js';
import type { ComputationRecord, HistoryStep, StatusReply } from '../protocol/index.js';
import { runTopo, startCluster, topoBin, type Cluster } from './harness.js';

const root = join(import.meta.dirname, '..');
const fixture = (name: string): string => join(root, 'test', 'fixtures', name);
const scratch = mkdtempSync(join(tmpdir(), 'topo-cli-progress-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Each stdout line of the CLI with the time it arrived (ms after start), and the exit code. */
function timedTopo(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; lines: { at: number; text: string }[]; stderr: string }> {
  const started = performance.now();
  const child = spawn(process.execPath, [topoBin, ...args], { cwd: scratch, env: { ...process.env, ...env } });
  const lines: { at: number; text: string }[] = [];
  let pending = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    const parts = pending.split('\n');
    pending = parts.pop() ?? '';
    for (const text of parts) lines.push({ at: performance.now() - started, text });
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => void (stderr += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? -1, lines, stderr })));
}

describe('topo deploy, swap and kill against a running cluster', () => {
  let cluster: Cluster;
  const nats = (): string[] => ['--nats', cluster.url];
  const env = (): NodeJS.ProcessEnv => ({ TOPO_NATS_CREDS: cluster.creds });

  beforeAll(async () => {
    cluster = await startCluster({ workers: 2 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('deploy prints each step as it ends, before the reply', async () => {
    const r = await timedTopo(['deploy', fixture('progress-slow-init-v1.ts'), '--instances', '2', ...nats()], env());
    expect(r.code, r.stderr).toBe(0);
    const texts = r.lines.map((l) => l.text);
    const place = r.lines.find((l) => /^  place\s+\d+\s+yes\s+v1: 2 instance\(s\) on 0@w-\d, 1@w-\d$/.test(l.text));
    const starts = r.lines.filter((l) => /^  start\s+\d+\s+yes\s+instance [01] on w-\d: init done, running$/.test(l.text));
    const save = texts.findIndex((t) => /^  save\s+\d+\s+yes/.test(t));
    const done = r.lines.find((l) => /^deployed progress-slow v1 \(sha [0-9a-f]{12}\): 2 instances on /.test(l.text));
    expect({ place: !!place, starts: starts.length, save: save >= 0, done: !!done }, texts.join('\n')).toEqual({ place: true, starts: 2, save: true, done: true });
    expect(texts[0]).toMatch(/^  STEP\s+MS\s+OK\s+DETAIL$/);
    // Both inits take 1.5 s: the place step was printed while they ran, not with the reply.
    expect(done!.at - place!.at, texts.join('\n')).toBeGreaterThan(1_000);
    expect(starts.every((s) => s.at <= done!.at)).toBe(true);
  });

  it('swap prints each step as it ends: the steps before the health gate well before the outcome', async () => {
    const r = await timedTopo(['swap', 'progress-slow', fixture('progress-slow-init-v2.ts'), '--probation-ms', '2000', ...nats()], env());
    expect(r.code, r.stderr).toBe(0);
    const texts = r.lines.map((l) => l.text);
    const at = (step: string): number | undefined => r.lines.find((l) => new RegExp(`^  ${step}\\s+\\d+(\\.\\d)?\\s+yes`).test(l.text))?.at;
    const done = r.lines.find((l) => /^swapped progress-slow v1 -> v2 /.test(l.text));
    expect(done, texts.join('\n')).toBeDefined();
    for (const step of ['preload', 'pause', 'release', 'adopt', 'resume', 'health', 'commit']) expect(at(step), `${step} in\n${texts.join('\n')}`).toBeDefined();
    // Probation holds the swap 2 s after adopt: adopt was printed then, not with the reply.
    expect(done!.at - at('adopt')!, texts.join('\n')).toBeGreaterThan(1_500);
    // Printed once: no step table repeated after the outcome line.
    expect(texts.filter((t) => /^  preload\s/.test(t))).toHaveLength(1);
  });

  it('rollback prints its steps as they end too: the target first, adopt (1.5 s of init) well before the outcome', async () => {
    const r = await timedTopo(['rollback', 'progress-slow', ...nats()], env());
    expect(r.code, r.stderr).toBe(0);
    const texts = r.lines.map((l) => l.text);
    const target = r.lines.findIndex((l) => /^  target\s+\d+\s+yes\s+back to the code of v1/.test(l.text));
    const preload = r.lines.find((l) => /^  preload\s/.test(l.text));
    const done = r.lines.find((l) => /^rolled back progress-slow v2 -> v3 /.test(l.text));
    expect({ target, preload: !!preload, done: !!done }, texts.join('\n')).toEqual({ target: 1, preload: true, done: true });
    expect(done!.at - preload!.at, texts.join('\n')).toBeGreaterThan(1_000);
  });

  it('the client hands each step to onProgress before the swap resolves', async () => {
    const bundle = await bundleComputation(fixture('progress-slow-init-v2.ts')); // the running code is v1's again (rolled back)
    const steps: { step: HistoryStep; at: number }[] = [];
    const outcome = await cluster.client.swapBundle('progress-slow', bundle, { probation: { ms: 1_500 }, onProgress: (step) => steps.push({ step, at: Date.now() }) });
    const resolvedAt = Date.now();
    expect(steps.map((s) => s.step.step)).toEqual(outcome.steps.map((s) => s.step));
    const adopt = steps.find((s) => s.step.step === 'adopt')!;
    expect(resolvedAt - adopt.at).toBeGreaterThan(1_000);
  });

  it('--json: deploy prints the ComputationRecord alone, kill the killed version; global options go before the command', async () => {
    const d = await runTopo(['deploy', fixture('cli-ticker.ts'), '--json', ...nats()], { cwd: scratch });
    expect(d.code, d.stderr).toBe(0);
    const record = JSON.parse(d.stdout) as ComputationRecord; // one object: no step lines
    expect(record).toMatchObject({ name: 'ticker', instances: 1, lang: 'ts' });
    expect(record.placements).toHaveLength(1);

    // Before the command: --nats URL and --json both apply to status.
    const st = await runTopo(['--nats', cluster.url, '--json', 'status'], { cwd: scratch });
    expect(st.code, st.stderr).toBe(0);
    const status = JSON.parse(st.stdout) as StatusReply;
    expect(status.computations.find((c) => c.name === 'ticker')?.version).toBe(record.version);
    const inline = await runTopo([`--nats=${cluster.url}`, 'status'], { cwd: scratch, env: env() });
    expect(inline.code, inline.stderr).toBe(0);
    expect(inline.stdout).toMatch(/^\s+ticker\s+\d+\s/m);

    const k = await runTopo(['--json', 'kill', 'ticker', ...nats()], { cwd: scratch });
    expect(k.code, k.stderr).toBe(0);
    expect(JSON.parse(k.stdout)).toEqual({ name: 'ticker', version: record.version, result: 'killed' });
    const gone = await runTopo(['status', '--json', ...nats()], { cwd: scratch });
    expect((JSON.parse(gone.stdout) as StatusReply).computations.map((c) => c.name)).not.toContain('ticker');
  });
});
