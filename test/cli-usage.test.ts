/**
 * The CLI's command line without a topology: a suggestion for a mistyped command, --version,
 * global options before the command and their errors, and `topo completion bash` run by a real
 * bash (the script sourced, _topo called as bash calls it on Tab).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closestName } from '../runtime/cli/args.js';
import { runTopo, type CliResult } from './harness.js';

const root = join(import.meta.dirname, '..');
const scratch = mkdtempSync(join(tmpdir(), 'topo-cli-usage-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const topo = (args: string[]): Promise<CliResult> => runTopo(args, { cwd: scratch });

describe('the topo command line', () => {
  it.each([['stauts', 'status'], ['dploy', 'deploy'], ['rollbak', 'rollback'], ['stat', 'status'], ['hist', 'history']])(
    'a mistyped command %s exits 2 suggesting `topo %s`',
    async (typed, meant) => {
      const r = await topo([typed]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`unknown command "${typed}"; did you mean \`topo ${meant}\`?`);
    },
  );

  it('a command near none lists the commands', async () => {
    const r = await topo(['xyzzy']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command "xyzzy"; the commands are: up, down, deploy, .*completion/);
    expect(closestName('s', ['status', 'swap'])).toBeUndefined();
    expect(closestName('sawp', ['status', 'swap', 'scale'])).toBe('swap');
  });

  it('--version and -V print the package version', async () => {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await topo([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(version);
    }
  });

  it('global options before the command: applied to it, or a clear usage error', async () => {
    // --nats before the command is the server status tries (nothing listens on port 1).
    const before = await topo(['--nats', 'nats://127.0.0.1:1', 'status']);
    expect(before.code).toBe(1);
    expect(before.stderr).toContain('cannot connect to NATS at nats://127.0.0.1:1');
    const alone = await topo(['--json']);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain('--json needs a command after it');
    const unknown = await topo(['--colour', 'status']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option --colour before the command; the options that may come first are --nats, .*--json/);
    const missing = await topo(['--nats']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--nats needs a value (URL)');
    // A command that does not take a global option says so, as it does when the option follows it.
    const notTaken = await topo(['--json', 'down']);
    expect(notTaken.code).toBe(2);
    expect(notTaken.stderr).toContain('unknown option --json for `topo down`');
  });

  it('topo completion bash completes commands and their options in a real bash', async () => {
    const r = await topo(['completion', 'bash']);
    expect(r.code, r.stderr).toBe(0);
    const script = join(scratch, 'topo-completion.bash');
    writeFileSync(script, r.stdout);
    const complete = (words: string[]): Promise<string[]> => new Promise((resolve, reject) => {
      const call = `source ${JSON.stringify(script)}; COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')}); COMP_CWORD=${words.length - 1}; _topo; printf '%s\\n' "\${COMPREPLY[@]}"`;
      execFile('bash', ['-c', call], (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout.split('\n').filter(Boolean))));
    });
    expect(await complete(['topo', 'st'])).toEqual(['status']);
    expect(await complete(['topo', 'sc'])).toEqual(['scale']);
    expect(await complete(['topo', '--nats', 'nats://h:4222', 'st'])).toEqual(['status']);
    expect(await complete(['topo', 'deploy', '--ins'])).toEqual(['--instances']);
    expect(await complete(['topo', 'swap', 'counter', '--ca'])).toEqual(['--canary']);
    expect(await complete(['topo', 'completion', ''])).toContain('bash');
    // A file argument is left to bash's default (file names): nothing offered here.
    expect(await complete(['topo', 'deploy', ''])).toEqual([]);
    // Every command `topo --help` lists is offered.
    const help = await topo(['--help']);
    const listed = [...help.stdout.matchAll(/^  ([a-z]+)\s{2,}\S/gm)].map((m) => m[1]!).filter((v) => !['topo'].includes(v));
    const offered = await complete(['topo', '']);
    for (const v of listed.slice(0, listed.indexOf('completion') + 1)) expect(offered).toContain(v);
    const fish = await topo(['completion', 'fish']);
    expect(fish.code).toBe(2);
    expect(fish.stderr).toContain('no completion for "fish": topo completes bash');
  });
});
