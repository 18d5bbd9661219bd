/**
 * The CLI's error paths, driven through the real binary against a real
 * topology: names that cannot be names (exit 2), unknown computations (exit 1,
 * naming what exists), option values that start with "-", `tap` of a stream
 * nothing produces, `status --watch` across a controller that stops answering,
 * and log lines whose keys must each appear once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTopo, startCluster, topoBin, waitFor, type CliResult, type Cluster } from './harness.js';

const root = join(import.meta.dirname, '..');
const fixture = (name: string): string => join(root, 'test', 'fixtures', name);
const scratch = mkdtempSync(join(tmpdir(), 'topo-cli-errors-'));

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ workers: 1 });
  await cluster.client.deployFile(fixture('cli-ticker.ts'));
  await cluster.client.deployFile(fixture('clierr-logger.ts'));
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

function topo(args: string[]): Promise<CliResult> {
  return runTopo([...args, '--nats', cluster.url], { cwd: scratch });
}

/** A long-running `topo` (tap, status --watch) with its output collected as it comes. */
interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

function spawnTopo(args: string[]): Running {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.TOPO_NATS_URL;
  delete env.TOPO_DEBUG;
  const child = spawn(process.execPath, [topoBin, ...args, '--nats', cluster.url], { cwd: scratch, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Stops a spawned topo with Ctrl-C (SIGINT) and returns its exit code (SIGKILL after 10 s). */
async function interrupt(r: Running): Promise<number | null> {
  if (r.child.exitCode !== null) return r.child.exitCode;
  r.child.kill('SIGINT');
  const t = setTimeout(() => r.child.kill('SIGKILL'), 10_000);
  try {
    return await r.exited;
  } finally {
    clearTimeout(t);
  }
}

describe('names that cannot be computation or stream names are usage errors (exit 2)', () => {
  const cases: [string, string[]][] = [
    ['kill', ['kill', 'bad name']],
    ['swap', ['swap', 'bad name', fixture('cli-ticker.ts')]],
    ['rollback', ['rollback', 'bad name']],
    ['promote', ['promote', 'a.b']],
    ['history', ['history', 'bad name']],
    ['logs', ['logs', 'bad name']],
    ['tap --dead-letters', ['tap', '--dead-letters', 'x*']],
  ];
  it.each(cases)('topo %s', async (_verb, args) => {
    const r = await topo(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/cannot be a computation name: names start with a letter/);
    expect(r.stderr).toContain(`topo ${args[0]} --help`);
  });

  it('topo tap of a stream name with a space', async () => {
    const r = await topo(['tap', 'bad name']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('"bad name" cannot be a stream name');
  });

  it('a name longer than 64 characters', async () => {
    const r = await topo(['kill', `a${'b'.repeat(64)}`]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('cannot be a computation name');
  });
});

describe('unknown computations exit 1 naming what is deployed', () => {
  it('topo logs nosuch', async () => {
    const r = await topo(['logs', 'nosuch']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('no computation named "nosuch"');
    expect(r.stderr).toMatch(/deployed: .*ticker/);
  });

  it('topo logs nosuch -f fails instead of following forever', async () => {
    const r = await runTopo(['logs', 'nosuch', '-f', '--nats', cluster.url], { cwd: scratch, timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('no computation named "nosuch"');
  });

  it('topo tap --dead-letters nosuch', async () => {
    const r = await topo(['tap', '--dead-letters', 'nosuch']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('no computation named "nosuch"');
    expect(r.stderr).toMatch(/deployed: .*clierr-logger.*ticker/);
  });

  it.each([['kill'], ['rollback'], ['promote']])('topo %s nosuch names the deployed computations', async (verb) => {
    const r = await topo([verb, 'nosuch']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('computation "nosuch" is not deployed');
    expect(r.stderr).toMatch(/deployed: clierr-logger, ticker/);
  });

  it('a known computation without dead letters still exits 0', async () => {
    const r = await topo(['tap', '--dead-letters', 'ticker']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('no dead letters for ticker');
  });

  it('topo logs of a deployed computation still prints its lines', async () => {
    const r = await waitFor(async () => {
      const x = await topo(['logs', 'ticker']);
      return x.code === 0 && x.stdout.includes('ticker started') ? x : undefined;
    }, { what: 'ticker log lines' });
    expect(r.stdout).toContain('ticker[0]');
  });
});

describe('option values that start with "-" get the option\'s own message (exit 2)', () => {
  const cases: [string, string[], RegExp][] = [
    ['swap --canary -5', ['swap', 'ticker', fixture('cli-ticker.ts'), '--canary', '-5'], /--canary must be a percentage of the keys from 1 to 99, got "-5"/],
    ['swap --canary (no value)', ['swap', 'ticker', fixture('cli-ticker.ts'), '--canary'], /--canary needs a value \(PCT\): .*\(1-99\)/],
    ['swap --canary --dry-run', ['swap', 'ticker', fixture('cli-ticker.ts'), '--canary', '--dry-run'], /--canary needs a value \(PCT\)/],
    ['swap --drain-budget -1', ['swap', 'ticker', fixture('cli-ticker.ts'), '--drain-budget', '-1'], /--drain-budget must be an integer >= 1, got "-1"/],
    ['swap --drain-budget 0', ['swap', 'ticker', fixture('cli-ticker.ts'), '--drain-budget', '0'], /--drain-budget must be an integer >= 1, got "0"/],
    ['deploy --instances -3', ['deploy', fixture('cli-ticker.ts'), '--instances', '-3'], /--instances must be an integer >= 1, got "-3"/],
    ['logs -n -1', ['logs', 'ticker', '-n', '-1'], /--lines must be an integer >= 0, got "-1"/],
    ['rollback --to -1', ['rollback', 'ticker', '--to', '-1'], /--to must be an integer >= 1, got "-1"/],
    ['tap --last -2', ['tap', '--dead-letters', '--last', '-2'], /--last must be an integer >= 0, got "-2"/],
    ['status --json=1', ['status', '--json=1'], /--json takes no value/],
  ];
  it.each(cases)('topo %s', async (_what, args, message) => {
    const r = await topo(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain('ambiguous');
  });
});

describe('topo tap of a stream that nothing produces', () => {
  it('says so on stderr, naming the streams, and keeps waiting', async () => {
    const r = spawnTopo(['tap', 'nosuch']);
    try {
      await waitFor(() => r.stderr().includes('nothing produces "nosuch"'), { what: () => `the notice (stderr: ${r.stderr()})`, timeoutMs: 20_000 });
      expect(r.stderr()).toMatch(/streams: .*ticks/);
      await new Promise((res) => setTimeout(res, 500));
      expect(r.child.exitCode, r.stderr()).toBeNull();
    } finally {
      expect(await interrupt(r)).toBe(0);
    }
  });

  it('with --json the notice stays off stdout', async () => {
    const r = spawnTopo(['tap', 'nosuch', '--json']);
    try {
      await waitFor(() => r.stderr().includes('nothing produces "nosuch"'), { what: () => `the notice (stderr: ${r.stderr()})`, timeoutMs: 20_000 });
      expect(r.child.exitCode).toBeNull();
    } finally {
      expect(await interrupt(r)).toBe(0);
    }
    expect(r.stdout()).toBe('');
  });

  it('a produced stream gets no notice', async () => {
    const r = await topo(['tap', 'ticks', '--limit', '2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('nothing produces');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const l of lines) expect((JSON.parse(l) as { stream: string }).stream).toBe('ticks');
  });
});

/** The keys of the outermost object of a JSON text, in order and with repeats (JSON.parse hides repeats). */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      let k = j + 1;
      while (text[k] === ' ') k++;
      if (depth === 1 && text[k] === ':') keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      i = j;
    } else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') depth--;
  }
  return keys;
}

describe('log lines', () => {
  it('carry each key once, the call\'s own fields replacing the bound ones', async () => {
    const file = cluster.topology.logFile(1);
    const lines = await waitFor(() => {
      const all = readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{'));
      return all.some((l) => l.includes('clierr-logger child line')) ? all : undefined;
    }, { what: () => `the clierr-logger lines in ${file}` });
    expect(topLevelKeys('{"a":1,"b":{"a":2},"a":"x\\":"}')).toEqual(['a', 'b', 'a']);
    for (const l of lines) {
      const keys = topLevelKeys(l);
      const repeated = keys.filter((k, i) => keys.indexOf(k) !== i);
      expect(repeated, l).toEqual([]);
    }
    const started = JSON.parse(lines.find((l) => l.includes('clierr-logger started')) ?? '{}') as Record<string, unknown>;
    expect(started).toMatchObject({ version: 'mine', worker: 'mine', computation: 'mine', extra: 1, instance: 0 });
    const child = JSON.parse(lines.find((l) => l.includes('clierr-logger child line')) ?? '{}') as Record<string, unknown>;
    expect(child).toMatchObject({ version: 'child', computation: 'clierr-logger', extra: 2 });
    // The worker's own lines too: "registered with the controller" logs `worker`, which its logger is bound to.
    expect(lines.some((l) => l.includes('registered with the controller'))).toBe(true);
  });
});

describe('topo status --watch', () => {
  it('survives a controller that stops answering, shows the error and the last refresh time, and recovers', async () => {
    const controller = cluster.topology.run.pids.controller;
    const r = spawnTopo(['status', '--watch']);
    const footers = (): string[] => r.stdout().match(/\(last refresh \d\d:\d\d:\d\d; refreshing every second/g) ?? [];
    let stopped = false;
    try {
      await waitFor(() => footers().length >= 1, { what: () => `a first refresh (stdout: ${r.stdout()} stderr: ${r.stderr()})`, timeoutMs: 20_000 });
      expect(r.stdout()).toContain('COMPUTATIONS');
      process.kill(controller, 'SIGSTOP');
      stopped = true;
      await waitFor(() => /status failed at \d\d:\d\d:\d\d: .*\(last refresh \d\d:\d\d:\d\d\); retrying/.test(r.stderr()), {
        what: () => `the failure shown (stderr: ${r.stderr()})`,
        timeoutMs: 20_000,
      });
      expect(r.child.exitCode, r.stderr()).toBeNull();
      process.kill(controller, 'SIGCONT');
      stopped = false;
      const failedAt = r.stdout().length;
      await waitFor(() => r.stdout().slice(failedAt).includes('COMPUTATIONS'), { what: () => `a refresh after the controller came back (stderr: ${r.stderr()})`, timeoutMs: 20_000 });
      expect(r.child.exitCode).toBeNull();
    } finally {
      if (stopped) process.kill(controller, 'SIGCONT');
      expect(await interrupt(r)).toBe(0);
    }
  });
});
