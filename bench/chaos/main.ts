/**
 * `npm run chaos`: the long versions of the hostile tests, each phase on a
 * fresh local topology (nats-server, controller, 3 workers) running a
 * sequence-numbered source into a key-grouped counter (2 instances), with
 * the counter's input and output tapped and audited per key (lost,
 * duplicated, out of order, counts not continuing):
 *
 * 1. fuzz: N seeded hostile messages (bench/chaos/fuzz.ts) on every subject
 *    under load, then a swap; RSS of every process before and after.
 * 2. swaps: S swaps mixing good versions with broken ones (init throws,
 *    throws on every record, throws on 1%, async hang before probation ends,
 *    async hang after probation, a slow version that builds a backlog).
 * 3. worker kills: a worker running a counter instance killed with -9 in
 *    the middle of a swap (its in-memory state and in-flight records are lost
 *    by design; the figures say how many).
 * 4. controller kills: on a topology started as `topo up` starts it (supervised),
 *    the controller killed with -9 mid-swap (after preload, upstreams paused),
 *    started again at once by its supervisor, or left dead past the leases
 *    (its supervisor too) until `topo up` starts one; the outcome must be in
 *    history and the next swap must work. 0 lost is the only figure allowed.
 * 5. durable: at 20,000 records/s on at-least-once streams, workers killed
 *    with -9 again and again, idle, mid-swap and mid-scale (bench/chaos/durable.ts):
 *    0 lost, counts exact, duplicates at the output counted.
 * 6. nats-restart: the same topology, nats-server restarted again and again
 *    (SIGTERM and SIGKILL, same port and store dir; bench/chaos/nats-restart.ts):
 *    how long until output flows again; audited as stored in JetStream: 0 lost,
 *    counts exact, duplicates counted; an at-most-once stream's losses beside it.
 *
 * Writes bench/CHAOS.md (or CHAOS_OUT). Sizes: flags or environment,
 *   --fuzz N (CHAOS_FUZZ, default 1000000)   --rate N (CHAOS_FUZZ_RATE, 5000 msgs/s)
 *   --swaps N (CHAOS_SWAPS, 100)   --worker-kills N (CHAOS_WORKER_KILLS, 1)
 *   --controller-kills N (CHAOS_CONTROLLER_KILLS, 2)   --durable-kills N (CHAOS_DURABLE_KILLS, 10)
 *   --nats-restarts N (CHAOS_NATS_RESTARTS, 3)   --seed N (CHAOS_SEED, 6)
 *   --phases fuzz,swaps,worker-kills,controller-kills,durable,nats-restart (CHAOS_PHASES)   --out FILE (CHAOS_OUT)
 * Bundled into dist/bench/chaos.mjs by bench/chaos/run.mjs.
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { subjects, SwapRolledBackError, type Heartbeat, type SwapReply } from '../../protocol/index.js';
import { TopoClient } from '../../runtime/client/client.js';
import { swapReplyOf } from '../../runtime/client/index.js';
import { isAlive } from '../../runtime/client/processes.js';
import { downSupervised, readSupervisedRun, upSupervised, type SupervisedRunInfo, type UpResult } from '../../runtime/client/supervised.js';
import { decodeJson } from '../../runtime/transport/rpc.js';
import { COUNTER, SOURCE, SWAP_IN, SWAP_OUT } from '../../test/fixtures/swap-e2e-lib.js';
import { startCluster, waitFor, type Cluster } from '../../test/harness.js';
import { audit, fixture, settle, type Audit, type OutRecord, type Tap } from '../../test/swap-helpers.js';
import { tapCounterOf } from './taps.js';
import { FUZZ_KINDS, publishFuzz, type FuzzKind, type FuzzRun, type FuzzTargets } from './fuzz.js';
import { durablePhase } from './durable.js';
import { natsRestartPhase } from './nats-restart.js';
import { ensureLocalAuth } from '../../runtime/transport/auth.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const REAL_KEY = /^key-\d+$/;

// ---- options -------------------------------------------------------------------

const USAGE = `usage: npm run chaos -- [options]     (each also as an environment variable)
  --fuzz N              fuzzed messages (CHAOS_FUZZ, default 1000000)
  --rate N              fuzzed messages per second (CHAOS_FUZZ_RATE, default 5000)
  --swaps N             swaps mixing good and broken versions (CHAOS_SWAPS, default 100)
  --worker-kills N      workers killed with -9 mid-swap (CHAOS_WORKER_KILLS, default 1)
  --controller-kills N  controllers killed with -9 mid-swap, restarted (CHAOS_CONTROLLER_KILLS, default 2)
  --durable-kills N     workers killed with -9 on at-least-once streams (CHAOS_DURABLE_KILLS, default 10)
  --nats-restarts N     nats-server restarts (SIGTERM, SIGKILL alternately) on at-least-once streams (CHAOS_NATS_RESTARTS, default 3)
  --seed N              fuzz seed (CHAOS_SEED, default 6)
  --phases LIST         fuzz,swaps,worker-kills,controller-kills,durable,nats-restart (CHAOS_PHASES)
  --kinds LIST          fuzz only these of ${FUZZ_KINDS.join(',')} (CHAOS_FUZZ_KINDS)
  --out FILE            report (CHAOS_OUT, default bench/CHAOS.md)`;

const PHASES = ['fuzz', 'swaps', 'worker-kills', 'controller-kills', 'durable', 'nats-restart'] as const;
type Phase = (typeof PHASES)[number];

interface Options {
  fuzz: number;
  rate: number;
  swaps: number;
  workerKills: number;
  controllerKills: number;
  durableKills: number;
  natsRestarts: number;
  seed: number;
  phases: Phase[];
  out: string;
  /** Fuzz only these message families (CHAOS_FUZZ_KINDS; default all). */
  kinds: FuzzKind[];
}

