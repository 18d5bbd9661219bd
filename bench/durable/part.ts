/**
 * The durable part of the bench (`--only durable`): at-least-once streams and
 * checkpoints, each case run interleaved with its baseline in the same run:
 *  1. at-least-once one-hop vs a hand-written JetStream publisher and pull
 *     consumer (and vs topo's at-most-once one-hop, report only);
 *  2. a key-grouped counter with checkpoints every 1 s vs checkpoints off;
 *  3. recovery after kill -9 of the worker running a counter instance.
 * Prints its tables and verdicts and returns its RESULTS.md section.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pairCaseNotes, pairMarkdownTable, pairTextTable, pairVerdict, runPart, type PairContext, type PairPart, type RunFacts } from '../pairs.js';
import type { CaseSummary } from '../results.js';
import { wrapSection } from '../sections.js';
import type { DurableCaseOptions, JsBaselineOptions, RecoveryOptions, RecoveryResult } from './harness.js';

interface DurableModule {
  runDurableCase(o: DurableCaseOptions): Promise<import('../results.js').CaseResult>;
  runJsBaseline(o: JsBaselineOptions): Promise<import('../results.js').CaseResult>;
  runRecovery(o: RecoveryOptions): Promise<RecoveryResult>;
}

export const DURABLE_NAMES = {
  alo: 'one-hop, at-least-once (JetStream)',
  js: 'hand-written JetStream publisher -> pull consumer',
  amo: 'one-hop, at-most-once (core NATS)',
  cpOn: 'key-grouped counter, checkpoints every 1 s',
  cpOff: 'key-grouped counter, checkpoints off',
} as const;

/** p99 target of the recovery case, ms. */
export const RECOVERY_TARGET_MS = 2_000;

const NOT_BUILT = 'harness not built: the runtime (runtime/client, runtime/worker, runtime/controller) is missing';
const timeoutFor = (count: number): number => Math.max(60_000, Math.ceil(count / 5));
const int = (n: number): string => Math.round(n).toLocaleString('en-US');

async function load(ctx: PairContext): Promise<DurableModule | undefined> {
  const p = join(ctx.here, 'durable.mjs');
  return existsSync(p) ? ((await import(pathToFileURL(p).href)) as DurableModule) : undefined;
}

function deliveryPart(ctx: PairContext, mod: DurableModule | undefined, count: number): PairPart {
  const skip = mod ? {} : { skipped: NOT_BUILT };
  const need = (): DurableModule => {
    if (!mod) throw new Error(NOT_BUILT);
    return mod;
  };
  const topo = (kind: DurableCaseOptions['kind']) => () => need().runDurableCase({ root: ctx.root, kind, count, timeoutMs: timeoutFor(count), log: ctx.log });
  return {
    section: 'durable', title: 'At-least-once one-hop vs a hand-written JetStream pipeline', records: count,
    cases: [
      {
        name: DURABLE_NAMES.js,
        description: `two processes on a nats-server with topo's auth (operator JWT; each process a worker's restricted user); stream \`TOPO_DATA_bench-js\` made as topo's controller makes an at-least-once stream; the publisher sends batches of 256 records over 32 partition subjects with \`js.publish\` and \`Nats-Msg-Id\`, one in flight per partition; the consumer reads each partition through a durable pull consumer (ack policy all, max ack pending 20,000, pull batch 256), decodes every message and acks each partition's last message every second`,
        once: () => need().runJsBaseline({ here: ctx.here, count, timeoutMs: timeoutFor(count), log: ctx.log }),
        ...skip,
      },
      {
        name: DURABLE_NAMES.alo,
        description: 'bdur-source -> bdur-sink (bench-source and the one-hop sink with `delivery: { bench-a: \'at-least-once\' }` on both), each on its own worker process, auth on, checkpoints at the default 1 s',
        once: topo('alo-one-hop'),
        ...skip,
      },
      {
        name: DURABLE_NAMES.amo,
        description: 'bench-source -> bench-sink as in the throughput bench (core NATS, credits), each on its own worker process, auth on',
        once: topo('amo-one-hop'),
        ...skip,
      },
    ],
    comparisons: [
      { what: 'at-least-once one-hop vs the hand-written JetStream pipeline', of: DURABLE_NAMES.alo, to: DURABLE_NAMES.js, target: 0.8 },
      { what: 'at-least-once one-hop vs at-most-once one-hop (what at-least-once costs)', of: DURABLE_NAMES.alo, to: DURABLE_NAMES.amo },
    ],
    method: [],
  };
}

