/**
 * The swap bench: on a fresh local topology, a paced source (1000 keys every
 * 10 ms = 100,000 records/s) feeds a key-grouped counter, which is swapped
 * `swaps` times between two versions while the harness taps the counter's
 * output. Per record it checks the sequence (nothing lost, duplicated or
 * reordered; the count carried across versions) and measures end-to-end
 * latency: now minus the tick's planned time. Records whose tick falls into a
 * swap (request sent .. reply + TAIL_MS) count as "during a swap", the
 * others (after warm-up) as the baseline of the same run.
 * Bundled into dist/bench/swap.mjs by bench/run.mjs.
 */
import { publishControl, stopAndSettle } from './sourceControl.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalTopology, type LocalTopology } from '../../runtime/client/launcher.js';
import { TopoClient } from '../../runtime/client/client.js';
import { bundleComputation } from '../../runtime/client/bundle.js';
import { bundleSource } from '../../runtime/client/hostedBundle.js';
import { swapReplyOf } from '../../runtime/client/swap.js';
import { decodeBatch, subjects } from '../../protocol/index.js';
import { benchSwapKey, SWAP_BENCH, type CountedValue, type SourceReport } from './streams.js';
import { BASELINE_MS, GAP_MS, TAIL_MS, WARMUP_MS } from './plan.js';
import { LatencyHistogram, statsOf, type Stats } from './stats.js';

export interface SwapCaseOptions {
  /** Repository root (the computations are bench/swap/*.ts under it). */
  root: string;
  swaps: number;
  keys: number;
  everyMs: number;
  /** Instances of the swapped counter (each on its own worker). */
  instances: number;
  /** The counter's language (default ts): python swaps bench/swap/counter_a.py and counter_b.py, hosted operators. */
  lang?: 'ts' | 'python';
  log: (line: string) => void;
}

export interface SwapBenchResult {
  swaps: number;
  failedSwaps: string[];
  keys: number;
  everyMs: number;
  instances: number;
  /** Records per second the source was asked for, and what arrived over the run. */
  targetRate: number;
  achievedRate: number;
  /** Upstreams paused until resumed (SwapReply.pauseMs). */
  pause: Stats;
  /** Artifact fetch and load before the pause (SwapReply.loadMs). */
  load: Stats;
  /** The whole swap as the client saw it (request to reply, incl. the health gate). */
  swapMs: Stats;
  /** Per swap: the highest latency of any record whose tick fell into it. */
  worstDuringSwap: Stats;
  /** Per swap: that worst latency minus the baseline p50. */
  extra: Stats;
  /** Per-record latency outside swaps (after warm-up), before the first swap only, and during swaps. */
  baseline: Stats;
  beforeSwaps: Stats;
  during: Stats;
  /** The swaps with the longest pauses, with the controller's step timings. */
  slowest: { swap: number; pauseMs: number; steps: string }[];
  records: { expected: number; received: number; gaps: number; backwards: number; badCounts: number };
  /** Placement and other remarks. */
  notes: string[];
  seconds: number;
}

/** No new record for this long after the stop means the rest was lost. */
const STALL_MS = 15_000;
const SETTLE_MS = 500;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface SwapWindow {
  start: number;
  /** Set when the reply arrived. */
  end: number | undefined;
  worst: number;
}

/** Per-record checks and latency classes, fed from the tap callback (no allocation per record). */
class OutputChecker {
  readonly lastSeq: Int32Array;
  readonly received: Int32Array;
  private readonly keyIndex = new Map<string, number>();
  gaps = 0;
  backwards = 0;
  badCounts = 0;
  total = 0;
  firstAt = 0;
  lastAt = 0;
  measureFrom = Infinity;
  readonly baseline = new LatencyHistogram();
  readonly beforeSwaps = new LatencyHistogram();
  readonly during = new LatencyHistogram();
  readonly windows: SwapWindow[] = [];

  constructor(keys: number) {
    this.lastSeq = new Int32Array(keys);
    this.received = new Int32Array(keys);
    for (let i = 0; i < keys; i++) this.keyIndex.set(benchSwapKey(i), i);
  }

