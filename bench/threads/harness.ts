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
import { Worker as Thread } from 'node:worker_threads';
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
  /** The same work in 2 bare worker_threads vs sequential on the main thread, per pair, and its median: what the machine allowed. */
  ceilings: number[];
  ceiling: number;
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

/**
 * Long-lived instances, as in a worker: started once (threads started and
 * warmed up once), then fed run after run. A thread's JIT warms up once per
 * instance lifetime, so starting fresh instances per run would measure
 * warm-up rather than the steady state.
 */
class Rig {
  private readonly insts: { inst: Instance; edges: ReturnType<typeof benchEdges> }[] = [];
  private left = 0;
  private finish: () => void = () => {};
  private runs = 0;

  constructor(
    private readonly comp: Computation,
    private readonly file: string | undefined,
    private readonly instances: number,
  ) {}

  async start(): Promise<void> {
    const metadata = validateMetadata(this.comp);
    for (let i = 0; i < this.instances; i++) {
      const a: Assignment = {
        instanceId: `${this.comp.name}-${i}-${this.file ? 'thread' : 'inline'}`, computation: this.comp.name, version: 1, sha: '0'.repeat(64), lang: 'ts',
        index: i, count: this.instances, metadata,
      };
      const edges = benchEdges(() => {
        if (--this.left === 0) this.finish();
      });
      const inst = new Instance(a, this.comp, { nc, view: new TopologyView(), log, workerId: 'bench', edges, ...(this.file ? { artifactFile: this.file } : {}) });
      await inst.start();
      this.insts.push({ inst, edges });
    }
  }

  /** Feeds `perInstance` records to each instance; resolves with the wall time from the first batch to the last output. */
  async run(perInstance: number, value: (n: number) => unknown): Promise<number> {
    this.runs++;
    const data = this.insts.map((_, i) => batches(perInstance, value, `bench-src-${i}-${this.runs}`));
    this.left = this.instances * perInstance;
    const done = new Promise<void>((r) => (this.finish = r));
    const t0 = performance.now();
    this.insts.forEach((x, i) => x.edges.feed(data[i]!));
    await done;
    return performance.now() - t0;
  }

  stop(): Promise<unknown> {
    return Promise.all(this.insts.map((x) => x.inst.stop()));
  }
}

/**
 * The machine's own ceiling at the moment: the same work (spin calls) in two
 * bare worker_threads vs one after the other on the main thread, no topo code
 * at all. On an idle 2-core machine it is ~2x; what other processes take of
 * the cores shows here first.
 */
class Ceiling {
  private readonly threads: Thread[] = [];
  private static readonly SOURCE = `const { parentPort } = require('node:worker_threads');
const work = (${spin.toString()});
parentPort.on('message', ({ calls, iters }) => { let x = 0; for (let i = 0; i < calls; i++) x ^= work(iters); parentPort.postMessage(x); });`;

  start(): void {
    for (let i = 0; i < 2; i++) this.threads.push(new Thread(Ceiling.SOURCE, { eval: true }));
  }

  /** Wall ms: [two threads, sequential on this thread] for 2 x `calls` spin calls. */
  async pair(calls: number, iters: number): Promise<[number, number]> {
    const t0 = performance.now();
    await Promise.all(this.threads.map((t) => new Promise((r) => {
      t.once('message', r);
      t.postMessage({ calls, iters });
    })));
    const par = performance.now() - t0;
    const t1 = performance.now();
    let x = 0;
    for (let i = 0; i < 2 * calls; i++) x ^= spin(iters);
    const seq = performance.now() - t1;
    if (x === 0.5) console.log(x); // keep x alive
    return [par, seq];
  }

  stop(): Promise<unknown> {
    return Promise.all(this.threads.map((t) => t.terminate()));
  }
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
    const ceiling = new Ceiling();
    ceiling.start();
    await ceiling.pair(2_000, iters);
    const ceilings: number[] = [];
    const threads = new Rig(heavy.comp, heavy.file, 2);
    const inlined = new Rig(heavy.comp, undefined, 2);
    await threads.start();
    await inlined.start();
    // Warm up both (JIT in the threads and on the main thread), unmeasured.
    await threads.run(2_000, value);
    await inlined.run(2_000, value);
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
        t = await threads.run(o.recordsPerInstance, value);
        i = await inlined.run(o.recordsPerInstance, value);
      } else {
        i = await inlined.run(o.recordsPerInstance, value);
        t = await threads.run(o.recordsPerInstance, value);
      }
      thread.push({ mode: 'thread', ms: t, records: n });
      inline.push({ mode: 'inline', ms: i, records: n });
      ratios.push(i / t);
      const [par, seq] = await ceiling.pair(o.recordsPerInstance, iters);
      ceilings.push(seq / par);
      o.log(`threads run ${r}/${o.runs}: threads ${t.toFixed(0)} ms, inline ${i.toFixed(0)} ms (${(i / t).toFixed(2)}x); bare worker_threads ${(seq / par).toFixed(2)}x; load ${(loadavg()[0] ?? 0).toFixed(2)}`);
      const l = await runInstances(light.comp, undefined, 1, o.lightRecords, (k) => k, r);
      lightRates.push(o.lightRecords / (l / 1_000));
      o.log(`light run ${r}/${o.runs}: ${Math.round(o.lightRecords / (l / 1_000)).toLocaleString('en-US')} records/s inline`);
    }
    await threads.stop();
    await inlined.stop();
    await ceiling.stop();
    return {
      ceilings, ceiling: median(ceilings),
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
