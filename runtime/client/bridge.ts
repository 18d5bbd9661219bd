/**
 * Bridges: producers and consumers outside the controller (PROTOCOL.md,
 * "Bridges"), for scripts and services that feed or read a topology.
 *
 * A BridgeProducer registers with the controller, renews its lease by
 * heartbeat and answers the `pause` / `resume` control ops on
 * `topo.bridge.ctl.<id>` like an upstream instance: a swap, scale or fusion
 * change of a computation reading one of its streams holds its output (and
 * nothing is lost). Batching, partitioning and credit accounting are the
 * worker's own (runtime/worker/producer.ts StreamProducer), so a bridge owes
 * credit like any producer; `produce()` resolves once the record may be
 * buffered, i.e. it waits while the producer is blocked by credit or its
 * held output is full.
 *
 * A BridgeConsumer joins a consumer group on one stream: the controller
 * lists the group in topo_state, so producers count it in flow control, and
 * the consumer returns credit for each record once the iteration asks for
 * the next one (the record has been handled).
 */
import { randomBytes } from 'node:crypto';
import { badTraceId, isTraceId } from '../../protocol/trace.js';
import { hostname } from 'node:os';
import type { StreamType } from '../../protocol/types.js';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import {
  BadRequestError, NAME_PATTERN, NotFoundError, TopoError, buckets, decodeBatch, isId, packr, schemas, subjects,
  type BridgeConsumerRegistration, type BridgeGrouping, type BridgeHeartbeat, type BridgeProducerRegistration, type BridgeRegisterReply,
  type BridgeStats, type PauseReply, type WireRecord, type WorkerControl,
} from '../../protocol/index.js';
import { call, encodeJson, serve } from '../transport/rpc.js';
import { TopologyView } from '../worker/topology.js';
import { StreamProducer, DEFAULT_WINDOW } from '../worker/producer.js';
import { CreditBook } from '../worker/creditBook.js';

/** How long a pause holds output without renewal when the request names no lease (PROTOCOL.md). */
const DEFAULT_PAUSE_LEASE_MS = 5_000;
/** The stall rule is checked this often (PROTOCOL.md, flow control). */
const STALL_CHECK_MS = 1_000;
/** A consumer returns what it owes at least this often while records keep coming. */
const CREDIT_FLUSH_MS = 8;

export interface BridgeLog {
  warn(msg: string): void;
}

const quiet: BridgeLog = { warn: () => undefined };

function checkId(id: string): void {
  if (!isId(id)) throw new BadRequestError(`invalid bridge id ${JSON.stringify(id)}: use 1-128 letters, digits, "_" or "-"`);
}
function checkStream(what: string, name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new BadRequestError(`invalid ${what} name ${JSON.stringify(name)}: must start with a letter and contain only letters, digits, "_" or "-"`);
  }
}

/** Wakes waiters on any change; each wait also ends after a timeout, so a missed wake only costs that much. */
class Signal {
  private waiters: (() => void)[] = [];
  wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(t);
        self.waiters = self.waiters.filter((f) => f !== done);
        resolve();
      }
      this.waiters.push(done);
    });
  }
}

// ---- producer ------------------------------------------------------------------

export interface BridgeProducerOptions {
  /** Producer id (the batches' `src`), unique in the topology; default `bridge-<16 hex>`. */
  id?: string;
  /** The streams it produces to. */
  streams: string[];
  /** Credit window per consumer group, in records (default 65536, as workers). */
  window?: number;
  /** Where warnings go (a pause lease that expired, a group reset by the stall rule). */
  log?: BridgeLog;
  /** How long registration may take (default 10 s). */
  timeoutMs?: number;
  /**
   * Types of its typed streams (PROTOCOL.md, Typed streams): a value is encoded at produce() (one that does not fit
   * throws, naming the field). TopoClient.producer() fills this from desired state.
   */
  types?: ReadonlyMap<string, StreamType>;
}

export interface BridgeProducerStats {
  /** Records passed to produce(). */
  produced: number;
  /** Records published. */
  published: number;
  /** Records produced and not published yet (held by a pause, or blocked by credit). */
  pending: number;
  /** The largest credit debt of any consumer group, over all streams. */
  debt: number;
  /** Held by a pause now. */
  paused: boolean;
  /** Pauses received (renewals included). */
  pauses: number;
  /** Times produce() had to wait (blocked by credit, or held output full). */
  waits: number;
  /** Credits that were not valid and were ignored. */
  malformedCredits: number;
}