  /** The swap whose window holds time t, if any (windows are in time order). */
  private windowOf(t: number): SwapWindow | undefined {
    const w = this.windows;
    let lo = 0;
    let hi = w.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (w[mid]!.start <= t) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0) return undefined;
    const win = w[found]!;
    return win.end === undefined || t <= win.end + TAIL_MS ? win : undefined;
  }

  onBatch(data: Uint8Array): void {
    const now = Date.now();
    const batch = decodeBatch(data);
    if (this.firstAt === 0) this.firstAt = now;
    this.lastAt = now;
    for (const r of batch.recs) {
      const idx = this.keyIndex.get(r[0]);
      if (idx === undefined) continue;
      const v = r[1] as CountedValue;
      this.total++;
      this.received[idx]!++;
      const last = this.lastSeq[idx]!;
      if (v.seq !== last + 1) {
        if (v.seq <= last) this.backwards++;
        else this.gaps++;
      }
      if (v.seq > last) this.lastSeq[idx] = v.seq;
      if (v.count !== v.seq) this.badCounts++;
      if (v.t < this.measureFrom) continue;
      const latency = now - v.t;
      const win = this.windowOf(v.t);
      if (win) {
        this.during.add(latency);
        if (latency > win.worst) win.worst = latency;
      } else {
        this.baseline.add(latency);
        if (this.windows.length === 0 || v.t < this.windows[0]!.start) this.beforeSwaps.add(latency);
      }
    }
  }

  /** Keys that have not yet reached `lastTick`. */
  behind(lastTick: number): number {
    let n = 0;
    for (let i = 0; i < this.lastSeq.length; i++) if (this.lastSeq[i]! < lastTick) n++;
    return n;
  }
}


export async function runSwapCase(o: SwapCaseOptions): Promise<SwapBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'topo-bench-swap-'));
  let topo: LocalTopology | undefined;
  let client: TopoClient | undefined;
  let failed = false;
  try {
    // The autopilot would fuse source and counter (one instance each) during the warm-up: this bench swaps a counter on its own.
    topo = await startLocalTopology({ dir, workers: o.instances + 1, env: { TOPO_AUTOPILOT: '0' } });
    client = await TopoClient.connect(topo.natsUrl, { name: 'topo-bench-swap', creds: topo.credsFile });
    const file = (f: string): string => join(o.root, 'bench', 'swap', f);
    // Bundled once: the bench measures the runtime's swap, not esbuild.
    const [a, b] = o.lang === 'python' ? ['counter_a.py', 'counter_b.py'] : ['counter-a.ts', 'counter-b.ts'];
    const versions = [await bundleSource(file(a)), await bundleSource(file(b))] as const;
    await client.deployBundle(versions[0], { instances: o.instances, source: a });
    await client.deployFile(file('source.ts'));
    const notes = await placementNotes(client);
    return await measure(client, o, versions, notes);
  } catch (err) {
    failed = true;
    const logs = topo ? ` (logs kept in ${topo.logDir})` : '';
    throw new Error(`swap bench: ${(err as Error).message}${logs}`, { cause: err });
  } finally {
    await client?.close().catch(() => undefined);
    await topo?.stop().catch(() => undefined);
    if (!failed) rmSync(dir, { recursive: true, force: true });
  }
}

/** The source and every counter instance should have a worker of their own. */
async function placementNotes(client: TopoClient): Promise<string[]> {
  const status = await client.status();
  const byWorker = new Map<string, string[]>();
  for (const c of status.computations) for (const i of c.instances) byWorker.set(i.workerId, [...(byWorker.get(i.workerId) ?? []), `${c.name}#${i.index}`]);
  return [...byWorker].filter(([, n]) => n.length > 1).map(([w, n]) => `${n.join(' and ')} share worker ${w}`);
}