function options(argv: string[]): Options {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`chaos: unknown argument ${a} (try --help)`);
    flags.set(m[1]!, m[2] ?? argv[++i] ?? '');
  }
  const num = (flag: string, env: string, dflt: number): number => {
    const raw = flags.get(flag) ?? process.env[env];
    if (raw === undefined || raw === '') return dflt;
    const n = Number(raw.replace(/_/g, ''));
    if (!Number.isInteger(n) || n < 0) throw new Error(`chaos: --${flag} / ${env} must be a whole number >= 0, got ${JSON.stringify(raw)}`);
    return n;
  };
  const phases = (flags.get('phases') ?? process.env.CHAOS_PHASES ?? PHASES.join(',')).split(',').filter(Boolean);
  for (const p of phases) if (!(PHASES as readonly string[]).includes(p)) throw new Error(`chaos: unknown phase ${p} (phases: ${PHASES.join(', ')})`);
  return {
    fuzz: num('fuzz', 'CHAOS_FUZZ', 1_000_000),
    rate: Math.max(1, num('rate', 'CHAOS_FUZZ_RATE', 5_000)),
    swaps: num('swaps', 'CHAOS_SWAPS', 100),
    workerKills: num('worker-kills', 'CHAOS_WORKER_KILLS', 1),
    controllerKills: num('controller-kills', 'CHAOS_CONTROLLER_KILLS', 2),
    durableKills: num('durable-kills', 'CHAOS_DURABLE_KILLS', 10),
    natsRestarts: num('nats-restarts', 'CHAOS_NATS_RESTARTS', 3),
    seed: num('seed', 'CHAOS_SEED', 6),
    phases: phases as Phase[],
    out: flags.get('out') ?? process.env.CHAOS_OUT ?? 'bench/CHAOS.md',
    kinds: (() => {
      const ks = (flags.get('kinds') ?? process.env.CHAOS_FUZZ_KINDS ?? '').split(',').filter(Boolean);
      for (const k of ks) if (!(FUZZ_KINDS as readonly string[]).includes(k)) throw new Error(`chaos: unknown fuzz kind ${k} (kinds: ${FUZZ_KINDS.join(', ')})`);
      return ks as FuzzKind[];
    })(),
  };
}

// ---- shared ----------------------------------------------------------------------

function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

interface Counted {
  lost: number;
  duplicated: number;
  reordered: number;
  badCounts: number;
  records: number;
  keys: number;
  examples: string[];
}

interface PhaseResult {
  phase: Phase;
  /** The run it came from (a report merges phases of several runs: see `phasesOf`). */
  command?: string;
  date?: string;
  what: string;
  seconds: number;
  audit?: Counted;
  /** Free-form figures (swap outcomes, RSS, ...), one line each. */
  notes: string[];
  /** Problems that are not counts (a step that threw). */
  errors: string[];
}

/** Topologies running now: stopped on a crash or Ctrl-C, so no process outlives the run. */
const running = new Set<{ stop(): Promise<void> }>();

