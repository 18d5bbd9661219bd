/**
 * The benchmark runner (bundled into dist/bench/main.mjs by bench/run.mjs).
 * Runs the raw NATS baseline and the topo pipelines in the same run, prints
 * records/s with each figure's ratio to the batched raw baseline, then the
 * live hot swap bench (bench/swap/), and writes bench/RESULTS.md. A part not
 * run keeps its section of RESULTS.md from the previous run.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findNatsServer, startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';
import { parseOptions, USAGE, type BenchOptions } from './options.js';
import { runInterleaved, type BenchCase } from './interleave.js';
import { runRawCase } from './raw/run.js';
import { formatMarkdownTable, formatTextTable, tableRows, type CaseResult, type CaseSummary } from './results.js';
import { BATCH_SIZE } from './records.js';
import type { SwapBenchResult, SwapCaseOptions } from './swap/harness.js';
import { SWAP_SECTION_BEGIN, SWAP_SECTION_END, swapMarkdownSection, swapTextTable, swapVerdict } from './swap/report.js';
import type { ThreadsBenchResult, ThreadsCaseOptions } from './threads/harness.js';
import { THREADS_SECTION_BEGIN, THREADS_SECTION_END, threadsMarkdownSection, threadsTextTable, threadsVerdict } from './threads/report.js';
import { runParts } from './parts.js';
import { cutSections, renderSections } from './sections.js';

/** The signature of runTopoCase in bench/topo/harness.ts, bundled separately into dist/bench/topo.mjs. */
type TopoKind = 'one-hop' | 'three-stage';
interface TopoModule {
  runTopoCase(o: { root: string; kind: TopoKind; count: number; timeoutMs: number; log: (line: string) => void }): Promise<CaseResult>;
}
/** bench/swap/harness.ts, bundled separately into dist/bench/swap.mjs. */
interface SwapModule {
  runSwapCase(o: SwapCaseOptions): Promise<SwapBenchResult>;
}

const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));
const log = (line: string): void => console.error(`bench: ${line}`);

const TARGET_VS_BATCHED = 0.8;
const TARGET_VS_SINGLE = 4;

/** Generous upper bound for one run: at least a minute, or 20k records/s. */
const timeoutFor = (count: number): number => Math.max(60_000, Math.ceil(count / 20));


function rawCases(opts: BenchOptions, natsUrl: () => string): BenchCase[] {
  const scripts = { publisher: join(here, 'raw-publisher.mjs'), subscriber: join(here, 'raw-subscriber.mjs') };
  const raw = (mode: 'single' | 'batched', count: number) => (r: number) =>
    runRawCase(scripts, { url: natsUrl(), mode, count, subject: `bench.raw.${mode}.${r}`, window: opts.rawWindow }, timeoutFor(count));
  return [
    {
      name: 'raw, 1 record/msg',
      description: 'hand-written NATS publisher -> subscriber (two processes), one msgpack record per message',
      once: raw('single', opts.singleRecords),
    },
    {
      name: 'raw, batched',
      description: `hand-written NATS publisher -> subscriber (two processes), arrays of ${BATCH_SIZE} records per message`,
      once: raw('batched', opts.batchedRecords),
    },
  ];
}

async function topoCases(opts: BenchOptions): Promise<BenchCase[]> {
  const modPath = join(here, 'topo.mjs');
  const mod = existsSync(modPath) ? ((await import(pathToFileURL(modPath).href)) as TopoModule) : undefined;
  const skipped = mod ? undefined : 'topo harness not built: the runtime (runtime/client, runtime/worker, runtime/controller) is missing';
  const topo = (kind: TopoKind) => async (): Promise<CaseResult> => {
    if (!mod) throw new Error(skipped);
    return mod.runTopoCase({ root, kind, count: opts.topoRecords, timeoutMs: timeoutFor(opts.topoRecords), log });
  };
  return [
    {
      name: 'topo one-hop',
      description: 'bench-source -> bench-sink, each on its own worker process, fresh local topology per run',
      once: topo('one-hop'),
      ...(skipped ? { skipped } : {}),
    },
    {
      name: 'topo three-stage',
      description: 'bench-source -> bench-pass -> bench-sink3, each on its own worker process, fresh local topology per run',
      once: topo('three-stage'),
      ...(skipped ? { skipped } : {}),
    },
  ];
}