async function measure(
  client: TopoClient, o: SwapCaseOptions, versions: readonly [Awaited<ReturnType<typeof bundleComputation>>, Awaited<ReturnType<typeof bundleComputation>>],
  notes: string[],
): Promise<SwapBenchResult> {
  const nc = client.nc;
  const check = new OutputChecker(o.keys);
  let report: SourceReport | undefined;
  const out = nc.subscribe(subjects.dataAll(SWAP_BENCH.output), {
    callback: (err, msg) => {
      if (!err) check.onBatch(msg.data);
    },
  });
  const rep = nc.subscribe(subjects.dataAll(SWAP_BENCH.report), {
    callback: (err, msg) => {
      if (err) return;
      for (const r of decodeBatch(msg.data).recs) report = r[1] as SourceReport;
    },
  });
  try {
    await nc.flush();
    await sleep(SETTLE_MS);
    const startedAt = Date.now();
    publishControl(client, { op: 'start', keys: o.keys, everyMs: o.everyMs }, 1, 'bench-swap-harness');
    await sleep(WARMUP_MS);
    if (check.total === 0) throw new Error(`no output from the counter after ${WARMUP_MS} ms of warm-up`);
    check.measureFrom = Date.now();
    o.log(`swap: warm, measuring a ${BASELINE_MS / 1000} s baseline, then ${o.swaps} swaps`);
    await sleep(BASELINE_MS);

    const pauses: number[] = [];
    const perSwap: { swap: number; pauseMs: number; steps: string }[] = [];
    const loads: number[] = [];
    const durations: number[] = [];
    const failedSwaps: string[] = [];
    for (let i = 0; i < o.swaps; i++) {
      const win: SwapWindow = { start: Date.now(), end: undefined, worst: 0 };
      check.windows.push(win);
      const bundle = versions[(i + 1) % 2]!;
      try {
        const r = await client.swapBundle(SWAP_BENCH.counter, bundle, { source: `counter-${(i + 1) % 2 ? 'b' : 'a'}.ts` });
        if (r.pauseMs !== undefined) pauses.push(r.pauseMs);
        if (r.loadMs !== undefined) loads.push(r.loadMs);
        durations.push(r.elapsedMs);
        perSwap.push({ swap: i + 1, pauseMs: r.pauseMs ?? NaN, steps: r.steps.map((st) => `${st.step} ${st.ms}`).join(', ') });
      } catch (err) {
        const reply = swapReplyOf(err);
        failedSwaps.push(`swap ${i + 1}: ${(err as Error).message}`);
        if (reply?.pauseMs !== undefined) pauses.push(reply.pauseMs);
        o.log(`swap ${i + 1}/${o.swaps} failed: ${(err as Error).message}`);
      }
      win.end = Date.now();
      if ((i + 1) % 10 === 0) o.log(`swap: ${i + 1}/${o.swaps} swaps done, last pause ${pauses.at(-1) ?? '-'} ms`);
      await sleep(GAP_MS);
    }
    await sleep(1_000);

    const lastTick = await stopAndSettle(client, 'bench-swap-harness', {
      report: () => report, received: () => check.total, behind: (t) => check.behind(t), stallMs: STALL_MS,
    });
    await sleep(200); // would reveal duplicates arriving late

    const baseline = check.baseline.stats();
    const worst = check.windows.map((w) => w.worst);
    const seconds = (check.lastAt - check.firstAt) / 1000;
    const expected = lastTick * o.keys;
    o.log(`swap: source stopped at tick ${lastTick} after ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
    return {
      swaps: o.swaps,
      failedSwaps,
      keys: o.keys,
      everyMs: o.everyMs,
      instances: o.instances,
      targetRate: (o.keys * 1000) / o.everyMs,
      achievedRate: seconds > 0 ? check.total / seconds : 0,
      pause: statsOf(pauses),
      load: statsOf(loads),
      swapMs: statsOf(durations),
      worstDuringSwap: statsOf(worst),
      extra: statsOf(worst.map((w) => Math.max(0, w - baseline.p50))),
      baseline,
      beforeSwaps: check.beforeSwaps.stats(),
      during: check.during.stats(),
      slowest: perSwap.sort((a, b) => b.pauseMs - a.pauseMs).slice(0, 3),
      records: { expected, received: check.total, gaps: check.gaps, backwards: check.backwards, badCounts: check.badCounts },
      notes,
      seconds,
    };
  } finally {
    out.unsubscribe();
    rep.unsubscribe();
  }
}
