/** Table, verdict and RESULTS.md section of the live scale and fuse/split benches. */
import type { RunFacts } from '../pairs.js';
import { wrapSection } from '../sections.js';
import type { Stats } from '../swap/stats.js';
import type { LiveMode, LiveResult } from './harness.js';
import { GAP_MS, WARMUP_MS } from './plan.js';

export const TARGET_PAUSE_P99_MS = 20;
export const TARGET_RATE = 50_000;

const ms = (n: number): string => (Number.isFinite(n) ? `${Math.round(n)}` : '-');
const int = (n: number): string => Math.round(n).toLocaleString('en-US');

export const LIVE_TITLES: Record<LiveMode, string> = {
  scale: 'Live scale 1 -> 2 -> 4 -> 2 -> 1 of a key-grouped counter under load',
  regroup: 'Live fuse and split of a 2-stage chain under load',
};

interface Row { what: string; n: string; p50: string; p99: string; max: string }

function liveRows(r: LiveResult): Row[] {
  const row = (what: string, s: Stats): Row => ({ what, n: String(s.n), p50: ms(s.p50), p99: ms(s.p99), max: ms(s.max) });
  return [
    row(`upstream pause (reply.pauseMs), all ${r.mode === 'scale' ? 'scales' : 'fuses and splits'}`, r.pause),
    ...r.byKind.map((k) => row(`  pause of ${k.what}`, k.pause)),
    row('whole change, client request to reply', r.elapsed),
    row('record latency (arrival - planned tick), whole run', r.latency),
  ];
}

export function liveTextTable(r: LiveResult): string {
  const head: Row = { what: 'ms', n: 'n', p50: 'p50', p99: 'p99', max: 'max' };
  const all = [head, ...liveRows(r)];
  const cols = Object.keys(head) as (keyof Row)[];
  const width = cols.map((k) => Math.max(...all.map((x) => x[k].length)));
  return all.map((x) => cols.map((k, i) => (i === 0 ? x[k].padEnd(width[i]!) : x[k].padStart(width[i]!))).join('  ')).join('\n');
}

function recordsLine(r: LiveResult): string {
  const a = r.audit;
  return `${int(a.received)} records arrived for ${int(a.expected)} sent; ${int(a.lost)} lost, ${int(a.duplicated)} duplicated, ${int(a.reordered)} out of order, ${int(a.badCounts)} with a wrong count`;
}

export function liveVerdict(mode: LiveMode, r: LiveResult | undefined, error?: string): string[] {
  if (!r) return [`- ${LIVE_TITLES[mode]}: not measured${error ? ` (${error})` : ''}.`];
  const lines: string[] = [];
  const failed = r.changes.filter((c) => c.error);
  lines.push(Number.isFinite(r.pause.p99)
    ? `- Pause p99 ${ms(r.pause.p99)} ms (p50 ${ms(r.pause.p50)}, max ${ms(r.pause.max)}) over ${r.pause.n} changes, target <= ${TARGET_PAUSE_P99_MS} ms: ${r.pause.p99 <= TARGET_PAUSE_P99_MS ? 'met' : 'MISSED'}.`
    : '- Pause: no change reported a pause.');
  if (Number.isFinite(r.swapPause.p50)) {
    const ratio = r.swapPause.p50 > 0 ? ` (${(r.pause.p50 / r.swapPause.p50).toFixed(1)}x the swap's p50)` : '';
    lines.push(`- Baseline of the same run: ${r.swapPause.n} hot swaps of the counter paused p50 ${ms(r.swapPause.p50)} ms, p99 ${ms(r.swapPause.p99)} ms, max ${ms(r.swapPause.max)} ms; the ${r.mode === 'scale' ? 'scales' : 'fuses and splits'} p50 ${ms(r.pause.p50)} ms${ratio}.`);
  }
  lines.push(`- Zero records lost: ${r.audit.lost === 0 && r.audit.duplicated === 0 && r.audit.reordered === 0 && r.audit.badCounts === 0 ? 'met' : 'MISSED'} (${recordsLine(r)}).`);
  lines.push(`- Load ~${int(TARGET_RATE)} records/s: ${int(r.targetRate)} asked, ${int(r.achievedRate)} arrived on average over ${r.seconds.toFixed(1)} s${r.achievedRate >= TARGET_RATE * 0.95 ? '' : ' (BELOW the asked rate: the source could not keep up)'}.`);
  if (failed.length) lines.push(`- ${failed.length} of ${r.changes.length} changes failed: ${failed.slice(0, 3).map((c) => `change ${c.n} (${c.what}): ${c.error}`).join('; ')}`);
  return lines;
}

