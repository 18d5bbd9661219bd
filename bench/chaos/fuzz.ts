/**
 * A seeded (deterministic) generator of hostile messages for a running
 * topology: random bytes and mutated or wrong-typed protocol messages on the
 * data, credit, worker control, heartbeat, register and API subjects.
 * Shared by test/fuzz.test.ts (about 20,000 messages) and `npm run chaos`
 * (10^6).
 *
 * What it never sends, so that what it does to a correct runtime is nothing:
 * - a well-formed control op that is legitimate control: no `stop`, no op
 *   naming a real instance unless the op is malformed (a `swapId` missing
 *   or not a string where one is required: a string swap id could be one the
 *   controller just started, and a worker cannot tell), and no real swap id
 *   (swap ids are made up, so a well-formed commit/abort/renew names a swap
 *   nobody runs);
 * - a well-formed API request naming a real computation (no kill, rollback
 *   or promote of it);
 * - a well-formed heartbeat or register carrying a real worker id (a
 *   heartbeat on a real worker's subject carries a made-up id in its body);
 * - a record with a real key: every key it writes starts with "fz", and no
 *   template contains the bytes "key-", so neither byte flips nor truncation
 *   can make one of the checker's keys ("key-<n>").
 * Well-formed batches with made-up keys (64 of them, so a stateful consumer's
 * state stays bounded) and well-formed credits with huge
 * `n` are sent: they are data and acknowledgements anyone on the bus could
 * send, and a checker that keeps only its own keys is not affected by them.
 */
import { packr, subjects, PARTITIONS } from '../../protocol/index.js';

/** mulberry32: a small fast seeded PRNG; returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What is real in the topology under test (the generator aims at it). */
export interface FuzzTargets {
  /** Streams with consumers (their partitions get garbage batches). */
  streams: string[];
  /** Producer ids (instance ids) whose credit subjects get garbage credits. */
  producers: string[];
  /** Consumer group ids, to make credits that producers would accept. */
  groups: string[];
  /** Real worker ids: their control subjects get malformed ops, their heartbeat subjects garbage. */
  workers: string[];
  /** Real instance ids, used only inside malformed control ops. */
  instances: string[];
  /** Real computation names, used only inside malformed API requests. */
  computations: string[];
}

export interface FuzzMessage {
  subject: string;
  data: Uint8Array;
  /** Which family it came from (data, credit, control, heartbeat, register, api), for counting. */
  kind: FuzzKind;
}

export const FUZZ_KINDS = ['data', 'credit', 'control', 'heartbeat', 'register', 'api'] as const;
export type FuzzKind = (typeof FUZZ_KINDS)[number];

export interface FuzzOptions {
  seed: number;
  /** Probability of an oversized message (100-200 KB; default 0.002). */
  bigShare?: number;
  /** Only these families (default all, in the mix below); for finding which one a problem comes from. */
  kinds?: readonly FuzzKind[];
}

const enc = new TextEncoder();
const json = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v));