function checkpointPart(ctx: PairContext, mod: DurableModule | undefined, count: number): PairPart {
  const skip = mod ? {} : { skipped: NOT_BUILT };
  const run = (checkpointMs: number) => () => {
    if (!mod) throw new Error(NOT_BUILT);
    return mod.runDurableCase({ root: ctx.root, kind: 'counter', checkpointMs, count, timeoutMs: timeoutFor(count), log: ctx.log });
  };
  const what = 'bench-source -> bdur-counter (key grouping, 1 instance; counts each of the 1,024 keys in keyed state), at-most-once streams, each on its own worker process, auth on';
  return {
    section: 'durable', title: 'Checkpoints every 1 s vs off (key-grouped counter)', records: count,
    cases: [
      { name: DURABLE_NAMES.cpOff, description: `${what}; \`TOPO_CHECKPOINT_MS=0\` on the workers`, once: run(0), ...skip },
      { name: DURABLE_NAMES.cpOn, description: `${what}; \`TOPO_CHECKPOINT_MS=1000\` on the workers (the default)`, once: run(1_000), ...skip },
    ],
    comparisons: [{ what: 'checkpoints every 1 s vs off', of: DURABLE_NAMES.cpOn, to: DURABLE_NAMES.cpOff, target: 0.95 }],
    method: [],
  };
}

/** Nearest rank: the smallest sample with at least q of the samples at or below it. */
export function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

interface Spread { p50: number; p99: number; max: number; n: number }
const spread = (xs: number[]): Spread | undefined => {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 0.5), p99: percentile(s, 0.99), max: s[s.length - 1]!, n: s.length };
};

function recoveryRows(r: RecoveryResult | undefined): string[][] {
  const head = ['measure', 'kills', 'p50 (ms)', 'p99 (ms)', 'max (ms)', 'all (ms)'];
  if (!r) return [head];
  const outside = spread(r.samples.map((s) => s.ms));
  const controller = spread(r.samples.flatMap((s) => (s.controllerMs !== undefined ? [s.controllerMs] : [])));
  const row = (name: string, sp: Spread | undefined, all: number[]): string[] =>
    [name, String(sp?.n ?? 0), sp ? int(sp.p50) : '-', sp ? int(sp.p99) : '-', sp ? int(sp.max) : '-', all.map(int).join(', ') || '-'];
  return [
    head,
    row('SIGKILL -> first record of the restarted instance (tap)', outside, r.samples.map((s) => s.ms)),
    row('SIGKILL -> restarted worker alive in the controller\'s status', spread(r.samples.map((s) => s.registeredMs)), r.samples.map((s) => s.registeredMs)),
    row('controller lastRecovery (last heartbeat -> assign answered)', controller, r.samples.flatMap((s) => (s.controllerMs !== undefined ? [s.controllerMs] : []))),
  ];
}

function recoveryVerdict(r: RecoveryResult | undefined, error: string | undefined, kills: number): string {
  const sp = r ? spread(r.samples.map((s) => s.ms)) : undefined;
  if (!sp) return `- recovery after kill -9: not measured (${error ?? 'no sample'}).`;
  const short = sp.n < kills ? ` Only ${sp.n} of ${kills} kills measured${error ? ` (${error})` : ''}.` : '';
  const outcome = sp.p99 <= RECOVERY_TARGET_MS ? 'met' : `MISSED by ${int(sp.p99 - RECOVERY_TARGET_MS)} ms`;
  return `- recovery after kill -9 (SIGKILL -> first record of the restarted counter instance, ${sp.n} kills): p50 ${int(sp.p50)} ms, p99 ${int(sp.p99)} ms, max ${int(sp.max)} ms; target p99 <= ${int(RECOVERY_TARGET_MS)} ms: ${outcome}.${short}`;
}

