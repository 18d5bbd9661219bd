/**
 * The threads bench (bundled into dist/bench/threads.mjs by bench/run.mjs):
 * two instances of a computation that spends ~50 µs of CPU per record, run
 * by the worker's own Instance loop (runtime/worker/instance.ts) once in
 * threads (hints.cpu 'heavy': one thread per instance, threadPump.ts) and
 * once inline on the main thread, over the same encoded batches, in the same
 * run. In-process: an in-process Inlet feeds the batches and an in-process
 * Outlet counts the outputs, so NATS is not in the figure (the thread path's
 * gain is CPU parallelism; the wire is the same in both modes).
 *
 * The light case runs a trivial computation inline through the same loop, so
 * a change to that loop shows in records/s (bench/threads/light-before.mjs
 * compares it against an earlier commit in the same run).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { encodeBatch, validateMetadata, type Assignment, type WireRecord } from '../../protocol/index.js';
import type { Computation } from '../../sdk/computation.js';
import { bundleFile } from '../../runtime/client/bundle.js';
import { Instance } from '../../runtime/worker/instance.js';
import type { EdgeFactory, Inbound, Outlet } from '../../runtime/worker/edges.js';
import { TopologyView } from '../../runtime/worker/topology.js';
import { spin } from './spin.js';

const BATCH = 256;
const STREAM = 'bench-threads-in';

export interface ThreadsRun {
  mode: 'thread' | 'inline';
  ms: number;
  records: number;
}

export interface ThreadsBenchResult {
  usPerRecord: number;
  iters: number;
  instances: number;
  recordsPerInstance: number;
  thread: ThreadsRun[];
  inline: ThreadsRun[];
  /** Median of the per-pair ratios (inline ms / thread ms of a pair run back to back). */
  ratio: number;
  ratios: number[];
  light: { recordsPerSec: number[]; records: number };
}

export interface ThreadsCaseOptions {
  root: string;
  runs: number;
  recordsPerInstance: number;
  usPerRecord: number;
  lightRecords: number;
  log: (line: string) => void;
}

/** Iterations of spin() that take `us` µs on this machine (best of a few tries, so background load does not inflate the work). */
function calibrate(us: number): number {
  const probe = 200_000;
  let best = Infinity;
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    spin(probe);
    best = Math.min(best, performance.now() - t0);
  }
  return Math.max(1, Math.round((us / 1_000 / best) * probe));
}

function batches(records: number, value: (n: number) => unknown, src: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  let bseq = 0;
  for (let n = 1; n <= records; n += BATCH) {
    const recs: WireRecord[] = [];
    for (let i = n; i < Math.min(records + 1, n + BATCH); i++) recs.push([`k${i % 64}`, value(i), Date.now(), i]);
    out.push(encodeBatch({ v: 1, src, stream: STREAM, bseq: ++bseq, recs }));
  }
  return out;
}

/** In-process edges: feed() hands batches to the instance; outputs are counted. */
function benchEdges(onOutput: () => void): EdgeFactory & { feed(items: Uint8Array[]): void } {
  let onItem: ((item: Inbound) => void) | undefined;
  const outlet = (stream: string): Outlet => ({
    stream,
    produce: onOutput,
    hold() {},
    release() {},
    isHeld: false,
    discard() {},
    flush: () => true,
    isBlocked: () => false,
    lastPublishedSeq: 0,
    partitionFences: {},
    partitionAgesMs: {},
    pending: 0,
    credit() {},
    checkStall() {},
    close() {},
  }) as unknown as Outlet; // (a stand-in: only what the instance's loop uses)
  return {
    outlet,
    inlet: (_a, _p, cb) => ({ open: () => void (onItem = cb), close: () => void (onItem = undefined) }),
    listenCredits: () => ({ close() {} }),
    sendCredit() {},
    feed(items) {
      for (const data of items) onItem!({ data, stream: STREAM, partition: 0 });
    },
  };
}

const nc = { publish() {}, flush: async () => {} } as unknown as NatsConnection;
const log = pino({ level: 'silent' });

async function loadArtifact(dir: string, src: string): Promise<{ file: string; comp: Computation }> {
  const file = join(dir, `${src.replace(/\W/g, '_')}.mjs`);
  writeFileSync(file, await bundleFile(src));
  const comp = ((await import(pathToFileURL(file).href)) as { default: Computation }).default;
  return { file, comp };
}