export class BridgeProducer {
  readonly id: string;
  readonly streams: readonly string[];
  private readonly producers = new Map<string, StreamProducer>();
  private readonly view = new TopologyView();
  private readonly signal = new Signal();
  private readonly startedAt = Date.now();
  private subs: { unsubscribe(): void }[] = [];
  private timers: NodeJS.Timeout[] = [];
  private lease: NodeJS.Timeout | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private produced = 0;
  private pauses = 0;
  private waits = 0;
  private malformedCredits = 0;

  private readonly types: ReadonlyMap<string, StreamType> | undefined;

  private constructor(private readonly nc: NatsConnection, opts: BridgeProducerOptions, private readonly log: BridgeLog) {
    this.id = opts.id ?? `bridge-${randomBytes(8).toString('hex')}`;
    this.streams = [...new Set(opts.streams)];
    this.types = opts.types?.size ? opts.types : undefined;
  }

  /** Registers a producer and starts its heartbeat; resolves once the controller has listed it. */
  static async start(nc: NatsConnection, opts: BridgeProducerOptions): Promise<BridgeProducer> {
    if (!Array.isArray(opts.streams) || opts.streams.length === 0) throw new BadRequestError('a bridge producer needs at least one stream');
    for (const s of opts.streams) checkStream('stream', s);
    if (opts.id !== undefined) checkId(opts.id);
    if (opts.window !== undefined && !(Number.isSafeInteger(opts.window) && opts.window > 0)) throw new BadRequestError(`window must be a positive integer, got ${opts.window}`);
    const p = new BridgeProducer(nc, opts, opts.log ?? quiet);
    try {
      await p.open(opts);
    } catch (err) {
      p.teardown();
      throw err;
    }
    return p;
  }

  private async open(opts: BridgeProducerOptions): Promise<void> {
    const kv = await new Kvm(this.nc).open(buckets.state);
    await this.view.watch(kv);
    for (const stream of this.streams) {
      this.producers.set(stream, new StreamProducer({
        nc: this.nc, stream, producerId: this.id, view: this.view, window: opts.window ?? DEFAULT_WINDOW,
        onUnblocked: () => this.signal.wake(),
        onStallReset: (group, owed) => this.log.warn(`bridge producer ${this.id}: consumer group ${group} gave no credit for 5 s while ${owed} record(s) were owed; presumed gone, its debt reset`),
      }));
    }
    // Credits: an invalid one is ignored (and counted), as by any producer.
    const credits: Subscription = this.nc.subscribe(subjects.credit(this.id), {
      callback: (err, msg: Msg) => {
        if (err) return;
        let c: unknown;
        try {
          c = packr.unpack(msg.data);
        } catch {
          this.malformedCredits++;
          return;
        }
        const r = schemas.credit.safeParse(c);
        if (!r.success) {
          if (!(c && typeof c === 'object' && (c as { n?: unknown }).n === 0)) this.malformedCredits++;
          return;
        }
        for (const p of this.producers.values()) p.credit(r.data.g, r.data.n);
        this.signal.wake();
      },
    });
    this.subs.push({ unsubscribe: () => credits.unsubscribe() });
    // Control before registering: a swap may pause it as soon as the controller lists it.
    this.subs.push(serve<WorkerControl, object>(this.nc, subjects.bridgeControl(this.id), (req) => this.onControl(req), {
      schema: schemas.bridge.control, what: 'bridge control',
    }));
    await this.nc.flush();
    const reply = await call<BridgeRegisterReply>(this.nc, subjects.bridgeRegister, this.registration(), opts.timeoutMs ?? 10_000);
    this.timers.push(setInterval(() => this.heartbeat(), reply.heartbeatMs));
    this.timers.push(setInterval(() => {
      const now = Date.now();
      for (const p of this.producers.values()) p.checkStall(now);
      this.signal.wake();
    }, STALL_CHECK_MS));
    for (const t of this.timers) t.unref();
  }

  private registration(): BridgeProducerRegistration {
    return { kind: 'producer', id: this.id, streams: [...this.streams], host: hostname().slice(0, 255), pid: process.pid, lang: 'ts', startedAt: this.startedAt };
  }

