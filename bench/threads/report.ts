/** The threads bench's text, verdict and RESULTS.md section. */
import type { ThreadsBenchResult } from './harness.js';

export const TARGET_RATIO = 1.6;
export const THREADS_SECTION_BEGIN = '<!-- threads bench: begin -->';
export const THREADS_SECTION_END = '<!-- threads bench: end -->';

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export function threadsRows(r: ThreadsBenchResult): string[][] {
  const n = r.instances * r.recordsPerInstance;
  const t = median(r.thread.map((x) => x.ms));
  const i = median(r.inline.map((x) => x.ms));
  return [
    ['case', 'records', 'ms (median)', 'records/s', 'vs inline'],
    [`cpu-heavy ~${r.usPerRecord} µs/record: 2 instances in threads`, int(n), int(t), int(n / (t / 1_000)), `${r.ratio.toFixed(2)}x`],
    [`cpu-heavy ~${r.usPerRecord} µs/record: the same 2 inline`, int(n), int(i), int(n / (i / 1_000)), '1.00x'],
    ['same work, 2 bare worker_threads vs 1 thread (no topo: the machine\'s ceiling)', int(n), '-', '-', `${r.ceiling.toFixed(2)}x`],
    ['light, 1 instance inline', int(r.light.records), '-', int(median(r.light.recordsPerSec)), '-'],
  ];
}

export function threadsTextTable(r: ThreadsBenchResult): string {
  const rows = threadsRows(r);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  return rows.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

export function threadsVerdict(r: ThreadsBenchResult | undefined, error?: string): string[] {
  if (!r) return [`- threads bench did not run${error ? `: ${error}` : ''}.`];
  const ok = r.ratio >= TARGET_RATIO;
  const best = Math.max(...r.ratios);
  return [
    `- cpu-heavy, 2 instances in threads vs the same inline: ${r.ratio.toFixed(2)}x (median of ${r.ratios.length} pairs; pairs: ${r.ratios.map((x) => `${x.toFixed(2)}x`).join(', ')}; best ${best.toFixed(2)}x), ` +
      `target >= ${TARGET_RATIO}x on 2 cores: ${ok ? 'met' : `MISSED by ${(((TARGET_RATIO - r.ratio) / TARGET_RATIO) * 100).toFixed(0)}%`}.`,
    `- The machine allowed ${r.ceiling.toFixed(2)}x in the same run (the same work in 2 bare worker_threads vs 1 thread, per pair: ${r.ceilings.map((x) => `${x.toFixed(2)}x`).join(', ')}); topo's threads reached ${((r.ratio / r.ceiling) * 100).toFixed(0)}% of that.`,
  ];
}

export function threadsMarkdownSection(
  r: ThreadsBenchResult | undefined,
  o: { command: string; date: string; machine: string; software: string; loadBefore: number; error?: string },
): string {
  const rows = r ? threadsRows(r) : [];
  const table = rows.length
    ? [`| ${rows[0]!.join(' | ')} |`, `|---|${rows[0]!.slice(1).map(() => '---:').join('|')}|`, ...rows.slice(1).map((row) => `| ${row.join(' | ')} |`)].join('\n')
    : '';
  return `${THREADS_SECTION_BEGIN}
## CPU-heavy computations in threads

- Date: ${o.date}
- Command: \`${o.command}\` (this part alone: \`npm run bench -- --only threads\`)
- Machine: ${o.machine}
- ${o.software}
- 1-minute load average before the run: ${o.loadBefore.toFixed(2)} (other work on the machine skews the figures, threads most: two busy threads need both cores, one inline thread only one)
${r ? `- Work: ${r.iters.toLocaleString('en-US')} iterations of integer arithmetic per record, calibrated to ~${r.usPerRecord} µs on this machine at the start of the run; ${r.instances} instances x ${int(r.recordsPerInstance)} records each, batches of 256; ${r.thread.length} pairs, each a threads run and an inline run back to back (the order alternating), then a light run; the ratio is the median of the per-pair ratios (ms columns: medians).\n` : ''}
${table}

${threadsVerdict(r, o.error).join('\n')}
${r ? `\nRuns (ms): threads ${r.thread.map((x) => int(x.ms)).join(', ')}; inline ${r.inline.map((x) => int(x.ms)).join(', ')}. Light runs (records/s): ${r.light.recordsPerSec.map(int).join(', ')}.\n` : ''}
Method (\`bench/threads/\`): in-process, not end to end. Both modes run the worker's own \`Instance\` loop (runtime/worker/instance.ts) over the same encoded msgpack batches, handed over by an in-process Inlet, with outputs counted by an in-process Outlet (no NATS: the wire is the same in both modes; what differs is where the callbacks run). "threads": the computation says \`hints: { cpu: 'heavy' }\`, so each instance runs in its own piscina thread (runtime/runners/thread.ts, runtime/worker/threadPump.ts), fed up to 16 encoded batches per activation, the buffers transferred. "inline": the same two instances on the main thread (no artifact file given, so no thread). The instances of each mode are long-lived, as in a worker: started and warmed up once (2,000 records each), then fed run after run (a thread's JIT warms up once per instance, not per run). Time is wall time from handing over the first batch to the last output. The light case is a per-key counter through the inline loop (its figure against an earlier commit: \`node bench/threads/light-before.mjs <ref>\`).
${THREADS_SECTION_END}`;
}
