/**
 * Runs one topo measurement on a fresh local topology (its own nats-server,
 * controller and workers, as processes): deploys the bench computations one by
 * one so each lands on its own worker (the controller places on the least
 * loaded), sends the start record, and waits for the sink's final report.
 * Bundled into dist/bench/topo.mjs by bench/run.mjs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalTopology, type LocalTopology } from '../../runtime/client/launcher.js';
import { TopoClient } from '../../runtime/client/client.js';
import { decodeBatch, encodeBatch, subjects, PROTOCOL_VERSION } from '../../protocol/index.js';
import type { CaseResult } from '../results.js';
import { BENCH_STREAMS, type BenchReport, type BenchStart } from './streams.js';

export type TopoKind = 'one-hop' | 'three-stage';

export interface TopoCaseOptions {
  /** Repository root (the computations are bench/topo/*.ts under it). */
  root: string;
  kind: TopoKind;
  count: number;
  timeoutMs: number;
  log: (line: string) => void;
  /** NATS auth on the topology's server (default true, as `topo up`); false: anonymous, no permissions checked. */
  auth?: boolean;
  /** More environment for the controller and workers (e.g. TOPO_METRICS=0). */
  env?: NodeJS.ProcessEnv;
  /** Fetch the controller's /metrics this often while records flow, as Prometheus would. */
  scrapeMetricsMs?: number;
  /**
   * One-hop from a source with no istreams (bench/topo/trace-source.ts) on workers with this TOPO_TRACE_SAMPLE:
   * the share of its records that start a trace (the trace bench; 0 is tracing off).
   */
  traceSample?: number;
}

const PIPELINES: Record<TopoKind, string[]> = {
  'one-hop': ['source.ts', 'sink-one-hop.ts'],
  'three-stage': ['source.ts', 'pass.ts', 'sink-three-stage.ts'],
};

/** No progress from the sink for this long means records were lost. */
const STALL_MS = 15_000;
/** Lets every worker see the final consumer groups (they watch the state KV) before data flows. */
const SETTLE_MS = 500;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runTopoCase(o: TopoCaseOptions): Promise<CaseResult> {
  const traced = o.traceSample !== undefined;
  const names = traced ? ['sink-one-hop.ts', 'trace-source.ts'] : PIPELINES[o.kind];
  const files = names.map((f) => join(o.root, 'bench', 'topo', f));
  return runPipeline({
    label: traced ? `${o.kind}-trace-${o.traceSample}` : o.kind, workers: files.length, count: o.count, timeoutMs: o.timeoutMs, log: o.log,
    ...(o.auth !== undefined ? { auth: o.auth } : {}),
    // The autopilot would fuse source and pass ~3 s after deploy, mid-run: these cases measure NATS hops.
    env: { ...o.env, TOPO_AUTOPILOT: '0', ...(traced ? { TOPO_TRACE_SAMPLE: String(o.traceSample), TOPO_BENCH_TRACE_COUNT: String(o.count) } : {}) },
    ...(o.scrapeMetricsMs ? { scrapeMetricsMs: o.scrapeMetricsMs } : {}),
    async setup(client) {
      // The trace source starts by itself: its sink is deployed first.
      for (const f of files) await client.deployFile(f);
      return checkPlacement(client);
    },
  });
}

/** One throughput pipeline on a fresh local topology: the bench source, stages and a benchSink on its report stream. */
export interface PipelineOptions {
  /** Names the run in errors and the temp folder. */
  label: string;
  workers: number;
  count: number;
  timeoutMs: number;
  log: (line: string) => void;
  /** Environment of the controller and worker processes. */
  env?: NodeJS.ProcessEnv;
  /** NATS auth on the topology's server (default true). */
  auth?: boolean;
  /** Deploys (and fuses, scales...) the pipeline; returns placement notes. */
  setup(client: TopoClient): Promise<string[]>;
  /** Fetch the controller's /metrics this often while records flow. */
  scrapeMetricsMs?: number;
}

/**
 * Starts the topology, runs `setup`, sends the start record and waits for the
 * sink's final report (bench/topo/sink.ts), then stops everything.
 */