function natsVersion(): string {
  try {
    return execFileSync(findNatsServer(), ['--version'], { encoding: 'utf8' }).trim().replace(/^nats-server:\s*/, '');
  } catch (err) {
    return `unknown (${(err as Error).message})`;
  }
}

function commandLine(argv: string[]): string {
  return argv.length ? `npm run bench -- ${argv.join(' ')}` : 'npm run bench';
}

function verdict(cases: CaseSummary[]): string[] {
  const by = (n: string): CaseSummary | undefined => cases.find((c) => c.name === n);
  const batched = by('raw, batched')?.median;
  const single = by('raw, 1 record/msg')?.median;
  const oneHop = by('topo one-hop')?.median;
  if (!batched || !single) return ['- The raw baseline did not run, so the targets cannot be checked.'];
  if (!oneHop) {
    const c = by('topo one-hop');
    return [`- topo one-hop did not run (${c?.error ?? c?.skipped ?? 'not selected'}), so the targets are not checked yet.`];
  }
  const check = (what: string, baseRate: number, target: number): string => {
    const ratio = oneHop.rate / baseRate;
    const needs = Math.round(target * baseRate).toLocaleString('en-US');
    const outcome = ratio >= target ? 'met' : `MISSED by ${(((target - ratio) / target) * 100).toFixed(0)}% (needs ${needs} records/s)`;
    return `- one-hop vs ${what}: ${ratio.toFixed(2)}x, target >= ${target}x: ${outcome}.`;
  };
  return [check('batched raw', batched.rate, TARGET_VS_BATCHED), check('one-record-per-message raw', single.rate, TARGET_VS_SINGLE)];
}

function machineFacts(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${availableParallelism()} CPUs (nproc), ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${process.platform} ${process.arch}`;
}

function resultsMarkdown(argv: string[], opts: BenchOptions, cases: CaseSummary[], startedAt: Date, loadBefore: number): string {
  const baseline = cases.find((c) => c.name === 'raw, batched');
  const runsDetail = cases.flatMap((c) => [
    `- **${c.name}**: ${c.description}. Runs: ${c.runs.map((r) => `${Math.round(r.rate).toLocaleString('en-US')}/s${r.lost ? ` (lost ${r.lost})` : ''}`).join(', ') || 'none'}${c.error ? `. Failed: ${c.error}` : ''}${c.skipped ? `. Not run: ${c.skipped}` : ''}.`,
  ]);
  return `# topo benchmark results

Generated by \`bench/run.mjs\`; do not edit by hand.

- Date: ${startedAt.toISOString()}
- Command: \`${commandLine(argv)}\`
- Machine: ${machineFacts()}
- Node: ${process.version}; nats-server: ${natsVersion()}
- 1-minute load average before the run: ${loadBefore.toFixed(2)} (other work on the machine skews the figures)
- Runs per case: ${opts.runs}, interleaved across cases (median by records/s shown). Records per run: raw one-per-message ${opts.singleRecords.toLocaleString('en-US')}, raw batched ${opts.batchedRecords.toLocaleString('en-US')}, topo ${opts.topoRecords.toLocaleString('en-US')}.
- Raw publisher flow control: ${opts.rawWindow > 0 ? `at most ${opts.rawWindow.toLocaleString('en-US')} records unacknowledged by the subscriber` : 'none (nc.flush() after each chunk only)'}.

${formatMarkdownTable(tableRows(cases, baseline))}

records/s is measured at the receiving end, from the first record to the last.
"lost" counts records sent but never received (core NATS drops messages for slow consumers).

## Targets

${verdict(cases).join('\n')}

## Cases

${runsDetail.join('\n')}

## Method

- Every record is \`[key (8 chars), {id, user, text (~60 chars)}, ts, seq]\`, built by \`bench/records.ts\` on both sides and encoded with msgpackr (\`useRecords: false\`, as topo's envelope codec).
- Raw baseline (\`bench/raw/\`): a publisher and a subscriber process on one nats-server, plain @nats-io/transport-node. The subscriber decodes every message. Records sent are a fixed count, and the publisher then sends an end marker. What has not arrived by then is lost. The publisher's hand-written flow control (\`--window\`) keeps a slow subscriber from being cut off as a slow consumer. With \`--window 0\` it only awaits \`nc.flush()\` after each chunk.
- topo (\`bench/topo/\`): for each run a fresh local topology (nats-server, controller, one worker process per stage) is started with \`startLocalTopology\`. \`bench-source\`, [\`bench-pass\`,] and the sink are deployed with \`TopoClient.deployFile\`, one per worker. The harness publishes one start record \`{count}\` on \`bench-start\`. The source then emits chunks of 10,000 records from timers, so flow control can hold it. The sink times its first and its count-th record with \`performance.now()\` and reports on \`bench-report\`, which the harness taps.
`;
}