class Gen {
  constructor(readonly r: () => number) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.r() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.r() * 256);
    return b;
  }
  /** A made-up id: "fz" and letters/digits, so it can never equal a real id, key or name. */
  id(len = this.int(8, 14)): string {
    const abc = 'abcdfghijmnopqrstuvwxz0123456789';
    let s = 'fz';
    for (let i = 0; i < len; i++) s += abc[Math.floor(this.r() * abc.length)];
    return s;
  }
  /** A string that is bad as an id: spaces, tabs, CR, dots, wildcards, empty, very long, unicode. */
  badString(): string {
    return this.pick([
      '', ' ', 'fz a', 'fz\tb', 'fz\r\nc', 'fz.d', 'fz*', 'fz>', 'fz\u0000e', '\u{1F4A5}fz', 'fz'.repeat(this.int(65, 2600)), '../fz', '$fz', 'fz"q',
    ]);
  }
  /** Any JSON-ish value of the wrong kind. */
  junk(depth = 0): unknown {
    const k = this.int(0, depth > 2 ? 7 : 9);
    switch (k) {
      case 0: return null;
      case 1: return this.pick([Number.NaN, -1, -1e9, 1e308, 0.5, 2 ** 53 + 2, -0, Number.MAX_SAFE_INTEGER]);
      case 2: return this.badString();
      case 3: return this.chance(0.5);
      case 4: return this.id();
      case 5: return this.int(-5, 5);
      case 6: return undefined;
      case 7: return {};
      case 8: return Array.from({ length: this.int(0, 4) }, () => this.junk(depth + 1));
      default: return { [this.id()]: this.junk(depth + 1), op: this.junk(depth + 1) };
    }
  }
  /** Replaces, removes or retypes a few fields of an object. */
  mutateObject(o: Record<string, unknown>, keep: readonly string[] = []): Record<string, unknown> {
    const out: Record<string, unknown> = { ...o };
    const keys = Object.keys(out).filter((k) => !keep.includes(k));
    const n = this.int(1, 3);
    for (let i = 0; i < n && keys.length; i++) {
      const k = this.pick(keys);
      if (this.chance(0.4)) delete out[k];
      else out[k] = this.junk();
    }
    if (this.chance(0.2)) out[this.id()] = this.junk();
    return out;
  }
  /** Flips, inserts, deletes bytes or truncates. */
  mutateBytes(b: Uint8Array): Uint8Array {
    const a = Array.from(b);
    const n = this.int(1, 6);
    for (let i = 0; i < n; i++) {
      const m = this.int(0, 3);
      const at = this.int(0, Math.max(0, a.length - 1));
      if (m === 0 && a.length) a[at] = this.int(0, 255);
      else if (m === 1) a.splice(at, 0, this.int(0, 255));
      else if (m === 2 && a.length) a.splice(at, 1);
      else a.length = this.int(0, a.length);
    }
    return Uint8Array.from(a);
  }
  /**
   * A key of a record that may be valid: one of 64 fixed made-up keys, so the computation's keyed state
   * (which a valid record legitimately grows) stays bounded and RSS measures the runtime, not the user's state.
   */
  poolKey(): string {
    return `fzpool${this.int(0, 63)}`;
  }
  big(): string {
    return 'fz'.repeat(this.int(50_000, 100_000));
  }
}

/** A valid-looking batch with made-up keys (values are {fz: n}, never {seq}). */
function templateBatch(g: Gen, stream: string): Record<string, unknown> {
  const recs = Array.from({ length: g.int(1, 8) }, (_, i) => [g.poolKey(), { fz: g.int(0, 1000) }, Date.now(), i + 1]);
  return { v: 1, src: g.id(8), stream, bseq: g.int(1, 1000), recs };
}

function dataMessage(g: Gen, t: FuzzTargets, big: boolean): FuzzMessage {
  const stream = g.chance(0.9) && t.streams.length ? g.pick(t.streams) : g.id();
  const partition = g.chance(0.95) ? g.int(0, PARTITIONS - 1) : g.pick([PARTITIONS, 999, -1]);
  const subject = `topo.data.${stream}.${partition}`;
  let data: Uint8Array;
  const k = g.int(0, 9);
  if (big) {
    data = packr.pack({ ...templateBatch(g, stream), src: g.chance(0.5) ? g.big() : g.id(), recs: [[g.poolKey(), g.big(), 0, 1]] });
  } else if (k === 0) {
    data = g.bytes(g.int(0, 300));
  } else if (k <= 3) {
    data = g.mutateBytes(packr.pack(templateBatch(g, stream)));
  } else if (k <= 5) {
    // One bad envelope field.
    const b = templateBatch(g, stream);
    const field = g.pick(['src', 'src', 'stream', 'bseq', 'recs', 'v']);
    if (field === 'src') b.src = g.chance(0.7) ? g.badString() : g.junk();
    else if (field === 'bseq') b.bseq = g.pick([-1, Number.NaN, 1.5, 'x', 2 ** 64, null]);
    else if (field === 'recs') b.recs = g.pick<unknown>([null, {}, 'recs', [[1, 2, 3, 4]], [['fzk', 1, 'ts', 'seq']], [['fzk']], [[g.poolKey(), null, 0, 1, 7]], Array.from({ length: 2_000 }, () => [g.poolKey(), 0, 0, 0])]);
    else if (field === 'stream') b.stream = g.junk();
    else b.v = g.junk();
    data = packr.pack(b);
  } else if (k <= 7) {
    data = packr.pack(g.mutateObject(templateBatch(g, stream)));
  } else if (k === 8) {
    // Valid envelope and records with made-up keys: data anyone could publish.
    data = packr.pack(templateBatch(g, stream));
  } else {
    data = packr.pack(g.junk());
  }
  return { subject, data, kind: 'data' };
}

