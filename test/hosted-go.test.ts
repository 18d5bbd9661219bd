/**
 * An operator in Go (examples/go-operator, written from PROTOCOL.md alone)
 * run by a TS worker through `topo deploy --cmd`: it counts words per key in
 * keyed state; a live `topo swap --cmd` to another build hands that state
 * over (totals continue, no word lost or repeated), and `topo kill` ends its
 * process. The Go toolchain builds it here
 * (modules from the Go module proxy).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTopo, waitFor } from './harness.js';
import { tapStream, type Tap, perTest } from './swap-helpers.js';

const example = join(import.meta.dirname, '..', 'examples', 'go-operator');
const bin = mkdtempSync(join(tmpdir(), 'topo-go-operator-'));
const builds = { a: join(bin, 'word-lengths-a'), b: join(bin, 'word-lengths-b') };

beforeAll(() => {
  // Two builds at two paths: two artifacts (the command line is part of the fingerprint), the same code.
  for (const out of Object.values(builds)) execFileSync('go', ['build', '-o', out, '.'], { cwd: example, stdio: 'inherit', timeout: 240_000 });
}, 300_000);
afterAll(() => rmSync(bin, { recursive: true, force: true }));

const run = perTest();
const taps = run.taps;

interface Length {
  key: string;
  word: string;
  length: number;
  total: number;
}

describe('a Go operator deployed with --cmd', () => {
  it('refuses a --name it does not declare, counts words with keyed state, swaps live to another build keeping the totals, and is killed', async () => {
    const c = (await run.cluster({ workers: 1 }));
    const out = await tapStream(c.client, 'word-lengths', (key, value) => ({ key, ...(value as Omit<Length, 'key'>) }));
    taps.push(out as Tap<unknown>);
    const cli = (args: string[]) => runTopo([...args, '--nats', c.url], { timeoutMs: 60_000 });

    const bad = await cli(['deploy', '--cmd', builds.a, '--name', 'someone-else']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/declares the computation "word-lengths", not --name someone-else/);

    const d = await cli(['deploy', '--cmd', builds.a, '--name', 'word-lengths']);
    expect(d.code, d.stderr).toBe(0);
    expect((await c.client.computation('word-lengths'))?.lang).toBe('cmd');
    await c.client.deployFile('test/fixtures/go-words-source.ts');
    await waitFor(() => out.records.length > 200, { what: 'word lengths from the Go operator', timeoutMs: 20_000 });

    const s = await cli(['swap', 'word-lengths', '--cmd', builds.b]);
    expect(s.code, s.stdout + s.stderr).toBe(0);
    expect(s.stdout).toMatch(/^swapped word-lengths v1 -> v2/m);
    const after = out.records.length;
    await waitFor(() => out.records.length > after + 200, { what: 'word lengths after the swap', timeoutMs: 20_000 });

    // Per key: words w1, w2, ... each once, in order, and total === its seq: the state went across the swap.
    const byKey = new Map<string, Length[]>();
    for (const r of out.records) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r]);
    expect(byKey.size).toBe(8);
    for (const [key, list] of byKey) {
      const seqs = list.map((r) => Number(r.word.slice(1)));
      expect(seqs, key).toEqual(seqs.map((_, i) => seqs[0]! + i));
      for (const r of list) {
        expect(r.total, `${key} ${r.word}`).toBe(Number(r.word.slice(1)));
        expect(r.length).toBe(r.word.length);
      }
    }

    const k = await cli(['kill', 'word-lengths']);
    expect(k.code, k.stderr).toBe(0);
    await waitFor(() => !execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes(bin), { what: 'the Go operator processes gone', timeoutMs: 10_000 });
  });
});