export function liveMarkdownSection(mode: LiveMode, r: LiveResult | undefined, f: RunFacts, error?: string): string {
  const head = '| ms | n | p50 | p99 | max |\n|---|---:|---:|---:|---:|';
  const body = r
    ? `${head}\n${liveRows(r).map((x) => `| ${x.what.trim()} | ${x.n} | ${x.p50} | ${x.p99} | ${x.max} |`).join('\n')}

${recordsLine(r)}.${r.audit.examples.length ? ` Examples: ${r.audit.examples.join('; ')}.` : ''}

Longest pauses, with the controller's step times (ms): ${[...r.changes].filter((c) => c.pauseMs !== undefined).sort((a, b) => b.pauseMs! - a.pauseMs!).slice(0, 3).map((c) => `change ${c.n} (${c.what}): ${ms(c.pauseMs!)} ms (${c.steps})`).join('; ') || '-'}.

Every change, ms paused and the controller's step times (ms):

${r.changes.map((c) => `- ${c.n}. ${c.what}: ${c.pauseMs === undefined ? '-' : ms(c.pauseMs)} (${c.steps || 'no steps'})${c.error ? `, FAILED: ${c.error}` : ''}`).join('\n')}${r.notes.length ? `\n\nNotes: ${r.notes.join('; ')}.` : ''}`
    : `Not run${error ? `: ${error}` : ''}.`;
  const setup = mode === 'scale'
    ? '`bswap-counter` (`bench/swap/counter-a.ts`, key-grouped, a count per key) is scaled with `client.scale` through the cycle 1 -> 2 -> 4 -> 2 -> 1 (4 changes per cycle, the last one back to the start), on 5 workers (the source on one of its own; `placeScaled` spreads the instances over the others).'
    : 'The chain `bswap-source` -> `blive-relay` (shuffle, passes records on) -> `blive-counter` (key-grouped, a count per key) has relay and counter fused with `client.fuse([blive-relay, blive-counter])` and split with `client.split(blive-relay)`, alternately, on 3 workers (one computation each at the start; a fuse moves the counter to the relay\'s worker, and a split leaves it there).';
  return wrapSection(mode, `## ${LIVE_TITLES[mode]}

- Date: ${f.date}
- Command: \`${f.command}\`
- Machine: ${f.machine}
- ${f.software}
- 1-minute load average before the run: ${f.loadBefore.toFixed(2)}

${body}

### Targets

${liveVerdict(mode, r, error).join('\n')}

### Method

- A fresh local topology with \`TOPO_AUTOPILOT=0\` (only the bench changes it). The load is the swap bench's source (\`bench/swap/source.ts\`): one record per key every 10 ms, each with its tick number (seq) and planned time, never skipping a late tick; ${r ? int(r.targetRate / 100) : 'N'} keys.
- ${setup}
- After ${WARMUP_MS / 1000} s of warm-up, the changes run one after the other, ${GAP_MS} ms apart. pauseMs is the controller's figure from each reply (upstreams paused until resumed).
- Baseline in the same run, under the same load: ${mode === 'scale' ? 'after each cycle the counter is hot swapped to its other version and back (`client.swapBundle`, `bench/swap/counter-a.ts` <-> `counter-b.ts`)' : 'after each fuse and split the counter is hot swapped to its other version (`client.swapBundle`, `bench/live/counter.ts` <-> `counter-b.ts`)'}; those pauses are reported apart and are not in the target's figures. The machine is shared: the load average above shows how much else ran.
- The harness subscribes to the counter's output (\`bswap-out\`) and audits it per key (\`bench/live/audit.ts\`, as \`test/swap-helpers.ts\` audit): after the source is stopped and reports its last tick, every key must have seqs 1..last exactly once, in order, with count === seq (the keyed state carried over every change).
`);
}