/** Runs the swap bench once (it measures 50 swaps in one run). */
async function runSwapBench(opts: BenchOptions): Promise<{ result?: SwapBenchResult; error?: string }> {
  const modPath = join(here, 'swap.mjs');
  if (!existsSync(modPath)) return { error: 'swap harness not built: the runtime (runtime/client, runtime/worker, runtime/controller) is missing' };
  const mod = (await import(pathToFileURL(modPath).href)) as SwapModule;
  try {
    log(`swap: ${opts.swaps} swaps of a ${opts.swapInstances}-instance counter at ${((opts.swapKeys * 100) / 1000).toLocaleString('en-US')}k records/s`);
    return { result: await mod.runSwapCase({ root, swaps: opts.swaps, keys: opts.swapKeys, everyMs: 10, instances: opts.swapInstances, log }) };
  } catch (err) {
    log(`swap bench failed: ${(err as Error).message}`);
    return { error: (err as Error).message };
  }
}

/** The threads bench (bench/threads/harness.ts, bundled into dist/bench/threads.mjs): 2 cpu-heavy instances in threads vs inline. */
async function runThreadsBench(opts: BenchOptions): Promise<{ result?: ThreadsBenchResult; error?: string }> {
  const modPath = join(here, 'threads.mjs');
  if (!existsSync(modPath)) return { error: 'threads harness not built: the runtime (runtime/worker, runtime/runners) is missing' };
  const mod = (await import(pathToFileURL(modPath).href)) as { runThreadsCase(o: ThreadsCaseOptions): Promise<ThreadsBenchResult> };
  try {
    return { result: await mod.runThreadsCase({ root, runs: Math.max(opts.runs, 7), recordsPerInstance: opts.threadsRecords, usPerRecord: 50, lightRecords: 1_000_000, log }) };
  } catch (err) {
    log(`threads bench failed: ${(err as Error).message}`);
    return { error: (err as Error).message };
  }
}

/** Cuts the threads section out of RESULTS.md's text (it is kept or replaced on its own). */
function cutThreads(text: string): { rest: string; threads?: string } {
  const begin = text.indexOf(THREADS_SECTION_BEGIN);
  const end = text.indexOf(THREADS_SECTION_END);
  if (begin < 0 || end < begin) return { rest: text };
  return { rest: `${text.slice(0, begin).trimEnd()}\n${text.slice(end + THREADS_SECTION_END.length)}`, threads: text.slice(begin, end + THREADS_SECTION_END.length) };
}

/** RESULTS.md as it is now, split into the throughput part, the swap section and the threads section. */
function existingResults(file: string): { throughput?: string; swap?: string; threads?: string } {
  if (!existsSync(file)) return {};
  const { rest: text, threads } = cutThreads(cutSections(readFileSync(file, 'utf8')).rest);
  return { ...existingParts(text), ...(threads ? { threads } : {}) };
}

