/** The swap bench's table, verdict and RESULTS.md section. */
import type { SwapBenchResult } from './harness.js';
import { BASELINE_MS, GAP_MS, TAIL_MS, WARMUP_MS } from './plan.js';
import type { Stats } from './stats.js';

export const TARGET_PAUSE_P99_MS = 20;
export const TARGET_RATE = 100_000;

/** Start and end markers of the swap section in RESULTS.md (so each half can be regenerated alone). */
export const SWAP_SECTION_BEGIN = '<!-- swap bench: begin -->';
export const SWAP_SECTION_END = '<!-- swap bench: end -->';

const ms = (n: number): string => (Number.isFinite(n) ? `${Math.round(n)}` : '-');
const int = (n: number): string => Math.round(n).toLocaleString('en-US');

interface Row {
  what: string;
  n: string;
  p50: string;
  p99: string;
  max: string;
}

export function swapRows(r: SwapBenchResult): Row[] {
  const row = (what: string, s: Stats): Row => ({ what, n: String(s.n), p50: ms(s.p50), p99: ms(s.p99), max: ms(s.max) });
  return [
    row('upstream pause (pauseMs)', r.pause),
    row('load before the pause (loadMs)', r.load),
    row('whole swap, client request to reply', r.swapMs),
    row('worst record latency in a swap', r.worstDuringSwap),
    row('extra latency in a swap (worst - baseline p50)', r.extra),
    row('record latency, baseline (no swap)', r.baseline),
    row('record latency, before the first swap', r.beforeSwaps),
    row('record latency, during swaps', r.during),
  ];
}

const HEAD: Row = { what: 'ms', n: 'n', p50: 'p50', p99: 'p99', max: 'max' };
const COLS = Object.keys(HEAD) as (keyof Row)[];

