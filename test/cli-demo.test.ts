/** `topo up --demo` end to end. Needs the controller, the worker and examples/tweets. */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopLocalTopology } from '../runtime/client/launcher.js';
import type { StatusReply } from '../protocol/index.js';
import { runTopo, topoBin, waitFor } from './harness.js';

describe('topo up --demo', () => {
  const project = mkdtempSync(join(tmpdir(), 'topo-demo-test-'));
  afterAll(async () => {
    await stopLocalTopology(join(project, '.topo'));
    rmSync(project, { recursive: true, force: true });
  });

  it('deploys the tweets demo, prints top-hashtags until Ctrl-C, and leaves the topology running', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.TOPO_NATS_URL;
    const child = spawn(process.execPath, [topoBin, 'up', '--demo'], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitFor(() => /^\d\d:\d\d:\d\d\.\d{3}  top-hashtags\/\d+ /m.test(stdout), {
        what: () => `a top-hashtags record\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`,
        timeoutMs: 25_000,
      });
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    for (const name of ['hashtags', 'counter', 'sink']) expect(stdout).toMatch(new RegExp(`deployed ${name} v\\d+`));
    expect(stdout).toContain('the topology keeps running');

    const st = await runTopo(['status', '--json'], { cwd: project });
    expect(st.code, st.stderr).toBe(0);
    const names = (JSON.parse(st.stdout) as StatusReply).computations.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(['hashtags', 'counter', 'sink']));

    const down = await runTopo(['down'], { cwd: project });
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain('stopped');
  });
});