function creditMessage(g: Gen, t: FuzzTargets): FuzzMessage {
  const producer = g.chance(0.8) && t.producers.length ? g.pick(t.producers) : g.id();
  const group = g.chance(0.6) && t.groups.length ? g.pick(t.groups) : g.chance(0.5) ? g.id() : g.junk();
  const k = g.int(0, 5);
  let data: Uint8Array;
  if (k === 0) data = g.bytes(g.int(0, 64));
  else if (k <= 3) data = packr.pack({ g: group, n: g.pick<unknown>([Number.NaN, -1, -1e9, 1e308, Infinity, -Infinity, 0, 0.5, '5', null, undefined, 2 ** 53 + 2, 1e15]) });
  else if (k === 4) data = g.mutateBytes(packr.pack({ g: group, n: g.int(1, 100) }));
  else data = packr.pack(g.junk());
  return { subject: subjects.credit(producer), data, kind: 'credit' };
}

function controlMessage(g: Gen, t: FuzzTargets, big: boolean): FuzzMessage {
  const worker = g.chance(0.85) && t.workers.length ? g.pick(t.workers) : g.id();
  const real = () => (t.instances.length ? g.pick(t.instances) : g.id());
  const swapId = () => g.id(10);
  let body: unknown;
  const k = g.int(0, 13);
  switch (k) {
    // Required swapId missing or of the wrong type (the issue: abort without one destroyed every instance).
    case 0: body = { op: 'abort' }; break;
    case 1: body = { op: 'commit' }; break;
    case 2: body = { op: g.pick(['abort', 'commit', 'renew']), swapId: g.pick<unknown>(['', null, 7, {}, [], g.badString()]), reason: g.junk(), leaseMs: g.junk() }; break;
    case 3: body = { op: 'release', instanceId: real(), export: 'memory' }; break; // no swapId
    // A real instance only with a swapId that is not a string: any string could be a swap the controller just started.
    case 4: body = { op: 'release', instanceId: real(), swapId: g.pick<unknown>([null, 7, {}, [], true]), export: g.pick(['memory', 'disk', 7]) }; break;
    // Well-formed, but naming a swap nobody runs.
    case 5: body = { op: g.pick(['abort', 'commit']), swapId: swapId(), reason: 'fz' }; break;
    case 6: body = { op: 'renew', swapId: swapId(), leaseMs: g.pick([1, 1000, -5, Number.MAX_SAFE_INTEGER]) }; break;
    // Ops on instances that do not exist, or with missing/wrong fields.
    case 7: body = { op: g.pick(['pause', 'resume', 'unassign', 'drain', 'health']), instanceId: g.chance(0.5) ? g.id() : g.junk(), timeoutMs: g.junk(), leaseMs: g.junk() }; break;
    case 8: body = { op: 'assign', assignment: g.chance(0.5) ? g.junk() : g.mutateObject({ instanceId: g.id(), computation: g.id(), version: 1, index: 0, count: 1, sha: g.id(), metadata: {} }) }; break;
    case 9: body = { op: 'adopt', swapId: g.junk(), assignment: g.junk(), from: g.junk(), probation: g.junk() }; break;
    case 10: body = { op: g.pick(['preload', 'nosuch', 'STOPP', '', 42, null]), sha: g.junk(), metadata: g.junk() }; break;
    case 11: body = g.junk(); break;
    case 12: body = { op: g.pick(['release', 'adopt']), instanceId: real(), swapId: g.pick<unknown>([7, null, {}, false]), budgetMs: g.junk(), leaseMs: g.junk() }; break;
    default: {
      const raw = g.chance(0.5) ? g.bytes(g.int(0, 200)) : g.mutateBytes(json({ op: g.pick(['abort', 'commit', 'release']), swapId: swapId() }));
      return { subject: subjects.workerControl(worker), data: raw, kind: 'control' };
    }
  }
  if (big && body && typeof body === 'object') (body as Record<string, unknown>).pad = g.big();
  return { subject: subjects.workerControl(worker), data: json(body), kind: 'control' };
}