/** Stops the source, waits for the counter to catch up, audits the real keys. */
async function auditCounter(client: TopoClient, input: Tap<{ key: string; seq: number }>, output: Tap<OutRecord>): Promise<Counted> {
  await client.kill(SOURCE).catch(() => undefined);
  const real = input.records.filter((r) => REAL_KEY.test(r.key) && typeof r.seq === 'number');
  let upTo: Map<string, number>;
  try {
    upTo = await settle(real, output.records, 60_000);
  } catch {
    upTo = new Map();
    for (const r of real) upTo.set(r.key, Math.max(upTo.get(r.key) ?? 0, r.seq));
  }
  const a: Audit = audit(output.records.filter((o) => REAL_KEY.test(o.key)), upTo);
  return { lost: a.lost, duplicated: a.duplicated, reordered: a.reordered, badCounts: a.badCounts, records: real.length, keys: a.keys, examples: a.examples.slice(0, 4) };
}

class Bed {
  input!: Tap<{ key: string; seq: number }>;
  output!: Tap<OutRecord>;
  extra: ChildProcess[] = [];
  private constructor(readonly cluster: Cluster) {}

  static async start(counter: string, source: string, log: (s: string) => void): Promise<Bed> {
    const cluster = await startCluster({ workers: 3 });
    const bed = new Bed(cluster);
    running.add(bed);
    const { client } = cluster;
    await client.deployFile(fixture(counter), { instances: 2 });
    ({ input: bed.input, output: bed.output } = await tapCounterOf(client));
    await client.deployFile(fixture(source));
    await waitFor(() => bed.output.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 20_000 });
    log(`  topology up in ${cluster.dir}`);
    return bed;
  }

  get client() {
    return this.cluster.client;
  }

  pids(): Record<string, number> {
    const run = this.cluster.topology.run;
    const out: Record<string, number> = { controller: run.pids.controller };
    run.pids.workers.forEach((pid, i) => (out[this.cluster.workerId(i + 1)] = pid));
    if (run.pids.nats) out['nats-server'] = run.pids.nats;
    return out;
  }

  /** Stops the source, waits for the counter to catch up, audits the real keys. */
  finish(): Promise<Counted> {
    return auditCounter(this.client, this.input, this.output);
  }

  async stop(): Promise<void> {
    running.delete(this);
    await this.input?.stop().catch(() => undefined);
    await this.output?.stop().catch(() => undefined);
    for (const c of this.extra) c.kill('SIGKILL');
    await this.cluster.stop().catch(() => undefined);
  }
}

/**
 * The same topology started as `topo up` starts it: a supervisor owning nats-server, the controller and
 * 3 workers (restarting what dies), in a fresh folder; `up()` again is what `topo up` does on it.
 */
class SupervisedBed {
  input!: Tap<{ key: string; seq: number }>;
  output!: Tap<OutRecord>;
  private readonly pids = new Set<number>();
  private constructor(readonly base: string, readonly dir: string, readonly client: TopoClient) {}

  static async start(counter: string, source: string, log: (s: string) => void): Promise<SupervisedBed> {
    const base = mkdtempSync(join(tmpdir(), 'topo-chaos-'));
    const dir = join(base, '.topo');
    const up = await upSupervised({ dir, workers: 3, env: { TOPO_AUTOPILOT: '0' } });
    const bed = new SupervisedBed(base, dir, await TopoClient.connect(up.run.natsUrl, { name: 'topo-chaos', creds: up.run.credsFile }));
    running.add(bed);
    bed.remember();
    await bed.client.deployFile(fixture(counter), { instances: 2 });
    ({ input: bed.input, output: bed.output } = await tapCounterOf(bed.client));
    await bed.client.deployFile(fixture(source));
    await waitFor(() => bed.output.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 20_000 });
    log(`  supervised topology up in ${dir}`);
    return bed;
  }

  run(): SupervisedRunInfo {
    const r = readSupervisedRun(this.dir);
    if (!r) throw new Error(`no run.json in ${this.dir}`);
    return r;
  }

  remember(): void {
    const r = readSupervisedRun(this.dir);
    for (const pid of r ? [r.supervisorPid, r.pids.nats, r.pids.controller, ...r.pids.workers] : []) if (pid && pid > 0) this.pids.add(pid);
  }

  /** What `topo up` does in this folder. */
  async up(): Promise<UpResult> {
    const r = await upSupervised({ dir: this.dir, env: { TOPO_AUTOPILOT: '0' } });
    this.remember();
    return r;
  }

  finish(): Promise<Counted> {
    return auditCounter(this.client, this.input, this.output);
  }

  async stop(): Promise<void> {
    running.delete(this);
    await this.input?.stop().catch(() => undefined);
    await this.output?.stop().catch(() => undefined);
    await this.client.close().catch(() => undefined);
    this.remember();
    await downSupervised(this.dir).catch(() => undefined);
    for (const pid of this.pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(this.base, { recursive: true, force: true });
  }
}

type SwapOutcome = { result: 'ok' | 'rolled-back' | 'error'; detail: string; ms: number };