  private heartbeat(): void {
    const s = this.stats();
    const stats: BridgeStats = { records: s.published, pending: s.pending, debt: s.debt, paused: s.paused };
    const hb: BridgeHeartbeat = { ...this.registration(), at: Date.now(), stats };
    try {
      this.nc.publish(subjects.bridgeHeartbeat(this.id), encodeJson(hb));
    } catch {
      /* closed */
    }
  }

  private async onControl(req: WorkerControl): Promise<object> {
    if (req.op !== 'pause' && req.op !== 'resume') throw new BadRequestError(`a bridge producer answers pause and resume, not ${req.op}`);
    if (req.instanceId !== this.id) throw new NotFoundError(`producer ${req.instanceId} is not this bridge (${this.id})`);
    if (req.op === 'resume') {
      this.resumeOutput();
      return {};
    }
    this.pauses++;
    const held = (req.streams ?? [...this.producers.keys()]).map((s) => this.producers.get(s)).filter((p): p is StreamProducer => p !== undefined);
    for (const p of held) p.hold();
    // A lease: without renewal or resume, output resumes by itself (a controller that died cannot hold it for ever).
    const leaseMs = req.leaseMs ?? DEFAULT_PAUSE_LEASE_MS;
    if (this.lease) clearTimeout(this.lease);
    this.lease = setTimeout(() => {
      this.lease = undefined;
      this.log.warn(`bridge producer ${this.id}: pause lease of ${leaseMs} ms expired without resume; resuming output`);
      this.resumeOutput();
    }, leaseMs);
    // What was published before the fence must be on the server before we report it.
    await this.nc.flush();
    const reply: PauseReply = { producer: this.id, fences: {}, partitionFences: {}, partitionAgesMs: {} };
    for (const p of held) {
      reply.fences[p.stream] = p.lastPublishedSeq;
      reply.partitionFences![p.stream] = p.partitionFences;
      reply.partitionAgesMs![p.stream] = p.partitionAgesMs;
    }
    return reply;
  }

  private resumeOutput(): void {
    if (this.lease) clearTimeout(this.lease);
    this.lease = undefined;
    for (const p of this.producers.values()) p.release();
    this.signal.wake();
  }

  private producerOf(stream: string): StreamProducer {
    const p = this.producers.get(stream);
    if (!p) throw new BadRequestError(`"${stream}" is not a stream of bridge producer ${this.id} (its streams: ${this.streams.join(', ')})`);
    return p;
  }

  /**
   * Produces one record. Resolves at once while output may be buffered; waits
   * while the stream is blocked (a consumer group owes more than the window)
   * or held by a pause with its buffer full.
   */
  async produce(stream: string, key: string, value: unknown, traceId?: string): Promise<void> {
    if (this.closed) throw new TopoError(`bridge producer ${this.id} is closed`);
    if (typeof key !== 'string') throw new BadRequestError(`key must be a string, got ${typeof key}`);
    // Consumers drop a trace that is not a well-formed id (PROTOCOL.md, Traces): refused here, where it is a caller's mistake.
    if (traceId !== undefined && !isTraceId(traceId)) throw new BadRequestError(`produce("${stream}"): ${badTraceId(traceId)}`);
    const p = this.producerOf(stream);
    const t = this.types?.get(stream);
    p.produce(key, t ? t.encode(value, `produce("${stream}")`) : value, traceId);
    this.produced++;
    if (!p.isBlocked()) return;
    this.waits++;
    while (p.isBlocked() && !this.nc.isClosed()) await this.signal.wait(50);
  }

  /** Resolves once everything produced so far is published (after a pause: once resumed) and on the server. */
  async flush(): Promise<void> {
    for (;;) {
      let pending = 0;
      for (const p of this.producers.values()) {
        p.flush();
        pending += p.pending;
      }
      if (pending === 0 || this.nc.isClosed()) break;
      await this.signal.wait(20);
    }
    if (!this.nc.isClosed()) await this.nc.flush();
  }

  /** The largest credit debt of any consumer group on `stream` (or on any stream). */
  debt(stream?: string): number {
    let max = 0;
    for (const p of stream ? [this.producerOf(stream)] : this.producers.values()) {
      // StreamProducer keeps its books private; read them for the figure (tests, status).
      const owed = (p as unknown as { owed: Map<string, number> }).owed;
      for (const n of owed.values()) max = Math.max(max, n);
    }
    return max;
  }