const textTable = (rows: string[][]): string => {
  const width = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join('  ');
  return [line(rows[0]!), width.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
};
const markdownTable = (rows: string[][]): string =>
  [rows[0]!, rows[0]!.map((_, i) => (i === 0 ? '---' : '---:')), ...rows.slice(1)].map((r) => `| ${r.join(' | ')} |`).join('\n');

export interface DurableOutcome {
  section: string;
  failed: boolean;
}

export async function durablePart(ctx: PairContext, o: { records: number; kills: number }, facts: RunFacts): Promise<DurableOutcome> {
  const mod = await load(ctx);
  const delivery = deliveryPart(ctx, mod, o.records);
  const deliveryCases = await runPart(delivery, ctx);
  console.log(`\n${delivery.title}:\n${pairTextTable(delivery, deliveryCases)}\n`);
  console.log(pairVerdict(delivery, deliveryCases).join('\n'));

  const checkpoints = checkpointPart(ctx, mod, o.records);
  const checkpointCases = await runPart(checkpoints, ctx);
  console.log(`\n${checkpoints.title}:\n${pairTextTable(checkpoints, checkpointCases)}\n`);
  console.log(pairVerdict(checkpoints, checkpointCases).join('\n'));

  let recovery: RecoveryResult | undefined;
  let recoveryError: string | undefined;
  if (!mod) recoveryError = NOT_BUILT;
  else {
    ctx.log(`recovery: ${o.kills} kill -9 of the worker running the counter`);
    try {
      recovery = await mod.runRecovery({ root: ctx.root, kills: o.kills, log: ctx.log });
    } catch (err) {
      recoveryError = (err as Error).message;
      ctx.log(`recovery failed: ${recoveryError}`);
    }
  }
  const rRows = recoveryRows(recovery);
  console.log(`\nRecovery after kill -9:\n${textTable(rRows)}\n`);
  console.log(recoveryVerdict(recovery, recoveryError, o.kills));
  const warnings = spreadWarnings([[delivery, deliveryCases], [checkpoints, checkpointCases]]);
  if (warnings.length) console.log(warnings.join('\n'));

  const runsOf = (cases: CaseSummary[]): number => Math.max(0, ...cases.map((c) => c.runs.length));
  const restartDelays = recovery?.samples.map((s) => s.restartDelayMs) ?? [];
  const section = wrapSection('durable', `## Durability: at-least-once streams and checkpoints

- Date: ${facts.date}
- Command: \`${facts.command}\`
- Machine: ${facts.machine}
- ${facts.software}
- 1-minute load average before the run: ${facts.loadBefore.toFixed(2)}; before the runs of the throughput cases up to ${maxLoad([...deliveryCases, ...checkpointCases]).toFixed(1)} (other work on the machine skews the figures)
- Runs per case: ${runsOf(deliveryCases)} and ${runsOf(checkpointCases)}, interleaved with the baseline in the same run (median shown); ${int(o.records)} records per run. Recovery: ${o.kills} kills in one topology.

### ${delivery.title}

Ratio is against "${DURABLE_NAMES.js}".

${pairMarkdownTable(delivery, deliveryCases)}

### ${checkpoints.title}

Ratio is against "${DURABLE_NAMES.cpOff}".

${pairMarkdownTable(checkpoints, checkpointCases)}

### Recovery after kill -9

${markdownTable(rRows)}

### Targets

${[...pairVerdict(delivery, deliveryCases), ...pairVerdict(checkpoints, checkpointCases), recoveryVerdict(recovery, recoveryError, o.kills), ...spreadWarnings([[delivery, deliveryCases], [checkpoints, checkpointCases]])].join('\n')}

### Cases

${[...pairCaseNotes(deliveryCases), ...pairCaseNotes(checkpointCases)].join('\n')}
- **recovery after kill -9**: ${TICKS_DESCRIPTION}${recovery ? ` ${int(recovery.records)} output records tapped over ${Math.round(recovery.seconds)} s; restart delays ${restartDelays.map(int).join(', ')} ms.${recovery.notes.length ? ` Notes: ${recovery.notes.join('; ')}.` : ''}` : ''}${recoveryError ? ` Failed: ${recoveryError}.` : ''}

### Method

- Every topo run starts a fresh local topology with \`startLocalTopology\` (nats-server with auth on, as \`topo up\`: operator JWT, admin creds for the controller and the bench's \`TopoClient\`, each worker its own restricted user), \`TOPO_AUTOPILOT=0\`, and deploys with \`TopoClient.deployFile\`, one computation per worker. The harness publishes the start record; the sink (or the counter) times its first and its count-th record with \`performance.now()\` and reports on \`bench-report\` (bench/topo/sink.ts).
- The hand-written baseline (\`bench/durable/js-publisher.ts\`, \`js-consumer.ts\`) uses @nats-io/jetstream directly, no topo code: the same records (\`bench/records.ts\`), msgpackr with \`useRecords: false\`, batches of 256 records in topo's envelope shape, the same partitioning into 32 subjects, one publish in flight per partition retried with the same \`Nats-Msg-Id\`, and consumers configured as topo's (PROTOCOL.md, "Delivery"). Its nats-server runs with the config and creds \`ensureLocalAuth\` makes for \`topo up\` (publisher and consumer as users \`w-1\` and \`w-2\`, checked against the same allow lists), and its stream is created by \`ensureDataStreams\`, the controller's own function. It measures at the consumer, first to count-th record, as topo's sink does; it has no controller, heartbeats, credits or checkpoints.
- Checkpoints: the same pipeline and record count, the workers' environment differing only in \`TOPO_CHECKPOINT_MS\`. The source's records spread over the 1,024 keys, so every second all 32 partition chunks of the counter have changed and are written to \`topo_checkpoints\`. A run of ${int(o.records)} records at the rates above lasts ${runSeconds(checkpointCases)}, so it holds about one checkpoint per second of run (one more or fewer, by phase), cut at whatever moment the 1 s interval (which starts with the instance) falls in the run: the ratio of one run depends on that phase, less so the longer the run (at 500,000 records, the default before 2026-12-03, a run was shorter than one interval). The runs are 2,000,000 records by default (\`--durable-records\`) for that reason and for the JIT's warm-up, as in the throughput bench.
- Recovery (\`bench/durable/ticks.ts\` -> \`tick-counter.ts\`): measured from outside. The harness taps \`bdur-out\` (a core subscription on its data subjects); each output record carries the pid of the worker process that counted it (a restarted instance continues its predecessor's producer id and sequence numbers, so the batch's \`src\` does not tell them apart). Each kill waits until the live instance has produced for ${STEADY_S} s (a checkpoint exists), takes the time, sends SIGKILL to the worker running the counter, waits for the process to exit, waits the delay \`topo up\`'s supervisor waits before a process's first restart (\`backoffDelay(1)\` of its default settings: 250 ms ±20%; \`startLocalTopology\` has no supervisor, so the harness restarts the worker itself with \`startWorker\`), and stops the clock at the first tapped record whose pid is not the killed one's. The restarted worker registers again with the same id, the controller assigns the instance at once (it does not wait for the dead worker's 5 s lease), the instance loads its checkpoint and opens its consumers after the acknowledged floor; that first record may be a replayed one (input since the last checkpoint is processed again). The row "restarted worker alive" is when \`startWorker\`'s poll of the controller's status (every 150 ms) first shows the new process alive. The controller's \`lastRecovery.ms\` (\`topo status --json\`) is shown too; it counts from the dead process's last heartbeat (up to a heartbeat interval before the kill) to the assign being answered, so it is not the same interval. p99 over ${o.kills} samples is the nearest-rank one (with 10 kills, the largest).
- Not measured here: re-placement on another worker when the killed worker does not come back (a machine lost): the controller waits for the worker's lease (5 s by default) to run out first, so that path takes over 5 s by design.
`);
  const failed = [...deliveryCases, ...checkpointCases].some((c) => c.error !== undefined) || recoveryError !== undefined;
  return { section, failed };
}

const STEADY_S = 2.5;

/**
 * Comparisons whose run-by-run ratios (each run next to its baseline's) differ by more than 20%
 * from one another: the median of so few runs is then not conclusive, and the section says so.
 */
function spreadWarnings(parts: [PairPart, CaseSummary[]][]): string[] {
  return parts.flatMap(([part, cases]) => part.comparisons.flatMap((c) => {
    const a = cases.find((x) => x.name === c.of)?.runs ?? [];
    const b = cases.find((x) => x.name === c.to)?.runs ?? [];
    const r = a.slice(0, b.length).map((x, i) => x.rate / b[i]!.rate);
    if (r.length < 2) return [];
    const lo = Math.min(...r);
    const hi = Math.max(...r);
    return hi / lo > 1.2 ? [`- Not conclusive: ${c.what} ranges from ${lo.toFixed(2)}x to ${hi.toFixed(2)}x run by run; with this spread (and the load noted above) the median of ${r.length} runs is not a settled figure${c.target !== undefined ? ', whichever side of the target it falls on' : ''}.`] : [];
  }));
}

/** The highest 1-minute load average noted before any run of these cases. */
function maxLoad(cases: CaseSummary[]): number {
  let max = 0;
  for (const c of cases) for (const r of c.runs) for (const n of r.notes) {
    const m = /^1-min load (\S+)/.exec(n);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max;
}

/** How long the checkpoint pair's runs lasted (seconds, min-max over all its runs). */
function runSeconds(cases: CaseSummary[]): string {
  const all = cases.flatMap((c) => c.runs).map((r) => r.seconds);
  if (!all.length) return 'an unknown time (no run finished)';
  return `${Math.min(...all).toFixed(1)}-${Math.max(...all).toFixed(1)} s`;
}

const TICKS_DESCRIPTION = 'bdur-ticks (100 keys every 10 ms: 10,000 records/s) -> bdur-tcounter (key grouping, 1 instance, counts per key), both streams at-least-once, 2 workers (one computation each), auth on, default checkpoints (1 s); the worker running the counter is killed with SIGKILL and started again, as described under Method.';