/** Swaps the counter to `file` (a test fixture name like "counter-b", or a path ending in .ts). */
async function swapTo(bed: { client: TopoClient }, file: string, opts: Parameters<TopoClient['swap']>[2] = {}): Promise<SwapOutcome> {
  const t0 = Date.now();
  try {
    const r = await bed.client.swap(COUNTER, file.endsWith('.ts') ? file : fixture(file), opts);
    return { result: 'ok', detail: `v${r.version}`, ms: Date.now() - t0 };
  } catch (err) {
    if (err instanceof SwapRolledBackError) {
      const reply = swapReplyOf(err) as SwapReply | undefined;
      return { result: 'rolled-back', detail: (reply?.error ?? (err as Error).message).slice(0, 160), ms: Date.now() - t0 };
    }
    return { result: 'error', detail: (err as Error).message.slice(0, 200), ms: Date.now() - t0 };
  }
}

// ---- phases ----------------------------------------------------------------------

async function fuzzPhase(o: Options, log: (s: string) => void): Promise<PhaseResult> {
  const t0 = Date.now();
  const res: PhaseResult = { phase: 'fuzz', what: `${o.fuzz.toLocaleString('en-US')} fuzzed messages${o.kinds.length ? ` (${o.kinds.join(', ')} only)` : ''} at ${o.rate}/s (seed ${o.seed}), then a swap`, seconds: 0, notes: [], errors: [] };
  const bed = await Bed.start('counter-a', 'source', log);
  try {
    const warm = await swapTo(bed, 'counter-b');
    res.notes.push(`warm-up swap: ${warm.result} (${warm.detail})`);
    await sleep(2_000);
    const pids = bed.pids();
    const before = Object.fromEntries(Object.entries(pids).map(([n, p]) => [n, rssKiB(p)]));
    const peak: Record<string, number> = {};
    const status = await bed.client.status();
    const instances = status.computations.flatMap((c) => c.instances);
    const targets: FuzzTargets = {
      streams: [SWAP_IN, SWAP_OUT], producers: instances.map((i) => i.instanceId), groups: [COUNTER, SOURCE],
      workers: status.workers.map((w) => w.workerId), instances: instances.map((i) => i.instanceId), computations: [COUNTER, SOURCE],
    };
    let lastLog = Date.now();
    const run: FuzzRun = await publishFuzz(bed.client.nc, o.fuzz, targets, {
      seed: o.seed, perSecond: o.rate, ...(o.kinds.length ? { kinds: o.kinds } : {}),
      onProgress: (n) => {
        for (const [name, pid] of Object.entries(pids)) peak[name] = Math.max(peak[name] ?? 0, rssKiB(pid) ?? 0);
        if (Date.now() - lastLog > 10_000) {
          lastLog = Date.now();
          log(`  ${n.toLocaleString('en-US')} messages sent; ${bed.output.records.length.toLocaleString('en-US')} records counted so far`);
        }
      },
    });
    res.notes.push(`sent ${run.sent.toLocaleString('en-US')} in ${(run.ms / 1000).toFixed(1)} s (${Object.entries(run.byKind).map(([k, v]) => `${k} ${v}`).join(', ')}); ${run.refused} refused by the client`);
    await sleep(1_500);
    const after = await bed.client.status();
    res.notes.push(`after the fuzz: ${after.computations.map((c) => `${c.name} ${c.instances.map((i) => i.state).join('/')}`).join(', ')}; workers listed ${after.workers.length} (alive ${after.workers.filter((w) => w.alive).length})`);
    const swap = await swapTo(bed, 'counter-a');
    res.notes.push(`swap after the fuzz: ${swap.result} (${swap.detail}, ${swap.ms} ms)`);
    if (swap.result !== 'ok') res.errors.push(`swap after the fuzz: ${swap.result}: ${swap.detail}`);
    res.audit = await bed.finish();
    await sleep(2_000);
    const end = Object.fromEntries(Object.entries(pids).map(([n, p]) => [n, rssKiB(p)]));
    for (const n of Object.keys(pids)) {
      const b = before[n], e = end[n];
      const g = b && e ? Math.round(((e - b) / b) * 100) : undefined;
      res.notes.push(`RSS ${n}: ${b} KiB before, peak ${peak[n]} KiB, ${e} KiB at the end: ${g === undefined ? 'process gone' : `${g >= 0 ? '+' : ''}${g}%`}${g !== undefined && g >= 30 ? ' (over 30%)' : ''}`);
    }
  } catch (err) {
    res.errors.push((err as Error).message);
  } finally {
    await bed.stop();
  }
  res.seconds = Math.round((Date.now() - t0) / 1000);
  return res;
}