  get paused(): boolean {
    for (const p of this.producers.values()) if (p.isHeld) return true;
    return false;
  }

  stats(): BridgeProducerStats {
    let published = 0, pending = 0;
    for (const p of this.producers.values()) {
      published += p.published;
      pending += p.pending;
    }
    return {
      produced: this.produced, published, pending, debt: this.debt(), paused: this.paused,
      pauses: this.pauses, waits: this.waits, malformedCredits: this.malformedCredits,
    };
  }

  /** Publishes what is pending (waiting for a pause to end), leaves the controller's table and stops. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.flush();
      } finally {
        this.closed = true;
        if (!this.nc.isClosed()) await call(this.nc, subjects.bridgeUnregister, { id: this.id }, 5_000).catch(() => undefined);
        this.teardown();
      }
    })();
    return this.closing;
  }

  private teardown(): void {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.lease) clearTimeout(this.lease);
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    for (const p of this.producers.values()) p.close();
    this.view.stop();
    this.signal.wake();
  }
}

// ---- consumer ------------------------------------------------------------------

export interface BridgeConsumerOptions {
  /** Consumer group name (not the name of a computation). Members of one group share the stream as a computation's instances do. */
  group: string;
  /** How the group reads the stream (default shuffle). A key-grouped group has one member (it reads every partition). */
  grouping?: BridgeGrouping;
  /** Member id; default `bridge-<16 hex>`. */
  id?: string;
  /** How long registration may take (default 10 s). */
  timeoutMs?: number;
  /** The stream's type when it is typed: values are decoded (TopoClient.consume() looks it up in desired state). */
  type?: Promise<StreamType | undefined>;
}

/** One record handed to a bridge consumer. */
export interface BridgeRecord {
  stream: string;
  partition: number;
  /** The producer (the batch's `src`). */
  producer: string;
  key: string;
  value: unknown;
  /** On a typed stream, a value that does not decode as its type: why (`value` is then the raw value). */
  typeError?: string;
  timestamp: number;
  seq: number;
  trace?: string;
}

export interface BridgeConsumerStats {
  /** Records received from the stream. */
  received: number;
  /** Records handed to the iteration. */
  handed: number;
  /** Records credited back to their producers. */
  credited: number;
  /** Messages that were not valid batches (skipped; they cannot be credited). */
  malformed: number;
  /** Messages received and not yet handed on. */
  queued: number;
}

export class BridgeConsumer implements AsyncIterable<BridgeRecord> {
  readonly id: string;
  readonly group: string;
  readonly grouping: BridgeGrouping;
  /** Resolves once the member is registered and subscribed (rejects with the controller's refusal). */
  readonly ready: Promise<void>;
  /** The group id this member credits as (`<group>`, or `<group>#<index>` for broadcast), once ready. */
  creditGroup = '';
  private readonly queue: Msg[] = [];
  private head = 0;
  private current: { recs: WireRecord[]; i: number; src: string; partition: number } | undefined;
  private owesFor: string | undefined;
  private readonly signal = new Signal();
  private readonly startedAt = Date.now();
  private sub: Subscription | undefined;
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  private credit: CreditBook;
  private received = 0;
  private handed = 0;
  private credited = 0;
  private malformed = 0;
  private type: StreamType | undefined;

  constructor(private readonly nc: NatsConnection, readonly stream: string, opts: BridgeConsumerOptions) {
    checkStream('stream', stream);
    checkStream('consumer group', opts.group);
    if (opts.id !== undefined) checkId(opts.id);
    const grouping = opts.grouping ?? 'shuffle';
    if (!['shuffle', 'key', 'broadcast'].includes(grouping)) throw new BadRequestError(`grouping must be "shuffle", "key" or "broadcast", got ${JSON.stringify(grouping)}`);
    this.id = opts.id ?? `bridge-${randomBytes(8).toString('hex')}`;
    this.group = opts.group;
    this.grouping = grouping;
    this.credit = new CreditBook(() => this.creditGroup, (producer, group, n) => {
      this.credited += n;
      try {
        this.nc.publish(subjects.credit(producer), packr.pack({ g: group, n }));
      } catch {
        /* closed */
      }
    });
    const typed = opts.type ?? Promise.resolve(undefined);
    this.ready = Promise.all([this.open(opts.timeoutMs ?? 10_000), typed.then((t) => (this.type = t), () => undefined)]).then(() => undefined);
    this.ready.catch(() => this.teardown());
  }

