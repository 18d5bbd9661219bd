/**
 * The fusion and CPU-heavy benches: throughput pipelines run against their
 * baseline in the same run (interleaved, median of `runs`), reported as
 * ratios against targets. Their harnesses are bundled separately
 * (dist/bench/fusion.mjs, dist/bench/heavy.mjs) because they need the runtime.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { FusionCaseOptions } from './fusion/harness.js';
import type { HeavyCaseOptions } from './heavy/harness.js';
import type { TopoCaseOptions } from './topo/harness.js';
import { runInterleaved, type BenchCase } from './interleave.js';
import type { CaseResult, CaseSummary } from './results.js';
import { wrapSection, type SectionName } from './sections.js';

interface FusionModule { runFusionCase(o: FusionCaseOptions): Promise<CaseResult> }
interface HeavyModule { runHeavyCase(o: HeavyCaseOptions): Promise<CaseResult> }
interface TopoModule { runTopoCase(o: TopoCaseOptions): Promise<CaseResult> }

/** A ratio of two cases' medians, with or without a target. */
interface Comparison {
  what: string;
  of: string;
  to: string;
  target?: number;
}

export interface PairPart {
  section: SectionName;
  title: string;
  records: number;
  cases: BenchCase[];
  comparisons: Comparison[];
  method: string[];
}

export interface PairContext {
  here: string;
  root: string;
  runs: number;
  log: (line: string) => void;
}

const timeoutFor = (count: number): number => Math.max(60_000, Math.ceil(count / 5));

async function load<T>(ctx: PairContext, file: string): Promise<T | undefined> {
  const p = join(ctx.here, file);
  return existsSync(p) ? ((await import(pathToFileURL(p).href)) as T) : undefined;
}

const NOT_BUILT = 'harness not built: the runtime (runtime/client, runtime/worker, runtime/controller) is missing';

export const FUSION_NAMES = { fused: 'fused chain of 5 trivial computations', loop: 'hand-written loop calling the same 5 functions', unfused: 'the same chain unfused, across processes' } as const;
export const HEAVY_NAMES = { two: 'CPU-heavy (~50 µs/record) on 2 worker processes', one: 'CPU-heavy (~50 µs/record) on 1 worker process' } as const;

export async function fusionPart(ctx: PairContext, count: number): Promise<PairPart> {
  const mod = await load<FusionModule>(ctx, 'fusion.mjs');
  const run = (kind: FusionCaseOptions['kind']) => () => {
    if (!mod) throw new Error(NOT_BUILT);
    return mod.runFusionCase({ root: ctx.root, kind, count, timeoutMs: timeoutFor(count), log: ctx.log });
  };
  const skip = mod ? {} : { skipped: NOT_BUILT };
  return {
    section: 'fusion', title: 'Fusion', records: count,
    cases: [
      { name: FUSION_NAMES.loop, description: 'bench-source -> bfuse-loop (one computation calling the 5 step functions in a loop) -> bfuse-sink; 3 workers, one computation each', once: run('loop'), ...skip },
      { name: FUSION_NAMES.fused, description: 'bench-source -> bfuse-stage-1..5 (one step function each) fused with `client.fuse` into one chain on one worker -> bfuse-sink; 3 workers', once: run('fused'), ...skip },
      { name: FUSION_NAMES.unfused, description: 'bench-source -> bfuse-stage-1..5 -> bfuse-sink, not fused, every computation on its own worker (7 workers): 6 NATS hops', once: run('unfused'), ...skip },
    ],
    comparisons: [
      { what: 'fused chain vs hand-written loop', of: FUSION_NAMES.fused, to: FUSION_NAMES.loop, target: 0.5 },
      { what: 'fused chain vs the same chain unfused (what fusion buys)', of: FUSION_NAMES.fused, to: FUSION_NAMES.unfused },
    ],
    method: [
      '- `bench/fusion/`: the 5 step functions (`steps.ts`) are trivial (each makes a new `{id, user, text}` with `id` changed). `stage-1.ts` .. `stage-5.ts` each apply one; `loop.ts` applies all five in a loop. Source and sink are the throughput bench\'s (`bench/topo/source.ts`, `bench/topo/sink.ts`): the source emits the records of `bench/records.ts` from timers, the sink times its first and its last record with `performance.now()`.',
      '- Every run starts a fresh local topology with `TOPO_AUTOPILOT=0` (nothing is fused but what the case fuses). Source and sink are deployed first, so each has a worker of its own; the fused case then calls `client.fuse([bfuse-stage-1, ..., bfuse-stage-5])` before the start record, which puts the 5 stages on the first stage\'s worker, records handed over in-process. The unfused case has 7 workers on the 2 CPUs, one per computation.',
    ],
  };
}