interface Version {
  file: string;
  kind: string;
  opts?: Parameters<Bed['client']['swap']>[2];
  /** Wait after the swap before the next one (a later hang must show). */
  afterMs?: number;
}

const GOOD = (code: 'a' | 'b'): Version => ({ file: `counter-${code}`, kind: 'good' });
const BROKEN: Version[] = [
  { file: 'counter-init-throws', kind: 'init throws' },
  { file: 'counter-throws', kind: 'throws on every record' },
  { file: 'bench/chaos/counter-throws-some.ts', kind: 'throws on 1%', opts: { probation: { records: 2_000, ms: 5_000 } } },
  { file: 'counter-hangs', kind: 'async hang in probation', opts: { probation: { callbackTimeoutMs: 500 } } },
  { file: 'counter-hangs-later', kind: 'async hang after probation', afterMs: 4_000 },
  { file: 'counter-slow', kind: 'slow (backlog)', afterMs: 2_000 },
];

async function swapsPhase(o: Options, log: (s: string) => void): Promise<PhaseResult> {
  const t0 = Date.now();
  const res: PhaseResult = { phase: 'swaps', what: `${o.swaps} swaps: good versions alternating with broken ones (${BROKEN.map((b) => b.kind).join(', ')})`, seconds: 0, notes: [], errors: [] };
  const bed = await Bed.start('counter-a', 'source-light', log);
  const tally = new Map<string, Map<string, number>>();
  try {
    let code: 'a' | 'b' = 'a';
    let broken = 0;
    for (let i = 0; i < o.swaps; i++) {
      let v: Version;
      if (i % 2 === 0) {
        code = code === 'a' ? 'b' : 'a';
        v = GOOD(code);
      } else v = BROKEN[broken++ % BROKEN.length]!;
      const r = await swapTo(bed, v.file, v.opts ?? {});
      const t = tally.get(v.kind) ?? new Map<string, number>();
      t.set(r.result, (t.get(r.result) ?? 0) + 1);
      tally.set(v.kind, t);
      if (r.result === 'error') res.errors.push(`swap ${i + 1} to ${v.kind}: ${r.detail}`);
      log(`  swap ${i + 1}/${o.swaps} to ${v.kind} (${v.file.replace(/.*\//, '')}): ${r.result} in ${r.ms} ms${r.result === 'ok' ? '' : `: ${r.detail.slice(0, 100)}`}`);
      if (r.result === 'ok' && v.afterMs) await sleep(v.afterMs);
      else await sleep(300);
    }
    // End on a good version, so the audit's tail is counted.
    const last = await swapTo(bed, code === 'a' ? 'counter-b' : 'counter-a');
    res.notes.push(`final swap to a good version: ${last.result}${last.result === 'ok' ? '' : ` (${last.detail})`}`);
    for (const [kind, t] of tally) res.notes.push(`${kind}: ${[...t].map(([r, n]) => `${r} ${n}`).join(', ')}`);
    res.audit = await bed.finish();
  } catch (err) {
    res.errors.push((err as Error).message);
  } finally {
    await bed.stop();
  }
  res.seconds = Math.round((Date.now() - t0) / 1000);
  return res;
}

async function workerKillPhase(o: Options, log: (s: string) => void): Promise<PhaseResult> {
  const t0 = Date.now();
  const res: PhaseResult = { phase: 'worker-kills', what: `${o.workerKills} worker(s) killed with -9 in the middle of a swap`, seconds: 0, notes: [], errors: [] };
  const bed = await Bed.start('counter-a', 'source', log);
  try {
    let code: 'a' | 'b' = 'a';
    for (let k = 0; k < o.workerKills; k++) {
      const status = await bed.client.status();
      const counterOn = status.computations.find((c) => c.name === COUNTER)!.instances.map((i) => i.workerId);
      const sourceOn = status.computations.find((c) => c.name === SOURCE)!.instances.map((i) => i.workerId);
      const victim = counterOn.find((w) => !sourceOn.includes(w)) ?? counterOn[0]!;
      const n = Number(victim.replace(/^w-/, ''));
      code = code === 'a' ? 'b' : 'a';
      let settled = false;
      const swapping = swapTo(bed, `counter-${code}`).finally(() => (settled = true));
      // Past the preload: once a counter instance is paused, released (standby) or adopted (probation), or a new one starts.
      const deadline = Date.now() + 10_000;
      while (!settled && Date.now() < deadline) {
        const s = await bed.client.status().catch(() => undefined);
        const states = s?.computations.find((c) => c.name === COUNTER)?.instances.map((i) => i.state) ?? [];
        if (states.some((st) => st !== 'running')) break;
        await sleep(10);
      }
      const inside = !settled;
      await bed.cluster.killWorker(n, 'SIGKILL');
      const r = await swapping;
      res.notes.push(`kill ${k + 1}: ${victim} killed ${inside ? 'while the swap was under way' : 'after the swap had answered (too late to be mid-swap)'}; swap ${r.result} (${r.detail.slice(0, 120)})`);
      await bed.cluster.startWorker(n);
      await waitFor(async () => {
        const s = await bed.client.status();
        return s.computations.every((c) => c.instances.length > 0 && c.instances.every((i) => i.state === 'running'));
      }, { what: 'every instance running again', timeoutMs: 60_000 }).catch((err: Error) => res.errors.push(err.message));
      if (r.result !== 'ok') code = code === 'a' ? 'b' : 'a';
      await sleep(1_000);
    }
    res.audit = await bed.finish();
    res.notes.push('streams here are at-most-once: the killed instance restarts from its last checkpoint (at most a second old), so what it counted since then is missing from its counts (badCounts) and records in flight to it are lost; `topo status` counts them (lostSinceCheckpoint). The durable phase runs the same kills on at-least-once streams');
  } catch (err) {
    res.errors.push((err as Error).message);
  } finally {
    await bed.stop();
  }
  res.seconds = Math.round((Date.now() - t0) / 1000);
  return res;
}

