/**
 * The live-change benches on a fresh local topology, under a paced load
 * (bench/swap/source.ts: `keys` keys, one record each every 10 ms):
 * - scale: the key-grouped counter bswap-counter is scaled 1 -> 2 -> 4 -> 2 -> 1,
 *   `cycles` times (`client.scale`), on 5 workers (the source has its own);
 * - regroup: the chain source -> blive-relay -> blive-counter has relay and
 *   counter fused (`client.fuse`) and split (`client.split`) again, `cycles` times, on 3 workers.
 * After each cycle the counter is hot swapped to its other version and back
 * (scale) or once (regroup): the swap pauses are the baseline of the same run,
 * under the same load. Between changes it waits GAP_MS. Each change's reply gives pauseMs; the
 * output is audited per key (KeyAudit) once the source stopped.
 * The autopilot is off (TOPO_AUTOPILOT=0): only the bench changes the topology.
 * Bundled into dist/bench/live.mjs by bench/run.mjs.
 */
import { publishControl, stopAndSettle } from '../swap/sourceControl.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalTopology, type LocalTopology } from '../../runtime/client/launcher.js';
import { TopoClient } from '../../runtime/client/client.js';
import { swapReplyOf } from '../../runtime/client/swap.js';
import { bundleComputation, type BundledComputation } from '../../runtime/client/bundle.js';
import { decodeBatch, subjects, type HistoryStep } from '../../protocol/index.js';
import { SWAP_BENCH, type SourceReport } from '../swap/streams.js';
import { statsOf, type Stats } from '../swap/stats.js';
import { KeyAudit, type AuditFigures } from './audit.js';
import { GAP_MS, WARMUP_MS } from './plan.js';
import { LIVE } from './streams.js';

export type LiveMode = 'scale' | 'regroup';

export interface LiveCaseOptions {
  root: string;
  mode: LiveMode;
  cycles: number;
  keys: number;
  log: (line: string) => void;
}

export interface LiveChange {
  n: number;
  what: string;
  pauseMs: number | undefined;
  elapsedMs: number;
  steps: string;
  /** A hot swap of the counter, the baseline. */
  baseline: boolean;
  error?: string;
}

export interface LiveResult {
  mode: LiveMode;
  changes: LiveChange[];
  /** Pauses of the scales or fuses/splits (not of the baseline swaps). */
  pause: Stats;
  /** Pauses of the hot swaps of the counter in the same run. */
  swapPause: Stats;
  /** Request to reply, as the client saw it. */
  elapsed: Stats;
  /** Per kind of change (e.g. "1 -> 2", "fuse"): its pauses. */
  byKind: { what: string; pause: Stats }[];
  targetRate: number;
  achievedRate: number;
  seconds: number;
  audit: AuditFigures;
  /** Per-record latency (arrival - planned tick time) over the whole run. */
  latency: Stats;
  notes: string[];
}

const STALL_MS = 15_000;
const SCALE_CYCLE = [2, 4, 2, 1] as const;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const stepsOf = (steps: HistoryStep[]): string => steps.map((s) => `${s.step} ${s.ms}`).join(', ');


/** The sequence of live changes of a mode, each a label and the call that makes it. */
type Step = { what: string; baseline: boolean; run: () => Promise<{ pauseMs?: number; steps: HistoryStep[]; result: string }> };

export const SWAP_BASELINE = 'hot swap (baseline)';

function plan(client: TopoClient, o: LiveCaseOptions, versions: readonly [BundledComputation, BundledComputation]): Step[] {
  const out: Step[] = [];
  const counter = o.mode === 'scale' ? SWAP_BENCH.counter : LIVE.counter;
  let running = 0;
  const swap = (): Step => ({
    what: SWAP_BASELINE, baseline: true,
    run: () => {
      running = 1 - running;
      return client.swapBundle(counter, versions[running]!, { source: `version ${running ? 'b' : 'a'}` });
    },
  });
  if (o.mode === 'scale') {
    let from = 1;
    for (let c = 0; c < o.cycles; c++) {
      for (const to of SCALE_CYCLE) {
        const what = `${from} -> ${to}`;
        out.push({ what, baseline: false, run: () => client.scale(SWAP_BENCH.counter, to) });
        from = to;
      }
      out.push(swap(), swap());
    }
  } else {
    for (let c = 0; c < o.cycles; c++) {
      out.push({ what: 'fuse', baseline: false, run: () => client.fuse([LIVE.relay, LIVE.counter]) });
      out.push({ what: 'split', baseline: false, run: () => client.split(LIVE.relay) });
      out.push(swap());
    }
  }
  return out;
}