export async function heavyPart(ctx: PairContext, count: number): Promise<PairPart> {
  const mod = await load<HeavyModule>(ctx, 'heavy.mjs');
  const run = (instances: 1 | 2) => () => {
    if (!mod) throw new Error(NOT_BUILT);
    return mod.runHeavyCase({ root: ctx.root, instances, count, timeoutMs: timeoutFor(count * 10), log: ctx.log });
  };
  const skip = mod ? {} : { skipped: NOT_BUILT };
  return {
    section: 'heavy', title: 'CPU-heavy computation on 1 and 2 worker processes', records: count,
    cases: [
      { name: HEAVY_NAMES.one, description: 'bench-source -> bheavy (1 instance) -> bheavy-sink on 4 workers (one idle)', once: run(1), ...skip },
      { name: HEAVY_NAMES.two, description: 'bench-source -> bheavy (2 instances, shuffle, one per worker) -> bheavy-sink on 4 workers', once: run(2), ...skip },
    ],
    comparisons: [{ what: '2 instances vs 1', of: HEAVY_NAMES.two, to: HEAVY_NAMES.one, target: 1.7 }],
    method: [
      '- `bench/heavy/`: `bheavy` spins on `performance.now()` for 50 µs per record (no `hints.cpu`: it runs on the worker\'s main thread), then passes the record on; shuffle grouping, so its instances share the source\'s records through a NATS queue group. Source and sink as in the throughput bench.',
      '- Every run: a fresh local topology of 4 workers with `TOPO_AUTOPILOT=0`; `bheavy` is deployed first (1 or 2 instances, one per worker), then source and sink, each on a worker of its own. The machine has 2 CPUs, so with 2 instances the source, the sink, NATS and the controller compete with them for CPU.',
    ],
  };
}

export const AUTH_NAMES = { on: 'one-hop, NATS auth on (JWT, per-worker and per-instance users)', off: 'one-hop, NATS auth off (anonymous)' } as const;

/** The throughput bench's one-hop pipeline with some options: a case's `once` and, when not built, its `skipped`. */
async function oneHopRunner(ctx: PairContext, count: number): Promise<{ run: (o: Partial<TopoCaseOptions>) => () => Promise<CaseResult>; skip: { skipped?: string } }> {
  const mod = await load<TopoModule>(ctx, 'topo.mjs');
  const run = (o: Partial<TopoCaseOptions>) => () => {
    if (!mod) throw new Error(NOT_BUILT);
    return mod.runTopoCase({ root: ctx.root, kind: 'one-hop', count, timeoutMs: timeoutFor(count), log: ctx.log, ...o });
  };
  return { run, skip: mod ? {} : { skipped: NOT_BUILT } };
}

export async function authPart(ctx: PairContext, count: number): Promise<PairPart> {
  const { run: runWith, skip } = await oneHopRunner(ctx, count);
  const run = (auth: boolean) => runWith({ auth });
  return {
    section: 'auth', title: 'NATS auth on vs off (one-hop)', records: count,
    cases: [
      { name: AUTH_NAMES.off, description: 'bench-source -> bench-sink, each on its own worker process; nats-server started without auth', once: run(false), ...skip },
      { name: AUTH_NAMES.on, description: 'the same on a nats-server in operator mode (topo up\'s default): admin creds for the controller and the bench client, each worker its own user with publish/subscribe allow lists, and each instance a connection of its own as the user the controller minted for it (its streams only)', once: run(true), ...skip },
    ],
    comparisons: [{ what: 'auth on vs off', of: AUTH_NAMES.on, to: AUTH_NAMES.off, target: 0.98 }],
    method: [
      '- The throughput bench\'s one-hop pipeline (`bench/topo/source.ts` -> `bench/topo/sink-one-hop.ts`, batches of msgpack records over `topo.data.*` with credit flow control), on a fresh local topology per run with `TOPO_AUTOPILOT=0`.',
      '- Auth on: `startLocalTopology` as `topo up` runs it: nats-server with `-c .topo/auth/nats-server.conf` (operator JWT, MEMORY resolver), every process with its `.creds` file and every instance on its own connection as its own user; the server checks each publish and subscription against the allow lists of that user (protocol/permissions.ts). Auth off: `auth: false`, an anonymous server.',
    ],
  };
}

export const METRICS_NAMES = { on: 'one-hop, metrics on (scraped every 250 ms)', off: 'one-hop, metrics off (TOPO_METRICS=0)' } as const;