/**
 * The controller killed with -9 after the preload of a swap, while the upstreams are paused and the old
 * instances on standby (the new version's init takes 1 s: the window), on a supervised topology. Odd kills:
 * started again at once by its supervisor (it finds the swap's journal and aborts it). Even kills: its
 * supervisor killed first, the controller left dead past every lease (the workers roll back by themselves),
 * then `topo up` adopts the live processes and starts a controller. Each time: the outcome must be in history
 * (rolled back), no journal left, every instance running, and the next swap must work.
 */
async function controllerKillPhase(o: Options, log: (s: string) => void): Promise<PhaseResult> {
  const t0 = Date.now();
  const res: PhaseResult = {
    phase: 'controller-kills', seconds: 0, notes: [], errors: [],
    what: `${o.controllerKills} controller kill(s) with -9 mid-swap (after preload, upstreams paused), restarted by its supervisor or, past the leases, by \`topo up\`; then a swap`,
  };
  const bed = await SupervisedBed.start('counter-a', 'source', log);
  const states = new Map<string, string>();
  const hb = bed.client.nc.subscribe(subjects.heartbeatAll, {
    callback: (err, msg) => {
      if (err) return;
      for (const i of decodeJson<Heartbeat>(msg.data).instances) states.set(i.instanceId, i.state);
    },
  });
  try {
    let code: 'a' | 'b' = 'a';
    for (let k = 0; k < o.controllerKills; k++) {
      const late = k % 2 === 1;
      const olds = (await bed.client.status()).computations.find((c) => c.name === COUNTER)!.instances.map((i) => i.instanceId);
      const sentAt = Date.now();
      let settled = false;
      const swapping = swapTo(bed, 'counter-init-slow').finally(() => (settled = true));
      const standby = await waitFor(() => olds.every((id) => states.get(id) === 'standby'), { what: 'the old instances on standby', timeoutMs: 15_000, intervalMs: 5 })
        .then(() => true, () => false);
      const inside = standby && !settled;
      if (late) process.kill(bed.run().supervisorPid!, 'SIGKILL');
      const pid = bed.run().pids.controller;
      process.kill(pid, 'SIGKILL');
      const killedAt = Date.now();
      await waitFor(() => !isAlive(pid), { what: 'the controller gone' });
      let how = 'started again by its supervisor';
      if (late) {
        await sleep(6_000); // past the swap lease and the pause lease
        const up = await bed.up();
        how = `dead ${Math.round((Date.now() - killedAt) / 1000)} s (supervisor too), then \`topo up\` (${up.how}: started ${up.started.join(', ') || 'nothing'})`;
      }
      const r = await swapping;
      const entry = await waitFor(async () => (await bed.client.history(COUNTER)).filter((e) => e.action === 'swap' && e.at >= sentAt).at(-1),
        { what: 'the outcome in history', timeoutMs: 30_000, intervalMs: 250 }).catch((err: Error) => (res.errors.push(err.message), undefined));
      const recordedMs = Date.now() - killedAt;
      await waitFor(async () => (await bed.client.status()).computations.every((c) => c.instances.length > 0 && c.instances.every((i) => i.state === 'running')),
        { what: 'every instance running again', timeoutMs: 60_000 }).catch((err: Error) => res.errors.push(err.message));
      if (entry?.result !== 'rolled-back') res.errors.push(`kill ${k + 1}: history says ${entry ? entry.result : 'nothing'} for the interrupted swap`);
      code = code === 'a' ? 'b' : 'a';
      const next = await swapTo(bed, `counter-${code}`);
      if (next.result !== 'ok') res.errors.push(`kill ${k + 1}: the swap after it: ${next.result} (${next.detail})`);
      res.notes.push(`kill ${k + 1}: ${inside ? 'after preload, upstreams paused, old instances on standby' : 'NOT mid-swap (the swap had answered)'}; ${how}; ` +
        `the client got ${r.result}; history: ${entry?.result ?? '?'} (steps ${(entry?.steps ?? []).map((st) => st.step).join(' > ')}; ${entry?.steps?.find((st) => st.step === 'abort')?.detail ?? 'no abort step'}), recorded within ${recordedMs} ms of the kill; ` +
        `next swap ${next.result} in ${next.ms} ms`);
      log(`  ${res.notes.at(-1)}`);
      await sleep(1_000);
    }
    res.audit = await bed.finish();
  } catch (err) {
    res.errors.push((err as Error).message);
  } finally {
    hb.unsubscribe();
    await bed.stop();
  }
  res.seconds = Math.round((Date.now() - t0) / 1000);
  return res;
}