function existingParts(text: string): { throughput?: string; swap?: string } {
  const begin = text.indexOf(SWAP_SECTION_BEGIN);
  const end = text.indexOf(SWAP_SECTION_END);
  if (begin < 0 || end < begin) return { throughput: text.trimEnd() };
  return { throughput: text.slice(0, begin).trimEnd(), swap: text.slice(begin, end + SWAP_SECTION_END.length) };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return;
  }
  const opts = parseOptions(argv, process.env);
  const startedAt = new Date();
  const loadBefore = loadavg()[0] ?? 0;
  let nats: StartedNats | undefined;
  const store = mkdtempSync(join(tmpdir(), 'topo-bench-nats-'));
  let cases: CaseSummary[] = [];
  const throughput = opts.raw || opts.topo;
  try {
    if (opts.raw) {
      nats = await startNatsServer({ storeDir: store });
      log(`raw baseline: nats-server at ${nats.url}`);
    }
    const url = nats?.url ?? '';
    const all = [...(opts.raw ? rawCases(opts, () => url) : []), ...(opts.topo ? await topoCases(opts) : [])];
    for (const c of all) if (c.skipped) log(`${c.name}: not run: ${c.skipped}`);
    cases = await runInterleaved(all, opts.runs, log);
  } finally {
    await nats?.stop();
    rmSync(store, { recursive: true, force: true });
  }
  if (throughput) {
    const baseline = cases.find((c) => c.name === 'raw, batched');
    console.log(`\n${formatTextTable(tableRows(cases, baseline))}\n`);
    console.log(verdict(cases).join('\n'));
  }
  const swapLoadBefore = loadavg()[0] ?? 0;
  const swapStartedAt = new Date();
  const swap = opts.swap ? await runSwapBench(opts) : undefined;
  if (swap) {
    if (swap.result) {
      console.log(`\nLive hot swap, ${swap.result.swaps} swaps at ${Math.round(swap.result.targetRate).toLocaleString('en-US')} records/s:\n${swapTextTable(swap.result)}\n`);
      for (const x of swap.result.slowest) console.log(`  swap ${x.swap}: pause ${Math.round(x.pauseMs)} ms (${x.steps})`);
    }
    console.log(swapVerdict(swap.result, swap.error).join('\n'));
  }
  const threadsLoadBefore = loadavg()[0] ?? 0;
  const threadsStartedAt = new Date();
  const threads = opts.threads ? await runThreadsBench(opts) : undefined;
  if (threads) {
    if (threads.result) console.log(`\nCPU-heavy computations, threads vs inline:\n${threadsTextTable(threads.result)}\n`);
    console.log(threadsVerdict(threads.result, threads.error).join('\n'));
  }
  // The fusion, heavy, scale and regroup parts (bench/parts.ts), each with its own RESULTS.md section.
  const parts = await runParts(opts, {
    here, root, runs: opts.runs, log,
    facts: { command: commandLine(argv), machine: machineFacts(), software: `Node: ${process.version}; nats-server: ${natsVersion()}` },
  });
  if (opts.write) {
    const file = join(root, 'bench', 'RESULTS.md');
    const before = existingResults(file);
    const kept = existsSync(file) ? cutSections(readFileSync(file, 'utf8')).sections : new Map();
    const throughputPart = throughput
      ? resultsMarkdown(argv, opts, cases, startedAt, loadBefore).trimEnd()
      : (before.throughput ?? '# topo benchmark results\n\nGenerated by `bench/run.mjs`; do not edit by hand.\n\nThe throughput cases have not been run yet: `npm run bench -- --only topo`.');
    const swapPart = swap
      ? swapMarkdownSection(swap.result, {
        command: commandLine(argv), date: swapStartedAt.toISOString(), machine: machineFacts(),
        software: `Node: ${process.version}; nats-server: ${natsVersion()}`, loadBefore: swapLoadBefore,
        ...(swap.error !== undefined ? { error: swap.error } : {}),
      })
      : before.swap;
    const threadsPart = threads
      ? threadsMarkdownSection(threads.result, {
        command: commandLine(argv), date: threadsStartedAt.toISOString(), machine: machineFacts(),
        software: `Node: ${process.version}`, loadBefore: threadsLoadBefore,
        ...(threads.error !== undefined ? { error: threads.error } : {}),
      })
      : before.threads;
    writeFileSync(file, `${throughputPart}\n${swapPart ? `\n${swapPart}\n` : ''}${threadsPart ? `\n${threadsPart}\n` : ''}${renderSections(kept, parts.sections)}`);
    log(`wrote ${file}`);
  }
  if (cases.some((c) => c.error !== undefined) || swap?.error !== undefined || threads?.error !== undefined || parts.failed) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(`bench: ${(err as Error).message}`);
  process.exit(1);
});
