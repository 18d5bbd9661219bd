/** Bench options: flags (`--runs 5` or `--runs=5`) override env vars, which override defaults. */

export interface BenchOptions {
  runs: number;
  /** Records per raw run, one record per message. */
  singleRecords: number;
  /** Records per raw run, BATCH_SIZE records per message. */
  batchedRecords: number;
  /** Records per topo run. */
  topoRecords: number;
  /** Raw publisher flow-control window in records (0 = only nc.flush pacing). */
  rawWindow: number;
  /** Swaps in the swap bench. */
  swaps: number;
  /** Keys of the swap bench's source (one record per key every 10 ms). */
  swapKeys: number;
  /** Instances of the swap bench's counter. */
  swapInstances: number;
  /** Records per fusion bench run (fused, loop, unfused). */
  fusionRecords: number;
  /** Records per CPU-heavy bench run. */
  heavyRecords: number;
  /** Records per auth bench run (one-hop with NATS auth on vs off). */
  authRecords: number;
  /** Records per metrics bench run (one-hop with metrics on vs off). */
  metricsRecords: number;
  /** Records per trace bench run (one-hop from a source, traces sampled vs off). */
  traceRecords: number;
  /** Records per polyglot bench run (hosted Python and Go operators vs hand-written loops). */
  polyglotRecords: number;
  /** Cycles of the live scale bench (4 scales each: 1 -> 2 -> 4 -> 2 -> 1). */
  scaleCycles: number;
  /** Cycles of the live fuse/split bench (a fuse and a split each). */
  regroupCycles: number;
  /** Keys of the live benches' source (one record per key every 10 ms). */
  liveKeys: number;
  /** Which parts to run. */
  raw: boolean;
  topo: boolean;
  swap: boolean;
  fusion: boolean;
  heavy: boolean;
  scale: boolean;
  regroup: boolean;
  polyglot: boolean;
  /** One-hop with NATS auth (JWT, per-worker permissions) vs the same without auth. */
  auth: boolean;
  /** One-hop with metrics on (and /metrics scraped) vs TOPO_METRICS=0. */
  metrics: boolean;
  /** One-hop from a source with traces sampled at 1% and 100% vs off. */
  trace: boolean;
  /** The threads bench (bench/threads/): 2 cpu-heavy instances in threads vs inline. */
  threads: boolean;
  /** At-least-once streams and checkpoints (bench/durable/): vs a hand-written JetStream pipeline, checkpoints on vs off, recovery after kill -9. */
  durable: boolean;
  /** Records per durable bench run (at-least-once one-hop and its baselines, the checkpointed counter). */
  durableRecords: number;
  /** kill -9s of the worker running a counter instance in the durable bench's recovery case. */
  kills: number;
  /** Records per instance in the threads bench. */
  threadsRecords: number;
  /** Write bench/RESULTS.md. */
  write: boolean;
}

const FLAGS: Record<string, { env: string; key: keyof BenchOptions; def: number; help: string }> = {
  runs: { env: 'BENCH_RUNS', key: 'runs', def: 3, help: 'runs per case; the median is reported' },
  single: { env: 'BENCH_SINGLE_RECORDS', key: 'singleRecords', def: 500_000, help: 'records per raw one-record-per-message run' },
  batched: { env: 'BENCH_BATCHED_RECORDS', key: 'batchedRecords', def: 2_000_000, help: 'records per raw batched run' },
  topo: { env: 'BENCH_TOPO_RECORDS', key: 'topoRecords', def: 2_000_000, help: 'records per topo run (keep it equal to --batched: JIT warm-up makes rates grow with the count)' },
  window: { env: 'BENCH_RAW_WINDOW', key: 'rawWindow', def: 262_144, help: 'raw publisher flow-control window in records, 0 = none' },
  swaps: { env: 'BENCH_SWAPS', key: 'swaps', def: 50, help: 'swaps in the swap bench' },
  'swap-keys': { env: 'BENCH_SWAP_KEYS', key: 'swapKeys', def: 1_000, help: 'swap bench source keys, one record each per 10 ms' },
  'swap-instances': { env: 'BENCH_SWAP_INSTANCES', key: 'swapInstances', def: 1, help: 'instances of the swapped counter, one worker each' },
  'threads-records': { env: 'BENCH_THREADS_RECORDS', key: 'threadsRecords', def: 10_000, help: 'records per instance in the threads bench (~50 µs each)' },
  'fusion-records': { env: 'BENCH_FUSION_RECORDS', key: 'fusionRecords', def: 1_000_000, help: 'records per fusion bench run' },
  'heavy-records': { env: 'BENCH_HEAVY_RECORDS', key: 'heavyRecords', def: 200_000, help: 'records per CPU-heavy (1 vs 2 workers) run' },
  'auth-records': { env: 'BENCH_AUTH_RECORDS', key: 'authRecords', def: 1_000_000, help: 'records per auth bench run (one-hop, auth on vs off)' },
  'metrics-records': { env: 'BENCH_METRICS_RECORDS', key: 'metricsRecords', def: 1_000_000, help: 'records per metrics bench run (one-hop, metrics on vs off)' },
  'trace-records': { env: 'BENCH_TRACE_RECORDS', key: 'traceRecords', def: 1_000_000, help: 'records per trace bench run (one-hop from a source, traced vs not)' },
  'polyglot-records': { env: 'BENCH_POLYGLOT_RECORDS', key: 'polyglotRecords', def: 100_000, help: 'records per polyglot run (hosted Python/Go vs hand-written loops)' },
  'scale-cycles': { env: 'BENCH_SCALE_CYCLES', key: 'scaleCycles', def: 5, help: 'live scale cycles, 4 changes each (1->2->4->2->1)' },
  'regroup-cycles': { env: 'BENCH_REGROUP_CYCLES', key: 'regroupCycles', def: 10, help: 'live fuse+split cycles, 2 changes each' },
  'durable-records': { env: 'BENCH_DURABLE_RECORDS', key: 'durableRecords', def: 2_000_000, help: 'records per durable run (at-least-once one-hop, JetStream baseline, checkpointed counter)' },
  kills: { env: 'BENCH_KILLS', key: 'kills', def: 10, help: 'kill -9s of the counter\'s worker in the durable recovery case' },
  'live-keys': { env: 'BENCH_LIVE_KEYS', key: 'liveKeys', def: 500, help: 'scale/regroup source keys, one record each per 10 ms' },
};