async function durableKillPhase(o: Options, log: (s: string) => void): Promise<PhaseResult> {
  const r = await durablePhase(o.durableKills, log);
  const sorted = [...r.recoveriesMs].sort((a, b) => a - b);
  const pct = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return {
    phase: 'durable', what: r.what, seconds: r.seconds,
    audit: { lost: r.lost, duplicated: 0, reordered: 0, badCounts: r.countsOff, records: r.records, keys: 100, examples: [] },
    notes: [
      ...r.notes,
      `duplicates at the output (records produced again after a restart, same producer id and sequence: a reader skips them): ${r.duplicatesAtOutput}`,
      `output flowing again after a kill: p50 ${pct(0.5)} ms, max ${sorted.at(-1) ?? 0} ms (the harness restarts no worker: the controller waits for the 5 s lease)`,
    ],
    errors: r.errors,
  };
}

async function natsRestartChaosPhase(o: Options, log: (s: string) => void): Promise<PhaseResult> {
  const r = await natsRestartPhase(o.natsRestarts, log);
  const sorted = [...r.recoveriesMs].sort((a, b) => a - b);
  return {
    phase: 'nats-restart', what: r.what, seconds: r.seconds,
    audit: { lost: r.lost, duplicated: 0, reordered: 0, badCounts: r.countsOff, records: r.records, keys: 100, examples: [] },
    notes: [
      ...r.notes,
      `output flowing again after a restart: ${r.recoveriesMs.join(', ')} ms (max ${sorted.at(-1) ?? 0} ms)`,
    ],
    errors: r.errors,
  };
}

// ---- report ----------------------------------------------------------------------

/** Phase results kept beside the report, so a run of some phases keeps the others' latest figures. */
function phasesOf(out: string, fresh: PhaseResult[]): PhaseResult[] {
  let old: PhaseResult[] = [];
  try {
    old = JSON.parse(readFileSync(out.replace(/\.md$/, '') + '.json', 'utf8')) as PhaseResult[];
  } catch {
    /* first run */
  }
  return PHASES.flatMap((p) => fresh.find((r) => r.phase === p) ?? old.find((r) => r.phase === p) ?? []);
}

