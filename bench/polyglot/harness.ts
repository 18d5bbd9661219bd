/**
 * The polyglot bench: an operator in another language, hosted by a TS worker,
 * against a hand-written loop in the same language doing the same work
 * straight on NATS, in the same pipeline (bench source -> X -> bench sink):
 * - python-op: bench/polyglot/pass.py (a pass-through) as a hosted operator;
 *   python-raw: bench/polyglot/relay.py, a nats-py subscriber that decodes
 *   and republishes the same batches;
 * - go-op: examples/go-operator (word-lengths) deployed with --cmd;
 *   go-raw: bench/polyglot/go-relay, a nats.go loop doing word-lengths' work.
 * Run by runPipeline (bench/topo/harness.ts) on a fresh topology each time,
 * the autopilot off. Bundled into dist/bench/polyglot.mjs by bench/run.mjs.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleCommand } from '../../runtime/client/hostedBundle.js';
import { pythonInterpreter } from '../../runtime/client/paths.js';
import type { CaseResult } from '../results.js';
import { runPipeline } from '../topo/harness.js';

export type PolyglotKind = 'python-op' | 'python-raw' | 'go-op' | 'go-raw';

export interface PolyglotCaseOptions {
  root: string;
  kind: PolyglotKind;
  count: number;
  timeoutMs: number;
  log: (line: string) => void;
}

let builtDir: string | undefined;

/** The Go operator and the Go baseline, built once per bench run. */
function goBinaries(root: string): { operator: string; relay: string } {
  builtDir ??= mkdtempSync(join(tmpdir(), 'topo-bench-go-'));
  const operator = join(builtDir, 'word-lengths');
  const relay = join(builtDir, 'go-relay');
  if (!existsSync(operator)) execFileSync('go', ['build', '-o', operator, '.'], { cwd: join(root, 'examples', 'go-operator'), stdio: 'inherit' });
  if (!existsSync(relay)) execFileSync('go', ['build', '-o', relay, '.'], { cwd: join(root, 'bench', 'polyglot', 'go-relay'), stdio: 'inherit' });
  return { operator, relay };
}


/** Starts a baseline process and resolves once it prints "ready". */
function startRelay(command: string, args: string[], what: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`${what} exited with code ${code} before it was ready: ${err}`)));
  });
}

export async function runPolyglotCase(o: PolyglotCaseOptions): Promise<CaseResult> {
  const bench = (f: string): string => join(o.root, 'bench', f);
  let relay: ChildProcess | undefined;
  const go = o.kind.startsWith('go') ? goBinaries(o.root) : undefined;
  try {
    return await runPipeline({
      label: `polyglot-${o.kind}`, workers: 3, count: o.count, timeoutMs: o.timeoutMs, log: o.log,
      env: { TOPO_AUTOPILOT: '0' },
      async setup(client) {
        const url = client.nc.getServer();
        const natsUrl = url.startsWith('nats://') ? url : `nats://${url}`;
        switch (o.kind) {
          case 'python-op':
            await client.deployFile(bench('topo/sink-three-stage.ts'));
            await client.deployFile(bench('polyglot/pass.py'));
            await client.deployFile(bench('topo/source.ts'));
            break;
          case 'python-raw':
            await client.deployFile(bench('topo/sink-three-stage.ts'));
            relay = await startRelay(pythonInterpreter(), [bench('polyglot/relay.py'), natsUrl], 'the nats-py relay');
            await client.deployFile(bench('topo/source.ts'));
            break;
          case 'go-op':
            await client.deployFile(bench('polyglot/sink-lengths.ts'));
            await client.deployBundle(await bundleCommand(go!.operator, { name: 'word-lengths' }), { source: 'go word-lengths' });
            await client.deployFile(bench('polyglot/words-source.ts'));
            break;
          case 'go-raw':
            await client.deployFile(bench('polyglot/sink-lengths.ts'));
            relay = await startRelay(go!.relay, [natsUrl], 'the nats.go relay');
            await client.deployFile(bench('polyglot/words-source.ts'));
            break;
        }
        return [];
      },
    });
  } finally {
    relay?.kill('SIGKILL');
  }
}