export async function metricsPart(ctx: PairContext, count: number): Promise<PairPart> {
  const { run: runWith, skip } = await oneHopRunner(ctx, count);
  const run = (on: boolean) => runWith(on ? { scrapeMetricsMs: 250 } : { env: { TOPO_METRICS: '0' } });
  return {
    section: 'metrics', title: 'Metrics on vs off (one-hop)', records: count,
    cases: [
      { name: METRICS_NAMES.off, description: 'bench-source -> bench-sink, each on its own worker process; workers observe nothing (no per-batch timing, no latency histogram, no credit-stall accounting, no process figures)', once: run(false), ...skip },
      { name: METRICS_NAMES.on, description: 'the same with metrics on (the default), and the bench client fetching the controller\'s /metrics at the start and every 250 ms, as Prometheus would (more often)', once: run(true), ...skip },
    ],
    comparisons: [{ what: 'metrics on vs off', of: METRICS_NAMES.on, to: METRICS_NAMES.off, target: 0.97 }],
    method: [
      '- The throughput bench\'s one-hop pipeline (`bench/topo/source.ts` -> `bench/topo/sink-one-hop.ts`) on a fresh local topology per run, auth on, `TOPO_AUTOPILOT=0`.',
      '- Metrics on: every instance times each batch (two `performance.now()` calls), fills a log-2 latency histogram, counts records per output stream and credit-stall time; each worker samples memory, CPU and event-loop delay (`monitorEventLoopDelay`, 10 ms resolution) per heartbeat; the controller renders the exposition text from the latest heartbeats when `/metrics` is fetched (at the start and every 250 ms here, more often than a Prometheus scrape interval: runs last about a second). Off: `TOPO_METRICS=0` for controller and workers.',
    ],
  };
}

export const TRACE_NAMES = {
  off: 'one-hop from a source, tracing off (TOPO_TRACE_SAMPLE=0, the default)',
  small: 'one-hop from a source, 1% of records traced (TOPO_TRACE_SAMPLE=0.01)',
  all: 'one-hop from a source, every record traced (TOPO_TRACE_SAMPLE=1)',
} as const;