function fakeHeartbeat(g: Gen, id: string): Record<string, unknown> {
  return {
    workerId: id, host: 'fz', pid: g.int(1, 99_999), lang: 'ts', at: Date.now(),
    instances: Array.from({ length: g.int(0, 3) }, () => ({
      instanceId: g.id(), computation: g.id(), version: 1, index: 0, count: 1, state: 'running',
      metrics: { recordsIn: 0, recordsOut: 0, errors: 0, deadLetters: 0, malformed: 0 },
    })),
  };
}

function heartbeatMessage(g: Gen, t: FuzzTargets, big: boolean): FuzzMessage {
  const fake = g.id();
  // A real worker's subject is used only with a made-up id in the body (or garbage).
  const subjectId = g.chance(0.2) && t.workers.length ? g.pick(t.workers) : g.chance(0.9) ? fake : g.pick(['fz fz', 'fz\tq', 'fz'.repeat(300)]);
  const k = g.int(0, 6);
  let data: Uint8Array;
  if (k === 0) data = g.bytes(g.int(0, 200));
  else if (k === 1) data = json(fakeHeartbeat(g, fake));
  else if (k <= 3) data = json(g.mutateObject(fakeHeartbeat(g, fake), ['workerId']));
  else if (k === 4) data = g.mutateBytes(json(fakeHeartbeat(g, fake)));
  else if (k === 5) {
    const hb = fakeHeartbeat(g, fake);
    (hb.instances as Record<string, unknown>[]).push({ instanceId: g.badString(), lastError: 'fz'.repeat(g.int(10, 2_000)), metrics: g.junk(), state: g.junk() });
    data = json(hb);
  } else data = json(g.junk());
  if (big) data = json({ ...fakeHeartbeat(g, fake), instances: [{ instanceId: g.id(), lastError: g.big(), metrics: {}, state: 'running' }] });
  return { subject: `topo.worker.hb.${subjectId}`, data, kind: 'heartbeat' };
}

function registerMessage(g: Gen, big: boolean): FuzzMessage {
  const req = { workerId: g.id(), host: 'fz', pid: g.int(1, 99_999), lang: 'ts', startedAt: Date.now() };
  const k = g.int(0, 4);
  let data: Uint8Array;
  if (k === 0) data = g.bytes(g.int(0, 120));
  else if (k === 1) data = json(req); // a fresh made-up worker that will never heartbeat
  else if (k <= 3) data = json(g.mutateObject(req));
  else data = json({ ...req, workerId: g.badString(), host: g.junk(), lang: g.pick(['go', 'TS', '', null]) });
  if (big) data = json({ ...req, host: g.big() });
  return { subject: subjects.register, data, kind: 'register' };
}

const VERBS = ['deploy', 'kill', 'swap', 'rollback', 'promote', 'history', 'status', 'workers', 'nosuch', 'swap.x', ''] as const;