export async function runPipeline(o: PipelineOptions): Promise<CaseResult> {
  const dir = mkdtempSync(join(tmpdir(), `topo-bench-${o.label.replace(/[^a-z0-9-]/gi, '-')}-`));
  let topo: LocalTopology | undefined;
  let client: TopoClient | undefined;
  let failed = false;
  try {
    topo = await startLocalTopology({ dir, workers: o.workers, ...(o.env ? { env: o.env } : {}), ...(o.auth !== undefined ? { auth: o.auth } : {}) });
    client = await TopoClient.connect(topo.natsUrl, { name: 'topo-bench', creds: topo.credsFile });
    const notes = await o.setup(client);
    await sleep(SETTLE_MS);
    const scraper = o.scrapeMetricsMs ? await scrapeMetrics(client, o.scrapeMetricsMs) : undefined;
    const report = await measure(client, o).finally(() => scraper?.stop());
    if (scraper) notes.push(`/metrics scraped ${scraper.scrapes} times, ${Math.round(scraper.bytes / Math.max(1, scraper.scrapes)).toLocaleString('en-US')} bytes each`);
    const seconds = (report.lastMs - report.firstMs) / 1000;
    return { records: report.count, expected: o.count, lost: 0, seconds, rate: seconds > 0 ? report.count / seconds : 0, notes };
  } catch (err) {
    failed = true;
    const logs = topo ? ` (logs kept in ${topo.logDir})` : '';
    throw new Error(`${(err as Error).message}${logs}`, { cause: err });
  } finally {
    await client?.close().catch(() => undefined);
    await topo?.stop().catch(() => undefined);
    // Keep the logs of a failed run; a passing run leaves nothing behind.
    if (!failed) rmSync(dir, { recursive: true, force: true });
  }
}

/** Fetches /metrics every `everyMs` until stopped (a failed scrape fails the run: metrics on must work). */
async function scrapeMetrics(client: TopoClient, everyMs: number): Promise<{ stop(): void; scrapes: number; bytes: number }> {
  const url = (await client.status()).httpUrl;
  if (!url) throw new Error('the controller serves no /metrics (TOPO_HTTP=off?)');
  const state = { scrapes: 0, bytes: 0, error: undefined as Error | undefined };
  const scrape = (): void => {
    fetch(`${url}/metrics`).then(async (res) => {
      if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
      state.bytes += (await res.text()).length;
      state.scrapes++;
    }).catch((err: Error) => (state.error ??= err));
  };
  // At once as well: a run can be shorter than the interval.
  scrape();
  const timer = setInterval(scrape, everyMs);
  return {
    stop() {
      clearInterval(timer);
      if (state.error) throw state.error;
    },
    get scrapes() { return state.scrapes; },
    get bytes() { return state.bytes; },
  };
}

/** Every bench computation should run on a worker of its own; says so when not. */
export async function checkPlacement(client: TopoClient): Promise<string[]> {
  const status = await client.status();
  const byWorker = new Map<string, string[]>();
  for (const c of status.computations) {
    for (const i of c.instances) byWorker.set(i.workerId, [...(byWorker.get(i.workerId) ?? []), c.name]);
  }
  const shared = [...byWorker].filter(([, names]) => names.length > 1);
  return shared.map(([w, names]) => `${names.join(' and ')} share worker ${w}`);
}

/** Sends the start record and waits for the sink's final report, or a stall. */
async function measure(client: TopoClient, o: Pick<PipelineOptions, 'label' | 'count' | 'timeoutMs'>): Promise<BenchReport> {
  const nc = client.nc;
  let last: BenchReport = { count: 0, done: false, firstMs: 0, lastMs: 0 };
  let lastProgressAt = Date.now();
  let finish: (r: BenchReport) => void = () => undefined;
  const finished = new Promise<BenchReport>((resolve) => (finish = resolve));
  const sub = nc.subscribe(subjects.dataAll(BENCH_STREAMS.report), {
    callback: (_err, msg) => {
      for (const rec of decodeBatch(msg.data).recs) {
        const r = rec[1] as BenchReport;
        if (r.count !== last.count) lastProgressAt = Date.now();
        last = r;
        if (r.done) finish(r);
      }
    },
  });
  await nc.flush();
  const start: BenchStart = { count: o.count };
  nc.publish(
    subjects.data(BENCH_STREAMS.start, 0),
    encodeBatch({ v: PROTOCOL_VERSION, src: 'bench-harness', stream: BENCH_STREAMS.start, bseq: 1, recs: [['start', start, Date.now(), 1]] }),
  );
  const startedAt = Date.now();
  try {
    for (;;) {
      const done = await Promise.race([finished, sleep(250).then(() => undefined)]);
      if (done) return done;
      const now = Date.now();
      if (now - lastProgressAt > STALL_MS) {
        throw new Error(`${o.label}: lost ${o.count - last.count} records: the sink stopped at ${last.count} of ${o.count} (no progress for ${STALL_MS / 1000} s)`);
      }
      if (now - startedAt > o.timeoutMs) throw new Error(`${o.label}: not done after ${o.timeoutMs / 1000} s (${last.count} of ${o.count} records arrived)`);
    }
  } finally {
    sub.unsubscribe();
  }
}
