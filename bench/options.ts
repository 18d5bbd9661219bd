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
  /** Which parts to run. */
  raw: boolean;
  topo: boolean;
  /** Write bench/RESULTS.md. */
  write: boolean;
}

const FLAGS: Record<string, { env: string; key: keyof BenchOptions; def: number; help: string }> = {
  runs: { env: 'BENCH_RUNS', key: 'runs', def: 3, help: 'runs per case; the median is reported' },
  single: { env: 'BENCH_SINGLE_RECORDS', key: 'singleRecords', def: 500_000, help: 'records per raw one-record-per-message run' },
  batched: { env: 'BENCH_BATCHED_RECORDS', key: 'batchedRecords', def: 2_000_000, help: 'records per raw batched run' },
  topo: { env: 'BENCH_TOPO_RECORDS', key: 'topoRecords', def: 2_000_000, help: 'records per topo run (keep it equal to --batched: JIT warm-up makes rates grow with the count)' },
  window: { env: 'BENCH_RAW_WINDOW', key: 'rawWindow', def: 262_144, help: 'raw publisher flow-control window in records, 0 = none' },
};

export const USAGE = `usage: npm run bench -- [options]
${Object.entries(FLAGS)
  .map(([f, d]) => `  --${f} N`.padEnd(19) + `${d.help} (env ${d.env}, default ${d.def})`)
  .join('\n')}
  --only raw|topo  run only that part
  --no-write       do not write bench/RESULTS.md`;

function positiveInt(name: string, raw: string, allowZero: boolean): number {
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new Error(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got "${raw}"`);
  return n;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const opts: BenchOptions = { runs: 0, singleRecords: 0, batchedRecords: 0, topoRecords: 0, rawWindow: 0, raw: true, topo: true, write: true };
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
      const part = value();
      if (part !== 'raw' && part !== 'topo') throw new Error(`--only must be "raw" or "topo", got "${part}"`);
      opts.raw = part === 'raw';
      opts.topo = part === 'topo';
    } else if (flag === 'no-write') opts.write = false;
    else throw new Error(`unknown option "${arg}"\n${USAGE}`);
  }
  return opts;
}