  private async open(timeoutMs: number): Promise<void> {
    // Subscribed before registering: once producers count the group, nothing they publish is missed.
    this.sub = this.nc.subscribe(subjects.dataAll(this.stream), {
      ...(this.grouping === 'shuffle' ? { queue: this.group } : {}),
      callback: (err, msg) => {
        if (err) return;
        this.queue.push(msg);
        this.signal.wake();
      },
    });
    await this.nc.flush();
    const reply = await call<BridgeRegisterReply>(this.nc, subjects.bridgeRegister, this.registration(), timeoutMs);
    if (this.closed) return; // closed meanwhile: close() unregisters
    this.creditGroup = reply.creditGroup ?? this.group;
    this.timers.push(setInterval(() => this.heartbeat(), reply.heartbeatMs));
    this.timers.push(setInterval(() => this.credit.flush(), CREDIT_FLUSH_MS));
    for (const t of this.timers) t.unref();
  }

  private registration(): BridgeConsumerRegistration {
    return {
      kind: 'consumer', id: this.id, group: this.group, stream: this.stream, grouping: this.grouping,
      host: hostname().slice(0, 255), pid: process.pid, lang: 'ts', startedAt: this.startedAt,
    };
  }

  private heartbeat(): void {
    const hb: BridgeHeartbeat = { ...this.registration(), at: Date.now(), stats: { records: this.received, credited: this.credited } };
    try {
      this.nc.publish(subjects.bridgeHeartbeat(this.id), encodeJson(hb));
    } catch {
      /* closed */
    }
  }

  /** The next record, or undefined once closed. The record handed before this call is credited now (it has been handled). */
  async next(): Promise<BridgeRecord | undefined> {
    await this.ready;
    if (this.owesFor !== undefined) {
      this.credit.owe(this.owesFor, this.stream, 1);
      this.owesFor = undefined;
    }
    for (;;) {
      if (this.closed) return undefined;
      const c = this.current;
      if (c && c.i < c.recs.length) {
        const r = c.recs[c.i++]!;
        this.handed++;
        this.owesFor = c.src;
        const rec: BridgeRecord = { stream: this.stream, partition: c.partition, producer: c.src, key: r[0], value: r[1], timestamp: r[2], seq: r[3] };
        if (typeof r[4] === 'string') rec.trace = r[4];
        if (this.type) {
          try {
            rec.value = this.type.decode(r[1]);
          } catch (err) {
            rec.typeError = (err as Error).message;
          }
        }
        return rec;
      }
      this.current = undefined;
      if (this.head < this.queue.length) {
        const msg = this.queue[this.head]!;
        this.queue[this.head++] = undefined as unknown as Msg;
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue.splice(0, this.head);
          this.head = 0;
        }
        const partition = Number(msg.subject.slice(msg.subject.lastIndexOf('.') + 1));
        try {
          const b = decodeBatch(msg.data);
          this.received += b.recs.length;
          // An empty batch is owed nothing.
          if (b.recs.length) this.current = { recs: b.recs, i: 0, src: b.src, partition };
        } catch {
          this.malformed++;
        }
        continue;
      }
      // Input ran dry: return everything owed, then wait.
      this.credit.flush();
      await this.signal.wait(100);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<BridgeRecord> {
    return {
      next: async () => {
        const r = await this.next();
        return r === undefined ? { done: true, value: undefined } : { done: false, value: r };
      },
      // Breaking out of the loop ends the membership.
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  stats(): BridgeConsumerStats {
    return { received: this.received, handed: this.handed, credited: this.credited, malformed: this.malformed, queued: this.queue.length - this.head };
  }

  /** Credits the record last handed on, leaves the group and stops. What was received and not handed on is not credited. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.owesFor !== undefined) {
      this.credit.owe(this.owesFor, this.stream, 1);
      this.owesFor = undefined;
    }
    this.credit.flush();
    this.teardown();
    await this.ready.catch(() => undefined);
    if (!this.nc.isClosed()) {
      await this.nc.flush().catch(() => undefined);
      await call(this.nc, subjects.bridgeUnregister, { id: this.id }, 5_000).catch(() => undefined);
    }
  }

  private teardown(): void {
    this.closed = true;
    this.sub?.unsubscribe();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.signal.wake();
  }
}