export async function tracePart(ctx: PairContext, count: number): Promise<PairPart> {
  const { run: runWith, skip } = await oneHopRunner(ctx, count);
  const run = (traceSample: number) => runWith({ traceSample });
  const description = (what: string) => `bench-trace-source (no istreams) -> bench-sink, each on its own worker process; ${what}`;
  return {
    section: 'trace', title: 'Traces: sampled at the source vs off (one-hop)', records: count,
    cases: [
      { name: TRACE_NAMES.off, description: description('no record carries a trace'), once: run(0), ...skip },
      { name: TRACE_NAMES.small, description: description('1 record in 100 starts a trace (a new 16-byte id) that the sink validates'), once: run(0.01), ...skip },
      { name: TRACE_NAMES.all, description: description('every record starts a trace: 34 more bytes on the wire per record (about a third more), an id made per record at the source and checked per record at the sink'), once: run(1), ...skip },
    ],
    comparisons: [
      { what: '1% traced vs off', of: TRACE_NAMES.small, to: TRACE_NAMES.off, target: 0.98 },
      { what: 'all traced vs off', of: TRACE_NAMES.all, to: TRACE_NAMES.off },
    ],
    method: [
      '- The throughput bench\'s one-hop (`bench/topo/sink-one-hop.ts`, the same records and batches), fed by `bench/topo/trace-source.ts`: the bench source\'s chunks from a computation with no istreams (a source, so TOPO_TRACE_SAMPLE applies), on a fresh local topology per run with `TOPO_AUTOPILOT=0` and the workers\' `TOPO_TRACE_SAMPLE` set per case.',
      '- A traced record carries its 32-hex-digit trace id as the 5th item of the wire record (PROTOCOL.md, Traces); the source draws ids from a pool of random bytes, the sink checks each id\'s length and characters before handing the record over.',
    ],
  };
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');

function ratioOf(cases: CaseSummary[], c: Comparison): number | undefined {
  const a = cases.find((x) => x.name === c.of)?.median?.rate;
  const b = cases.find((x) => x.name === c.to)?.median?.rate;
  return a !== undefined && b ? a / b : undefined;
}

/** Run i of one case over run i of the other (they ran next to each other, under the same background load). */
function pairedRatios(cases: CaseSummary[], c: Comparison): number[] {
  const a = cases.find((x) => x.name === c.of)?.runs ?? [];
  const b = cases.find((x) => x.name === c.to)?.runs ?? [];
  return a.slice(0, b.length).map((r, i) => r.rate / b[i]!.rate);
}

export function pairVerdict(part: PairPart, cases: CaseSummary[]): string[] {
  return part.comparisons.map((c) => {
    const r = ratioOf(cases, c);
    if (r === undefined) {
      const bad = cases.find((x) => (x.name === c.of || x.name === c.to) && !x.median);
      return `- ${c.what}: not measured (${bad?.error ?? bad?.skipped ?? 'not run'}).`;
    }
    const paired = pairedRatios(cases, c);
    const perRun = paired.length > 1 ? ` Run by run (each run next to its baseline's): ${paired.map((x) => `${x.toFixed(2)}x`).join(', ')}.` : '';
    if (c.target === undefined) return `- ${c.what}: ${r.toFixed(2)}x (medians; no target).${perRun}`;
    return `- ${c.what}: ${r.toFixed(2)}x (medians), target >= ${c.target}x: ${r >= c.target ? 'met' : `MISSED by ${(((c.target - r) / c.target) * 100).toFixed(0)}%`}.${perRun}`;
  });
}

interface Row { case: string; rate: string; seconds: string; ratio: string; runs: string; lost: string }

function rows(part: PairPart, cases: CaseSummary[]): Row[] {
  const base = part.comparisons[0]!.to;
  const baseRate = cases.find((x) => x.name === base)?.median?.rate;
  return cases.map((c) => ({
    case: c.name,
    rate: c.median ? int(c.median.rate) : c.error ? 'failed' : c.skipped ? 'not run' : '-',
    seconds: c.median ? c.median.seconds.toFixed(3) : '-',
    ratio: c.median && baseRate ? `${(c.median.rate / baseRate).toFixed(2)}x` : '-',
    runs: c.runs.map((r) => int(r.rate)).join(', ') || '-',
    lost: c.runs.length ? int(c.runs.reduce((s, r) => s + r.lost, 0)) : '-',
  }));
}

const HEAD: Row = { case: 'case', rate: 'records/s (median)', seconds: 'seconds', ratio: 'ratio', runs: 'runs (records/s)', lost: 'lost' };
const COLS = Object.keys(HEAD) as (keyof Row)[];

export function pairTextTable(part: PairPart, cases: CaseSummary[]): string {
  const all = [HEAD, ...rows(part, cases)];
  const width = COLS.map((k) => Math.max(...all.map((r) => r[k].length)));
  const line = (r: Row): string => COLS.map((k, i) => (i === 0 ? r[k].padEnd(width[i]!) : r[k].padStart(width[i]!))).join('  ');
  return [line(HEAD), width.map((w) => '-'.repeat(w)).join('  '), ...rows(part, cases).map(line)].join('\n');
}

export interface RunFacts {
  command: string;
  date: string;
  machine: string;
  software: string;
  loadBefore: number;
}

/** The part's table in markdown (ratio against its first comparison's baseline). */
export function pairMarkdownTable(part: PairPart, cases: CaseSummary[]): string {
  const line = (r: Row): string => `| ${COLS.map((k) => r[k]).join(' | ')} |`;
  return [line(HEAD), `|${COLS.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows(part, cases).map(line)].join('\n');
}

/** One line per case for the "Cases" list: what it is, its notes and the load before each run. */
export function pairCaseNotes(cases: CaseSummary[]): string[] {
  return cases.flatMap((c) => {
    const n = [...new Set(c.runs.flatMap((r) => r.notes.filter((x) => !x.startsWith('1-min load'))))];
    const loads = c.runs.map((r) => r.notes.find((x) => x.startsWith('1-min load'))?.replace(/^1-min load (\S+).*/, '$1') ?? '?');
    if (loads.length) n.push(`1-minute load average before each run: ${loads.join(', ')}`);
    return [`- **${c.name}**: ${c.description}.${n.length ? ` Notes: ${n.join('; ')}.` : ''}${c.error ? ` Failed: ${c.error}.` : ''}${c.skipped ? ` Not run: ${c.skipped}.` : ''}`];
  });
}

export function pairMarkdownSection(part: PairPart, cases: CaseSummary[], f: RunFacts): string {
  const table = pairMarkdownTable(part, cases);
  const notes = pairCaseNotes(cases);
  return wrapSection(part.section, `## ${part.title}

- Date: ${f.date}
- Command: \`${f.command}\`
- Machine: ${f.machine}
- ${f.software}
- 1-minute load average before the run: ${f.loadBefore.toFixed(2)}
- Runs per case: ${Math.max(0, ...cases.map((c) => c.runs.length))}, interleaved across the cases (median shown); ${int(part.records)} records per run. Ratio is against "${part.comparisons[0]!.to}".

${table}

### Targets

${pairVerdict(part, cases).join('\n')}

### Cases

${notes.join('\n')}

### Method

${part.method.join('\n')}
`);
}

/** Runs a part's cases interleaved and returns their summaries. */
export async function runPart(part: PairPart, ctx: PairContext): Promise<CaseSummary[]> {
  for (const c of part.cases) if (c.skipped) ctx.log(`${c.name}: not run: ${c.skipped}`);
  return runInterleaved(part.cases, ctx.runs, ctx.log);
}