export async function runLiveCase(o: LiveCaseOptions): Promise<LiveResult> {
  const dir = mkdtempSync(join(tmpdir(), `topo-bench-${o.mode}-`));
  let topo: LocalTopology | undefined;
  let client: TopoClient | undefined;
  let failed = false;
  try {
    topo = await startLocalTopology({ dir, workers: o.mode === 'scale' ? 5 : 3, env: { TOPO_AUTOPILOT: '0' } });
    client = await TopoClient.connect(topo.natsUrl, { name: `topo-bench-${o.mode}`, creds: topo.credsFile });
    const file = (f: string): string => join(o.root, 'bench', f);
    // Bundled once: the baseline swaps measure the runtime's swap, not esbuild.
    const files = o.mode === 'scale' ? ['swap/counter-a.ts', 'swap/counter-b.ts'] : ['live/counter.ts', 'live/counter-b.ts'];
    const versions = [await bundleComputation(file(files[0]!)), await bundleComputation(file(files[1]!))] as const;
    await client.deployBundle(versions[0], { source: files[0]! });
    if (o.mode === 'regroup') await client.deployFile(file('live/relay.ts'));
    await client.deployFile(file('swap/source.ts'));
    return await measure(client, o, versions);
  } catch (err) {
    failed = true;
    const logs = topo ? ` (logs kept in ${topo.logDir})` : '';
    throw new Error(`${o.mode} bench: ${(err as Error).message}${logs}`, { cause: err });
  } finally {
    await client?.close().catch(() => undefined);
    await topo?.stop().catch(() => undefined);
    if (!failed) rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(client: TopoClient, o: LiveCaseOptions, versions: readonly [BundledComputation, BundledComputation]): Promise<LiveResult> {
  const nc = client.nc;
  const audit = new KeyAudit(o.keys);
  let report: SourceReport | undefined;
  const out = nc.subscribe(subjects.dataAll(SWAP_BENCH.output), { callback: (err, msg) => void (err || audit.onBatch(msg.data)) });
  const rep = nc.subscribe(subjects.dataAll(SWAP_BENCH.report), {
    callback: (err, msg) => {
      if (!err) for (const r of decodeBatch(msg.data).recs) report = r[1] as SourceReport;
    },
  });
  try {
    await nc.flush();
    await sleep(500);
    publishControl(client, { op: 'start', keys: o.keys, everyMs: 10 }, 1, 'bench-live-harness');
    await sleep(WARMUP_MS);
    if (audit.received === 0) throw new Error(`no output from the counter after ${WARMUP_MS} ms of warm-up`);
    const changes: LiveChange[] = [];
    const steps = plan(client, o, versions);
    for (const [i, s] of steps.entries()) {
      const started = performance.now();
      const change: LiveChange = { n: i + 1, what: s.what, pauseMs: undefined, elapsedMs: 0, steps: '', baseline: s.baseline };
      try {
        const r = await s.run();
        change.pauseMs = r.pauseMs;
        change.steps = stepsOf(r.steps);
        if (r.result !== 'ok') change.error = `result ${r.result}`;
      } catch (err) {
        const reply = swapReplyOf(err);
        change.pauseMs = reply?.pauseMs;
        change.steps = reply ? stepsOf(reply.steps) : '';
        change.error = (err as Error).message;
        o.log(`${o.mode}: change ${i + 1} (${s.what}) failed: ${change.error}`);
      }
      change.elapsedMs = performance.now() - started;
      changes.push(change);
      if ((i + 1) % 5 === 0 || i + 1 === steps.length) o.log(`${o.mode}: ${i + 1}/${steps.length} changes, last ${s.what} pause ${change.pauseMs ?? '-'} ms`);
      await sleep(GAP_MS);
    }
    const lastTick = await stopAndSettle(client, 'bench-live-harness', {
      report: () => report, received: () => audit.received, behind: (t) => audit.behind(t), stallMs: STALL_MS,
    });
    await sleep(300); // late duplicates would show
    const figures = audit.figures(lastTick);
    const seconds = (audit.lastAt - audit.firstAt) / 1000;
    const pausesOf = (baseline: boolean): number[] => changes.flatMap((c) => (c.baseline === baseline && c.pauseMs !== undefined ? [c.pauseMs] : []));
    const kinds = [...new Set(changes.map((c) => c.what))];
    const notes = changes.filter((c) => c.error).map((c) => `change ${c.n} (${c.what}): ${c.error}`);
    const status = await client.status();
    notes.push(`at the end: ${status.computations.map((c) => `${c.name} x${c.instances.length} on ${[...new Set(c.instances.map((i) => i.workerId))].join(',')}`).join('; ')}`);
    return {
      mode: o.mode, changes, pause: statsOf(pausesOf(false)), swapPause: statsOf(pausesOf(true)),
      elapsed: statsOf(changes.filter((c) => !c.baseline).map((c) => c.elapsedMs)),
      byKind: kinds.map((what) => ({ what, pause: statsOf(changes.filter((c) => c.what === what && c.pauseMs !== undefined).map((c) => c.pauseMs!)) })),
      targetRate: o.keys * 100, achievedRate: seconds > 0 ? audit.received / seconds : 0, seconds,
      audit: figures, latency: audit.latency.stats(), notes,
    };
  } finally {
    out.unsubscribe();
    rep.unsubscribe();
  }
}