function apiMessage(g: Gen, t: FuzzTargets, big: boolean): FuzzMessage {
  const verb = g.pick(VERBS);
  const subject = verb === '' ? 'topo.api' : subjects.api(verb);
  // A real name only where the request is otherwise malformed.
  const realName = () => (t.computations.length ? g.pick(t.computations) : g.id());
  let body: unknown;
  const k = g.int(0, 7);
  switch (k) {
    case 0: body = g.junk(); break;
    case 1: body = { name: g.id() }; break; // unknown computation: NOT_FOUND
    case 2: body = { name: g.badString() }; break;
    case 3: body = { name: realName(), sha: g.pick<unknown>([7, null, '', g.badString()]), canary: g.pick<unknown>([-5, 'x', 1e9, Number.NaN]) }; break;
    case 4: body = { name: realName(), probation: g.junk(), dryRun: g.pick<unknown>(['yes', 1]) }; break;
    case 5: body = { lang: g.pick<unknown>(['ts', 'go', 7]), sha: g.id(64), instances: g.pick<unknown>([0, -1, 1e9, 'two']), metadata: g.junk() }; break;
    case 6: body = { name: realName(), version: g.pick<unknown>([-1, 'x', null, 1.5]) }; break;
    default: {
      const raw = g.chance(0.5) ? g.bytes(g.int(0, 200)) : g.mutateBytes(json({ name: g.id(), sha: g.id(64) }));
      return { subject, data: raw, kind: 'api' };
    }
  }
  if (verb === 'rollback' || verb === 'promote' || verb === 'kill') {
    // Never a well-formed request on a real computation: these take only made-up names.
    if (body && typeof body === 'object' && t.computations.includes((body as Record<string, unknown>).name as string)) (body as Record<string, unknown>).name = g.id();
  }
  if (big && body && typeof body === 'object') (body as Record<string, unknown>).pad = g.big();
  return { subject, data: json(body), kind: 'api' };
}

/**
 * `count` hostile messages, the same sequence for the same seed and targets.
 * Mix: data 30%, credit 15%, control 15%, heartbeat 15%, register 10%, api 15%.
 */
export function* fuzzMessages(count: number, targets: FuzzTargets, opts: FuzzOptions): Generator<FuzzMessage> {
  const g = new Gen(seededRandom(opts.seed));
  const bigShare = opts.bigShare ?? 0.002;
  const only = opts.kinds?.length ? opts.kinds : undefined;
  for (let i = 0; i < count; i++) {
    const big = g.chance(bigShare);
    // With `kinds`, one of them at random; otherwise the mix (the thresholds stand for the families in order).
    const x = only ? [0, 0.3, 0.45, 0.6, 0.75, 0.85][FUZZ_KINDS.indexOf(g.pick(only))]! : g.r();
    if (x < 0.3) yield dataMessage(g, targets, big);
    else if (x < 0.45) yield creditMessage(g, targets);
    else if (x < 0.6) yield controlMessage(g, targets, big);
    else if (x < 0.75) yield heartbeatMessage(g, targets, big);
    else if (x < 0.85) yield registerMessage(g, big);
    else yield apiMessage(g, targets, big);
  }
}

/** Anything with a NATS-like publish (a connection, or a test double). */
export interface Publisher {
  publish(subject: string, data: Uint8Array, opts?: { reply?: string }): void;
  flush(): Promise<void>;
}

export interface FuzzRun {
  sent: number;
  byKind: Record<FuzzKind, number>;
  /** Publishes refused by the client (e.g. an illegal subject); counted, not fatal. */
  refused: number;
  ms: number;
}

/**
 * Publishes `count` fuzzed messages at about `perSecond`, flushing every
 * `perSecond / 20` messages, so the flood does not just overflow the
 * receivers' buffers (which would measure the slow-consumer limit instead).
 */
export async function publishFuzz(nc: Publisher, count: number, targets: FuzzTargets, opts: FuzzOptions & { perSecond?: number; onProgress?: (sent: number) => void }): Promise<FuzzRun> {
  const perSecond = opts.perSecond ?? 2_500;
  const slice = Math.max(1, Math.round(perSecond / 20));
  const started = Date.now();
  const run: FuzzRun = { sent: 0, byKind: Object.fromEntries(FUZZ_KINDS.map((k) => [k, 0])) as Record<FuzzKind, number>, refused: 0, ms: 0 };
  let n = 0;
  for (const m of fuzzMessages(count, targets, opts)) {
    try {
      // Some with a reply subject: the API and register handlers then answer (into the void).
      nc.publish(m.subject, m.data, n % 7 === 0 ? { reply: `_INBOX.fz.${n}` } : undefined);
      run.sent++;
      run.byKind[m.kind]++;
    } catch {
      run.refused++;
    }
    if (++n % slice === 0) {
      await nc.flush();
      const due = started + (n / perSecond) * 1000;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      opts.onProgress?.(n);
    }
  }
  await nc.flush();
  run.ms = Date.now() - started;
  return run;
}