/** The parts `--only` selects from (a comma-separated list). */
export const PARTS = ['raw', 'topo', 'swap', 'threads', 'fusion', 'heavy', 'scale', 'regroup', 'polyglot', 'auth', 'metrics', 'trace', 'durable'] as const;

export const USAGE = `usage: npm run bench -- [options]
${Object.entries(FLAGS)
  .map(([f, d]) => `  --${f} N`.padEnd(23) + `${d.help} (env ${d.env}, default ${d.def})`)
  .join('\n')}
  --only PART[,PART...]  run only these parts: raw, topo (throughput), swap (live hot swap), threads (cpu-heavy in
                         threads vs inline), fusion (fused chain vs loop vs unfused), heavy (cpu-heavy on 2 worker
                         processes vs 1), scale (live scale under load), regroup (live fuse/split under load),
                         polyglot (hosted Python and Go operators vs nats-py and nats.go loops), auth (one-hop with
                         NATS auth on vs off), metrics (one-hop with metrics on and scraped vs off), trace (one-hop from a
                         source, 1% and all records traced vs off), durable (at-least-once one-hop vs a hand-written JetStream pipeline,
                         checkpoints every 1 s vs off, recovery after kill -9)
  --no-write             do not write bench/RESULTS.md`;

function positiveInt(name: string, raw: string, allowZero: boolean): number {
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new Error(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got "${raw}"`);
  return n;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const opts: BenchOptions = {
    runs: 0, singleRecords: 0, batchedRecords: 0, topoRecords: 0, rawWindow: 0, swaps: 0, swapKeys: 0, swapInstances: 0, threadsRecords: 0,
    fusionRecords: 0, heavyRecords: 0, polyglotRecords: 0, authRecords: 0, metricsRecords: 0, traceRecords: 0, scaleCycles: 0, regroupCycles: 0, liveKeys: 0, durableRecords: 0, kills: 0,
    raw: true, topo: true, swap: true, threads: true, fusion: true, heavy: true, scale: true, regroup: true, polyglot: true, auth: true, metrics: true, trace: true, durable: true, write: true,
  };
  for (const [flag, d] of Object.entries(FLAGS)) {
    const v = env[d.env];
    (opts[d.key] as number) = v === undefined || v === '' ? d.def : positiveInt(d.env, v, flag === 'window');
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') ? (arg.slice(2).split('=', 2) as [string, string | undefined]) : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`--${flag} needs a value\n${USAGE}`);
      return v;
    };
    const d = FLAGS[flag];
    if (d) (opts[d.key] as number) = positiveInt(`--${flag}`, value(), flag === 'window');
    else if (flag === 'only') {
      const parts = value().split(',').map((p) => p.trim()).filter(Boolean);
      const bad = parts.filter((p) => !(PARTS as readonly string[]).includes(p));
      if (bad.length || parts.length === 0) throw new Error(`--only takes a comma-separated list of ${PARTS.join(', ')}, got "${bad.join(',')}"`);
      for (const p of PARTS) opts[p] = parts.includes(p);
    } else if (flag === 'no-write') opts.write = false;
    else throw new Error(`unknown option "${arg}"\n${USAGE}`);
  }
  return opts;
}