export function swapTextTable(r: SwapBenchResult): string {
  const rows = swapRows(r);
  const width = COLS.map((k) => Math.max(HEAD[k].length, ...rows.map((x) => x[k].length)));
  const line = (x: Row): string => COLS.map((k, i) => (i === 0 ? x[k].padEnd(width[i]!) : x[k].padStart(width[i]!))).join('  ');
  return [line(HEAD), width.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function swapMarkdownTable(r: SwapBenchResult): string {
  const line = (x: Row): string => `| ${COLS.map((k) => x[k]).join(' | ')} |`;
  return [line(HEAD), `|${COLS.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...swapRows(r).map(line)].join('\n');
}

export function lostOf(r: SwapBenchResult): number {
  return Math.max(0, r.records.expected - r.records.received) + r.records.gaps;
}

function recordsLine(r: SwapBenchResult): string {
  const x = r.records;
  return `${int(x.received)} of ${int(x.expected)} records arrived; ${int(lostOf(r))} lost, ${int(x.backwards)} duplicated or out of order, ${int(x.badCounts)} with a wrong count`;
}

/** One line per target: met, or missed by how much. */
export function swapVerdict(r: SwapBenchResult | undefined, error?: string): string[] {
  if (!r) return [`- The swap bench did not run${error ? ` (${error})` : ''}, so its targets are not checked.`];
  const lines: string[] = [];
  const p99 = r.pause.p99;
  lines.push(p99 <= TARGET_PAUSE_P99_MS
    ? `- Pause p99 ${ms(p99)} ms over ${r.pause.n} swaps, target <= ${TARGET_PAUSE_P99_MS} ms: met.`
    : `- Pause p99 ${ms(p99)} ms over ${r.pause.n} swaps, target <= ${TARGET_PAUSE_P99_MS} ms: MISSED by ${ms(p99 - TARGET_PAUSE_P99_MS)} ms (${((p99 / TARGET_PAUSE_P99_MS - 1) * 100).toFixed(0)}% over).`);
  const lost = lostOf(r);
  const clean = lost === 0 && r.records.backwards === 0 && r.records.badCounts === 0;
  lines.push(clean
    ? `- Zero records lost: met (${recordsLine(r)}).`
    : `- Zero records lost: MISSED (${recordsLine(r)}).`);
  lines.push(r.targetRate >= TARGET_RATE && r.achievedRate >= 0.97 * TARGET_RATE
    ? `- Load >= ${int(TARGET_RATE)} records/s: met (${int(r.targetRate)} records/s asked, ${int(r.achievedRate)} records/s arrived on average over the run).`
    : `- Load >= ${int(TARGET_RATE)} records/s: MISSED (${int(r.targetRate)} records/s asked, ${int(r.achievedRate)} records/s arrived).`);
  if (r.failedSwaps.length) lines.push(`- ${r.failedSwaps.length} of ${r.swaps} swaps failed: ${r.failedSwaps.slice(0, 3).join('; ')}`);
  return lines;
}

export interface SwapSectionContext {
  command: string;
  date: string;
  machine: string;
  software: string;
  loadBefore: number;
  /** Why it did not run, when it did not. */
  error?: string;
}

export function swapMarkdownSection(r: SwapBenchResult | undefined, c: SwapSectionContext): string {
  const body = r
    ? `${swapMarkdownTable(r)}

${recordsLine(r)}. Load: ${r.keys.toLocaleString('en-US')} keys, one record per key every ${r.everyMs} ms (${int(r.targetRate)} records/s asked, ${int(r.achievedRate)} records/s arrived over ${r.seconds.toFixed(1)} s); counter with ${r.instances} instance(s).${r.notes.length ? ` Placement: ${r.notes.join('; ')}.` : ''}`
    : `Not run${c.error ? `: ${c.error}` : ''}.`;
  const slowest = r?.slowest.length
    ? `\n\nLongest pauses, with the controller's step times (ms): ${r.slowest.map((x) => `swap ${x.swap}: ${ms(x.pauseMs)} ms (${x.steps})`).join('; ')}.`
    : '';
  return `${SWAP_SECTION_BEGIN}
## Live hot swap

- Date: ${c.date}
- Command: \`${c.command}\`
- Machine: ${c.machine}
- ${c.software}
- 1-minute load average before the run: ${c.loadBefore.toFixed(2)}

${body}${slowest}

### Targets

${swapVerdict(r, c.error).join('\n')}

### Method

- \`bench/swap/\`: a fresh local topology (nats-server, controller, one worker per counter instance plus one for the source, as processes).
  \`bswap-source\` emits one record per key every 10 ms from timers (1000 keys: 100,000 records/s), each carrying its tick number and the tick's *planned* time, and never skips a late tick.
  \`bswap-counter\` (key-grouped, keyed state: a count per key) emits \`{seq, t, count, code}\` per record.
  The harness taps the counter's output with a plain NATS subscription, checks per key that seqs arrive 1, 2, 3, ... exactly once and that count === seq (state carried across every version), and takes latency = arrival time - planned time.
- After ${WARMUP_MS / 1000} s of warm-up and a ${BASELINE_MS / 1000} s baseline, the counter is swapped ${r?.swaps ?? 50} times, alternating two pre-bundled versions (\`TopoClient.swapBundle\`, default probation), ${GAP_MS} ms apart. Then the source is stopped and reports its last tick; every key must reach it.
- pauseMs and loadMs are the controller's figures (SwapReply): pauseMs is upstreams paused until resumed; loadMs is the artifact fetch and import before the pause.
- A record is "during a swap" when its tick's planned time falls between sending the swap request and ${TAIL_MS} ms after its reply (the tail covers the backlog of the pause draining); the other records after warm-up are the baseline of the same run. "worst record latency in a swap" is, per swap, the highest latency of its records; "extra" subtracts the baseline p50. With 50 swaps the p99 over swaps is the largest value.
- The new version's output is held until the swap commits (probation), so records it handled during the health gate also wait for the commit: that is part of the extra latency, not of the pause.
${SWAP_SECTION_END}`;
}