/** Runs `instances` instances of comp over `perInstance` records each; resolves with the wall time from the first batch to the last output. */
async function runInstances(comp: Computation, file: string | undefined, instances: number, perInstance: number, value: (n: number) => unknown, run: number): Promise<number> {
  const metadata = validateMetadata(comp);
  let left = instances * perInstance;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const onOutput = (): void => {
    if (--left === 0) finish();
  };
  const insts: { inst: Instance; edges: ReturnType<typeof benchEdges>; data: Uint8Array[] }[] = [];
  for (let i = 0; i < instances; i++) {
    const a: Assignment = {
      instanceId: `${comp.name}-${i}-r${run}`, computation: comp.name, version: 1, sha: '0'.repeat(64), lang: 'ts', index: i, count: instances, metadata,
    };
    const edges = benchEdges(onOutput);
    const inst = new Instance(a, comp, { nc, view: new TopologyView(), log, workerId: 'bench', edges, ...(file ? { artifactFile: file } : {}) });
    await inst.start();
    insts.push({ inst, edges, data: batches(perInstance, value, `bench-src-${i}`) });
  }
  const t0 = performance.now();
  for (const x of insts) x.edges.feed(x.data);
  await done;
  const ms = performance.now() - t0;
  await Promise.all(insts.map((x) => x.inst.stop()));
  return ms;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export async function runThreadsCase(o: ThreadsCaseOptions): Promise<ThreadsBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'topo-bench-threads-'));
  try {
    const heavy = await loadArtifact(dir, join(o.root, 'bench/threads/burn.ts'));
    const light = await loadArtifact(dir, join(o.root, 'bench/threads/light.ts'));
    const iters = calibrate(o.usPerRecord);
    o.log(`threads: ${iters} iterations ≈ ${o.usPerRecord} µs/record; 2 instances x ${o.recordsPerInstance.toLocaleString('en-US')} records, threads vs inline, ${o.runs} pairs`);
    const value = (n: number) => ({ iters, n });
    // Warm up both paths (JIT, thread start) once, unmeasured.
    await runInstances(heavy.comp, heavy.file, 2, 2_000, value, 0);
    await runInstances(heavy.comp, undefined, 2, 2_000, value, 0);
    const thread: ThreadsRun[] = [];
    const inline: ThreadsRun[] = [];
    const lightRates: number[] = [];
    const n = 2 * o.recordsPerInstance;
    // Pairs run back to back (the order alternating), so background load on a shared machine hits both halves of a pair alike;
    // the figure is the median of the per-pair ratios.
    const ratios: number[] = [];
    for (let r = 1; r <= o.runs; r++) {
      let t = 0;
      let i = 0;
      if (r % 2) {
        t = await runInstances(heavy.comp, heavy.file, 2, o.recordsPerInstance, value, r);
        i = await runInstances(heavy.comp, undefined, 2, o.recordsPerInstance, value, r);
      } else {
        i = await runInstances(heavy.comp, undefined, 2, o.recordsPerInstance, value, r);
        t = await runInstances(heavy.comp, heavy.file, 2, o.recordsPerInstance, value, r);
      }
      thread.push({ mode: 'thread', ms: t, records: n });
      inline.push({ mode: 'inline', ms: i, records: n });
      ratios.push(i / t);
      o.log(`threads run ${r}/${o.runs}: threads ${t.toFixed(0)} ms, inline ${i.toFixed(0)} ms (${(i / t).toFixed(2)}x), load ${(loadavg()[0] ?? 0).toFixed(2)}`);
      const l = await runInstances(light.comp, undefined, 1, o.lightRecords, (k) => k, r);
      lightRates.push(o.lightRecords / (l / 1_000));
      o.log(`light run ${r}/${o.runs}: ${Math.round(o.lightRecords / (l / 1_000)).toLocaleString('en-US')} records/s inline`);
    }
    return {
      usPerRecord: o.usPerRecord, iters, instances: 2, recordsPerInstance: o.recordsPerInstance, thread, inline,
      ratio: median(ratios),
      ratios,
      light: { recordsPerSec: lightRates, records: o.lightRecords },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** For light-before.mjs: only the light case, `runs` times, records/s each. */
export async function runLightOnly(o: { root: string; runs: number; records: number }): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'topo-bench-light-'));
  try {
    const light = await loadArtifact(dir, join(o.root, 'bench/threads/light.ts'));
    await runInstances(light.comp, undefined, 1, 200_000, (k) => k, 0);
    const rates: number[] = [];
    for (let r = 1; r <= o.runs; r++) rates.push(o.records / ((await runInstances(light.comp, undefined, 1, o.records, (k) => k, r)) / 1_000));
    return rates;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