function report(o: Options, results: PhaseResult[], command: string, startedAt: Date, load: number): string {
  const int = (n: number) => n.toLocaleString('en-US');
  const lines = [
    '# topo chaos results',
    '',
    'Generated by `bench/chaos/main.ts` (`npm run chaos`); do not edit by hand.',
    '',
    `- Date: ${startedAt.toISOString()}`,
    `- Command: \`${command}\``,
    `- Sizes: fuzz ${int(o.fuzz)} messages at ${int(o.rate)}/s (seed ${o.seed}); swaps ${o.swaps}; worker kills ${o.workerKills}; controller kills ${o.controllerKills}; durable kills ${o.durableKills}; nats-server restarts ${o.natsRestarts}; phases ${o.phases.join(', ')}`,
    `- Machine: ${cpus().length} CPUs, Node ${process.version}; 1-minute load average before the run: ${load.toFixed(2)}`,
    '- Full size: `npm run chaos` (10^6 fuzzed messages, 100 swaps, 1 worker kill, 2 controller kills: one restarted by its supervisor, one by `topo up` past the leases, 10 durable kills, 3 nats-server restarts). Short run: `npm run chaos -- --fuzz 20000 --swaps 12`.',
    '',
    '- Each phase below names the run it comes from (a run of some phases keeps the latest figures of the others).',
    '',
    '| phase | what | run | seconds | records | lost | duplicated | out of order | counts off | errors |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const a = r.audit;
    lines.push(`| ${r.phase} | ${r.what} | ${r.date?.slice(0, 16) ?? ''} \`${r.command ?? ''}\` | ${r.seconds} | ${a ? int(a.records) : '-'} | ${a ? int(a.lost) : '-'} | ${a ? int(a.duplicated) : '-'} | ${a ? int(a.reordered) : '-'} | ${a ? int(a.badCounts) : '-'} | ${r.errors.length} |`);
  }
  lines.push('', '"records": records the real source published (made-up keys of the fuzz excluded). "counts off": output records whose count is not the number of records of that key before it plus one (state lost or counted twice).', '');
  for (const r of results) {
    lines.push(`## ${r.phase}`, '', `- run: ${r.date ?? '?'}, \`${r.command ?? '?'}\``, ...r.notes.map((n) => `- ${n}`));
    if (r.audit?.examples.length) lines.push(`- examples: ${r.audit.examples.map((e) => `\`${e}\``).join('; ')}`);
    for (const e of r.errors) lines.push(`- ERROR: ${e.replace(/\n/g, ' ').slice(0, 300)}`);
    lines.push('');
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  // The test harness's clusters run with authentication on, from one operator made here (as the test global setup does).
  if (!process.env.TOPO_TEST_AUTH_DIR) {
    const authDir = mkdtempSync(join(tmpdir(), 'topo-chaos-auth-'));
    await ensureLocalAuth(authDir);
    process.env.TOPO_TEST_AUTH_DIR = authDir;
  }
  const startedAt = new Date();
  const load = loadavg()[0] ?? 0;
  const command = `npm run chaos${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}${['CHAOS_FUZZ', 'CHAOS_FUZZ_RATE', 'CHAOS_SWAPS', 'CHAOS_WORKER_KILLS', 'CHAOS_CONTROLLER_KILLS', 'CHAOS_DURABLE_KILLS', 'CHAOS_NATS_RESTARTS', 'CHAOS_SEED', 'CHAOS_PHASES'].filter((k) => process.env[k]).map((k) => ` (${k}=${process.env[k]})`).join('')}`;
  const log = (s: string) => console.log(s);
  const results: PhaseResult[] = [];
  const run: Record<Phase, (o: Options, log: (s: string) => void) => Promise<PhaseResult>> = {
    fuzz: fuzzPhase, swaps: swapsPhase, 'worker-kills': workerKillPhase, 'controller-kills': controllerKillPhase, durable: durableKillPhase, 'nats-restart': natsRestartChaosPhase,
  };
  for (const p of o.phases) {
    if ((p === 'fuzz' && o.fuzz === 0) || (p === 'swaps' && o.swaps === 0) || (p === 'worker-kills' && o.workerKills === 0) || (p === 'controller-kills' && o.controllerKills === 0) || (p === 'durable' && o.durableKills === 0) || (p === 'nats-restart' && o.natsRestarts === 0)) continue;
    log(`chaos: ${p} ...`);
    const r = await run[p](o, log);
    const a = r.audit;
    log(`chaos: ${p} done in ${r.seconds} s: ${a ? `${a.records} records, lost ${a.lost}, duplicated ${a.duplicated}, out of order ${a.reordered}, counts off ${a.badCounts}` : 'no audit'}${r.errors.length ? `; ${r.errors.length} error(s): ${r.errors[0]}` : ''}`);
    for (const n of r.notes) log(`  ${n}`);
    r.command = command;
    r.date = new Date().toISOString();
    results.push(r);
    const all = phasesOf(o.out, results);
    writeFileSync(o.out.replace(/\.md$/, '') + '.json', JSON.stringify(all, null, 1) + '\n');
    writeFileSync(o.out, report(o, all, command, startedAt, load) + '\n');
  }
  log(`chaos: wrote ${o.out}`);
  process.exit(0);
}

async function crash(why: string): Promise<never> {
  console.error(`chaos: ${why}`);
  await Promise.all([...running].map((b) => b.stop()));
  process.exit(1);
}
process.on('uncaughtException', (err) => void crash(`uncaught: ${err.stack ?? err.message}`));
process.on('unhandledRejection', (err) => void crash(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`));
process.on('SIGINT', () => void crash('interrupted'));
process.on('SIGTERM', () => void crash('terminated'));

main().catch((err: unknown) => crash((err as Error).stack ?? String(err)));
