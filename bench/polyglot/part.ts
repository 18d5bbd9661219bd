/** The polyglot part of the bench (bench/polyglot/harness.ts): hosted operators against hand-written loops of their language. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PairContext, PairPart } from '../pairs.js';
import type { CaseResult } from '../results.js';
import type { PolyglotCaseOptions, PolyglotKind } from './harness.js';

export const POLYGLOT_NAMES = {
  pyOp: 'Python pass-through, hosted operator',
  pyRaw: 'nats-py subscriber republishing the batches',
  goOp: 'Go word-lengths, hosted operator (--cmd)',
  goRaw: 'nats.go loop doing word-lengths\' work',
} as const;

const timeoutFor = (count: number): number => Math.max(120_000, Math.ceil(count / 2));

export async function polyglotPart(ctx: PairContext, count: number): Promise<PairPart> {
  const file = join(ctx.here, 'polyglot.mjs');
  const mod = existsSync(file) ? ((await import(pathToFileURL(file).href)) as { runPolyglotCase(o: PolyglotCaseOptions): Promise<CaseResult> }) : undefined;
  const skip = mod ? {} : { skipped: 'polyglot harness not built: the runtime is missing' };
  const run = (kind: PolyglotKind) => () => {
    if (!mod) throw new Error(skip.skipped);
    return mod.runPolyglotCase({ root: ctx.root, kind, count, timeoutMs: timeoutFor(count), log: ctx.log });
  };
  return {
    section: 'polyglot', title: 'Operators in other languages: hosted vs hand-written', records: count,
    cases: [
      { name: POLYGLOT_NAMES.pyRaw, description: 'bench-source -> bench/polyglot/relay.py (nats-py: decode each batch, republish its records in a batch of its own) -> bench-sink3; 3 workers', once: run('python-raw'), ...skip },
      { name: POLYGLOT_NAMES.pyOp, description: 'bench-source -> bpoly-pass (bench/polyglot/pass.py, run by a TS worker in a Python process) -> bench-sink3; 3 workers, one computation each', once: run('python-op'), ...skip },
      { name: POLYGLOT_NAMES.goRaw, description: 'bpoly-words -> bench/polyglot/go-relay (nats.go: decode, count per key, republish {word, length, total}) -> bpoly-sink; 3 workers', once: run('go-raw'), ...skip },
      { name: POLYGLOT_NAMES.goOp, description: 'bpoly-words -> word-lengths (examples/go-operator, `topo deploy --cmd`) -> bpoly-sink; 3 workers, one computation each', once: run('go-op'), ...skip },
    ],
    comparisons: [
      { what: 'Python hosted operator vs the nats-py subscriber', of: POLYGLOT_NAMES.pyOp, to: POLYGLOT_NAMES.pyRaw, target: 0.5 },
      { what: 'Go hosted operator vs the nats.go loop', of: POLYGLOT_NAMES.goOp, to: POLYGLOT_NAMES.goRaw, target: 0.7 },
    ],
    method: [
      '- Every run starts a fresh local topology (3 workers, `TOPO_AUTOPILOT=0`); the bench source (TS) emits the records of `bench/records.ts` (for Go their text, a str, on `words`), a TS bench sink times its first and last record. The middle stage is the operator under test, or its hand-written twin started as a plain process next to the topology.',
      '- The hand-written twins read the source\'s batches straight from `topo.data.<stream>.*` and publish batches of their own: no credits, no state hand-over, no dead letters. Nothing registers them as consumers, so the source is not held back by flow control for them (they buffer instead); the hosted operators run under topo\'s credits, its batching in the worker, and the frame round trip to their process for every activation (up to 16 batches).',
      '- The Go binaries are built once per bench run with `go build` (modules from the Go module proxy); the Python ones run in `.topo/python`.',
    ],
  };
}

/** The swap pause of a Python counter against the same swaps of a TS counter (bench/swap/ with lang python), same run. */
export async function polyglotSwaps(ctx: PairContext, swaps: number, keys: number): Promise<{ text: string; markdown: string; failed: boolean }> {
  const file = join(ctx.here, 'swap.mjs');
  if (!existsSync(file)) return { text: 'swap pause: not run (swap harness not built)', markdown: '', failed: true };
  const mod = (await import(pathToFileURL(file).href)) as typeof import('../swap/harness.js');
  const rows: string[] = [];
  let failed = false;
  const ms = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : '-');
  for (const lang of ['ts', 'python'] as const) {
    ctx.log(`polyglot swap pause: ${swaps} swaps of a ${lang} counter at ${(keys * 100).toLocaleString('en-US')} records/s`);
    try {
      const r = await mod.runSwapCase({ root: ctx.root, swaps, keys, everyMs: 10, instances: 1, lang, log: ctx.log });
      const lost = r.records.expected - r.records.received;
      rows.push(`| ${lang === 'ts' ? 'TypeScript' : 'Python (hosted)'} counter | ${r.swaps - r.failedSwaps.length}/${r.swaps} | ${ms(r.pause.p50)} | ${ms(r.pause.p99)} | ${ms(r.pause.max)} | ${ms(r.swapMs.p50)} | ${lost} | ${r.records.gaps + r.records.backwards + r.records.badCounts} |`);
      if (r.failedSwaps.length || lost) failed = true;
    } catch (err) {
      failed = true;
      rows.push(`| ${lang} counter | failed: ${(err as Error).message.slice(0, 200)} | | | | | | |`);
    }
  }
  const head = '| counter | swaps ok | pause p50 ms | pause p99 ms | pause max ms | whole swap p50 ms | records lost | gaps/reordered/bad counts |\n|---|---:|---:|---:|---:|---:|---:|---:|';
  const markdown = `### Swap pause, Python vs TypeScript\n\nThe swap bench (\`bench/swap/\`, a key-grouped counter swapped between two versions under a paced source of ${keys} keys every 10 ms) run for a TS counter and for its Python twin (\`bench/swap/counter_a.py\`, \`counter_b.py\`, hosted operators), ${swaps} swaps each, one after the other in this run.\n\n${head}\n${rows.join('\n')}\n`;
  return { text: `${head}\n${rows.join('\n')}`, markdown, failed };
}
