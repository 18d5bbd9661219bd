/**
 * The topo client library: what the CLI (and tests, and anyone scripting topo)
 * uses to deploy, kill, inspect and watch a running topology over NATS.
 */
import { basename } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, DeliverPolicy, type Consumer, type JsMsg } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { connectNats, type TlsFiles } from '../transport/connect.js';
import { call } from '../transport/rpc.js';
import { badTraceId, isTraceId } from '../../protocol/trace.js';
import {
  BadRequestError,
  NAME_PATTERN,
  NotFoundError,
  TimeoutError,
  TopoError,
  buckets, kvKeys,
  decodeBatch,
  jsStreams,
  packr,
  subjects,
  type ComputationRecord,
  type DeadLetter,
  type DeployReply,
  type DeployRequest,
  type HistoryEntry,
  type HistoryReply,
  type HistoryRequest,
  type KillRequest,
  type PromoteRequest,
  type RollbackRequest,
  type ScaleReply,
  type ScaleRequest,
  type FuseRequest,
  type FusionReply,
  type SplitRequest,
  type StatusReply,
  type SwapReply,
} from '../../protocol/index.js';
import type { BundledComputation } from './bundle.js';
import { bundleSource } from './hostedBundle.js';
import { withProgress, type OnProgress } from './progress.js';
import { StreamType } from '../../protocol/types.js';
import { BridgeConsumer, BridgeProducer, type BridgeConsumerOptions, type BridgeProducerOptions } from './bridge.js';
import {
  watchSwapOutcome,
  SWAP_API_TIMEOUT_MS, canarySummary, checkSwapOptions, checkSwapTarget, swapRequest, swapTimeoutMs,
  type ComputationStatusView, type ScaleOutcome, type StatusView, type SwapOptions, type SwapOutcome,
} from './swap.js';

/** One record seen on a stream by `tap`. */
export interface TapRecord {
  stream: string;
  partition: number;
  /** Producer instance id (the batch's `src`). */
  producer: string;
  key: string;
  value: unknown;
  timestamp: number;
  seq: number;
  trace?: string;
  /** On a typed stream, a value that does not decode as its type: why (`value` is then the raw value). */
  typeError?: string;
}

/** A message on a stream subject that is not a valid batch; `malformed` says why. */
export interface TapMalformed {
  malformed: string;
  subject: string;
  partition: number;
}

export type TapItem = TapRecord | TapMalformed;

export function isMalformed<T extends object>(item: T | { malformed: string }): item is { malformed: string } {
  return typeof (item as { malformed?: unknown }).malformed === 'string';
}

/** A dead letter as stored in TOPO_DLQ, with its JetStream sequence. */
export type DeadLetterEntry = DeadLetter & { seq: number };
/** A message in TOPO_DLQ that could not be decoded as a DeadLetter. */
export interface DeadLetterMalformed {
  malformed: string;
  subject: string;
  seq: number;
}

/** One structured log line of a computation instance. */
export interface LogEntry {
  /** Instance index (from the subject `topo.log.<computation>.<index>`). */
  index: number;
  subject: string;
  /** JetStream sequence in TOPO_LOGS. */
  seq: number;
  /** The pino JSON object; non-JSON lines come as `{ msg: <text> }`. */
  line: Record<string, unknown>;
}

export interface DeployOptions {
  instances?: number;
  /** Reply timeout of the deploy request (ms); deploy waits for every instance's init. */
  timeoutMs?: number;
  /** Gets each step (place, start of each instance, save) as the controller ends it, before the reply. */
  onProgress?: OnProgress;
}

export interface StreamReadOptions {
  /** Keep reading new entries until `signal` aborts (default false: stop at the current end). */
  follow?: boolean;
  /** Only the last N stored entries (default: all stored entries). */
  last?: number;
  signal?: AbortSignal;
}

const textDecoder = new TextDecoder();

function checkName(what: string, name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new BadRequestError(`invalid ${what} name ${JSON.stringify(name)}: must start with a letter and contain only letters, digits, "_" or "-"`);
  }
}

function lastToken(subject: string): string {
  return subject.slice(subject.lastIndexOf('.') + 1);
}

/** How often a tap repeats that it listens (workers hold an announcement for 3 s: runtime/worker/taps.ts). */
const TAP_ANNOUNCE_MS = 1_000;

export class TopoClient {
  private objm: Objm | undefined;
  private stateKv: Promise<KV> | undefined;

  private constructor(readonly nc: NatsConnection, readonly url: string) {}

  /**
   * `creds`: a NATS .creds file (default $TOPO_NATS_CREDS; `topo up` writes
   * the admin one to `.topo/auth/admin.creds`); `tls`: CA / client certificate files for a remote server.
   */
  static async connect(url: string, opts: { name?: string; creds?: string | undefined; tls?: TlsFiles | undefined; inboxPrefix?: string } = {}): Promise<TopoClient> {
    const nc = await connectNats(url, { name: opts.name ?? 'topo-client', creds: opts.creds, tls: opts.tls, ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}) });
    return new TopoClient(nc, url);
  }

  /** Uploads an artifact to the object store unless an object with that sha is already there. */
  async uploadArtifact(bundle: Pick<BundledComputation, 'sha' | 'code'>, description?: string): Promise<void> {
    this.objm ??= new Objm(this.nc);
    const store = await this.objm.create(buckets.artifacts);
    const existing = await store.info(bundle.sha);
    if (existing && !existing.deleted) return;
    await store.putBlob({ name: bundle.sha, ...(description ? { description } : {}) }, bundle.code);
  }

  /** Deploys an already bundled computation (see bundleComputation). */
  async deployBundle(bundle: BundledComputation, opts: DeployOptions & { source?: string } = {}): Promise<ComputationRecord> {
    if (opts.instances !== undefined && (!Number.isInteger(opts.instances) || opts.instances < 1)) {
      throw new BadRequestError(`instances must be a positive integer, got ${opts.instances}`);
    }
    await this.uploadArtifact(bundle, opts.source);
    const reply = await withProgress(this.nc, 'deploy', opts.onProgress, (progress) => {
      const req: DeployRequest = {
        sha: bundle.sha,
        lang: bundle.lang,
        metadata: bundle.metadata,
        ...(opts.instances !== undefined ? { instances: opts.instances } : {}),
        ...(opts.source !== undefined ? { source: opts.source } : {}),
        ...(progress !== undefined ? { progress } : {}),
      };
      return call<DeployReply>(this.nc, subjects.api('deploy'), req, opts.timeoutMs ?? 30_000);
    });
    return reply.computation;
  }

  /**
   * Bundles `file`, validates its metadata (nothing is sent when that fails),
   * uploads the artifact and asks the controller to deploy it.
   */
  async deployFile(file: string, opts: DeployOptions = {}): Promise<ComputationRecord> {
    const bundle = await bundleSource(file);
    return this.deployBundle(bundle, { ...opts, source: basename(file) });
  }

  /** Stops and removes a computation; resolves with the name and the version that was running. */
  async kill(name: string, opts: { timeoutMs?: number } = {}): Promise<{ name: string; version: number }> {
    checkName('computation', name);
    const req: KillRequest = { name };
    const reply = await call<{ name?: unknown; version?: unknown }>(this.nc, subjects.api('kill'), req, opts.timeoutMs ?? 30_000);
    return { name, version: typeof reply.version === 'number' ? reply.version : 0 };
  }

  /** Computations (each with its running canary, if any), the workers and the NATS URL. */
  async status(opts: { timeoutMs?: number } = {}): Promise<StatusView> {
    const reply = await call<StatusReply & { ok?: true }>(this.nc, subjects.api('status'), {}, opts.timeoutMs ?? 10_000);
    const { ok: _ok, ...status } = reply;
    return { ...status, computations: await Promise.all(status.computations.map((c) => this.withCanary(c))) };
  }

  /**
   * StatusReply does not carry canaries; the desired state in KV does. Status
   * must not fail over this decoration, so a KV error leaves it out.
   */
  private async withCanary(c: ComputationStatusView): Promise<ComputationStatusView> {
    if (c.canary !== undefined) return c;
    const rec = await this.computation(c.name).catch(() => undefined);
    return rec?.canary ? { ...c, canary: canarySummary(rec.canary) } : c;
  }

  /** The type a deployed computation (or its canary) declares for `stream`, if any; undefined also when desired state cannot be read. */
  private async streamType(stream: string): Promise<StreamType | undefined> {
    try {
      this.stateKv ??= new Kvm(this.nc).open(buckets.state);
      const kv = await this.stateKv;
      for await (const key of await kv.keys(kvKeys.computationAll)) {
        const rec = (await kv.get(key))?.json<ComputationRecord>();
        const decl = rec?.metadata.types?.[stream] ?? rec?.canary?.metadata.types?.[stream];
        if (decl) return new StreamType(stream, decl);
      }
    } catch {
      this.stateKv = undefined;
    }
    return undefined;
  }

  /** The desired state of one computation as the controller stored it (KV topo_state), or undefined. */
  async computation(name: string): Promise<ComputationRecord | undefined> {
    checkName('computation', name);
    this.stateKv ??= new Kvm(this.nc).open(buckets.state);
    const kv = await this.stateKv.catch((err: unknown) => {
      this.stateKv = undefined;
      throw err;
    });
    const entry = await kv.get(kvKeys.computation(name));
    if (!entry || entry.operation !== 'PUT') return undefined;
    return entry.json<ComputationRecord>();
  }

  /**
   * Replaces the code of the running computation `name` with `file`, live
   * (see SwapOptions for canary, dry run and probation). Bundling and
   * metadata errors are thrown before anything is sent. Resolves with the
   * SwapReply (result 'ok' or 'dry-run'); a swap the controller rolled back
   * throws SwapRolledBackError whose detail is the SwapReply (see swapReplyOf).
   */
  async swap(name: string, file: string, opts: SwapOptions = {}): Promise<SwapOutcome> {
    checkName('computation', name);
    checkSwapOptions(opts);
    const bundle = await bundleSource(file);
    return this.swapBundle(name, bundle, { ...opts, source: basename(file) });
  }

  /** swap() for an already bundled computation. */
  async swapBundle(name: string, bundle: BundledComputation, opts: SwapOptions & { source?: string } = {}): Promise<SwapOutcome> {
    checkName('computation', name);
    checkSwapOptions(opts);
    checkSwapTarget(name, bundle.metadata, opts.source ?? 'the bundle');
    // Uploaded even for a dry run: the controller may check the artifact exists; it is content-addressed, so harmless.
    await this.uploadArtifact(bundle, opts.source);
    return withProgress(this.nc, 'swap', opts.onProgress, (progress) =>
      this.swapCall('swap', { ...swapRequest(name, bundle, opts), ...(progress !== undefined ? { progress } : {}) }, swapTimeoutMs(opts)));
  }

  /**
   * Back to the previous version (or version `to`) through the same swap
   * steps; with a canary running, drops the canary instead.
   */
  async rollback(name: string, opts: { to?: number; timeoutMs?: number; onProgress?: OnProgress } = {}): Promise<SwapOutcome> {
    checkName('computation', name);
    if (opts.to !== undefined && (!Number.isInteger(opts.to) || opts.to < 1)) throw new BadRequestError(`to must be a version number >= 1, got ${opts.to}`);
    return withProgress(this.nc, 'rollback', opts.onProgress, (progress) => {
      const req: RollbackRequest = { name, ...(opts.to !== undefined ? { to: opts.to } : {}), ...(progress !== undefined ? { progress } : {}) };
      return this.swapCall('rollback', req, opts.timeoutMs ?? SWAP_API_TIMEOUT_MS);
    });
  }

  /** Makes the running canary of `name` the version on all keys. */
  async promote(name: string, opts: { timeoutMs?: number; onProgress?: OnProgress } = {}): Promise<SwapOutcome> {
    checkName('computation', name);
    return withProgress(this.nc, 'promote', opts.onProgress, (progress) => {
      const req: PromoteRequest = { name, ...(progress !== undefined ? { progress } : {}) };
      return this.swapCall('promote', req, opts.timeoutMs ?? SWAP_API_TIMEOUT_MS);
    });
  }

  /**
   * Runs `name` on `instances` instances, live: its instances are replaced
   * through the swap steps, each new one taking the keyed state of the
   * partitions it owns. Resolves with result 'unchanged' when it already runs
   * on that many; a scale whose new instances failed is rolled back and
   * throws SwapRolledBackError (see swapReplyOf).
   */
  async scale(name: string, instances: number, opts: { drainBudgetMs?: number; timeoutMs?: number } = {}): Promise<ScaleOutcome> {
    checkName('computation', name);
    if (!Number.isSafeInteger(instances) || instances < 1) throw new BadRequestError(`instances must be a positive integer, got ${instances}`);
    if (opts.drainBudgetMs !== undefined && !(Number.isSafeInteger(opts.drainBudgetMs) && opts.drainBudgetMs > 0)) {
      throw new BadRequestError(`drainBudgetMs must be a positive integer (ms), got ${opts.drainBudgetMs}`);
    }
    const req: ScaleRequest = { name, instances, ...(opts.drainBudgetMs !== undefined ? { drainBudgetMs: opts.drainBudgetMs } : {}) };
    const started = performance.now();
    const sentAt = Date.now();
    const watch = new AbortController();
    const timeoutMs = opts.timeoutMs ?? Math.max(SWAP_API_TIMEOUT_MS, (opts.drainBudgetMs ?? 0) + 30_000);
    const replied = this.apiCall<ScaleReply & { ok?: true }>('scale', req, timeoutMs).then(({ ok: _ok, ...rest }) => rest as ScaleReply);
    // A controller that dies mid-scale never replies: the outcome then comes from history, the placements from desired state.
    const fromHistory = watchSwapOutcome(this, 'scale', req, sentAt, watch.signal).then(async (r): Promise<ScaleReply> => {
      const rec = await this.computation(name).catch(() => undefined);
      const counts = /^(\d+) -> (\d+) instance/.exec(r.steps.find((s) => s.step === 'target')?.detail ?? '');
      return {
        name, result: 'ok', version: r.version, fromInstances: counts ? Number(counts[1]) : 0, instances: rec?.instances ?? instances, placements: rec?.placements ?? [],
        ...(r.pauseMs !== undefined ? { pauseMs: r.pauseMs } : {}), ...(r.loadMs !== undefined ? { loadMs: r.loadMs } : {}), steps: r.steps,
      };
    });
    const reply = await Promise.race([replied, fromHistory]).finally(() => watch.abort());
    return { ...reply, elapsedMs: performance.now() - started };
  }

  /** Runs `names` (and the groups they are in) as one fused chain, live. SwapRolledBackError (with the steps) when it was rolled back. */
  async fuse(names: string[], opts: { timeoutMs?: number } = {}): Promise<FusionReply & { elapsedMs: number }> {
    if (names.length < 2) throw new BadRequestError('name at least two computations to fuse, e.g. `topo fuse parse enrich`');
    for (const n of names) checkName('computation', n);
    const req: FuseRequest = { names };
    return this.fusionCall('fuse', req, names[0]!, opts.timeoutMs ?? SWAP_API_TIMEOUT_MS);
  }

  /** Takes `name` out of its fusion group, live, and keeps it out until `fuse` names it. */
  async split(name: string, opts: { timeoutMs?: number } = {}): Promise<FusionReply & { elapsedMs: number }> {
    checkName('computation', name);
    const req: SplitRequest = { name };
    return this.fusionCall('split', req, name, opts.timeoutMs ?? SWAP_API_TIMEOUT_MS);
  }

  /**
   * A fuse or split, watching the history of `watched` meanwhile, as a swap does: a controller that dies
   * mid-change never replies, so the outcome comes from history once a restarted controller has recorded it.
   */
  private async fusionCall(verb: 'fuse' | 'split', req: FuseRequest | SplitRequest, watched: string, timeoutMs: number): Promise<FusionReply & { elapsedMs: number }> {
    const started = performance.now();
    const sentAt = Date.now();
    const watch = new AbortController();
    const replied = this.apiCall<FusionReply & { ok?: true }>(verb, req, timeoutMs).then(({ ok: _ok, ...rest }) => rest as FusionReply);
    const fromHistory = watchSwapOutcome(this, verb, { name: watched }, sentAt, watch.signal).then(async (r): Promise<FusionReply> => {
      const status = await this.status().catch(() => undefined);
      return { result: 'ok', groups: status?.fusion ?? [], ...(r.pauseMs !== undefined ? { pauseMs: r.pauseMs } : {}), steps: r.steps };
    });
    const reply = await Promise.race([replied, fromHistory]).finally(() => watch.abort());
    return { ...reply, elapsedMs: performance.now() - started };
  }

  /** Deploys, swaps, canaries, promotes, rollbacks and kills of `name`, oldest first. NotFoundError when there are none. */
  async history(name: string, opts: { timeoutMs?: number } = {}): Promise<HistoryEntry[]> {
    checkName('computation', name);
    const req: HistoryRequest = { name };
    const reply = await this.apiCall<HistoryReply>('history', req, opts.timeoutMs ?? 10_000);
    const entries = Array.isArray(reply.entries) ? [...reply.entries] : [];
    if (entries.length === 0) throw new NotFoundError(`no computation named "${name}" was ever deployed (no history)`);
    // Stable sort: entries of the same millisecond keep the controller's order.
    return entries.sort((a, b) => a.at - b.at);
  }

  /**
   * Sends a live-change request and waits for its reply, watching history
   * meanwhile: a controller that dies mid-swap never replies, so the outcome
   * is taken from history once a restarted controller has recorded it, and a
   * controller that stays away is reported as such instead of waiting out the timeout.
   */
  private async swapCall(verb: 'swap' | 'rollback' | 'promote', body: { name: string; sha?: string }, timeoutMs: number): Promise<SwapOutcome> {
    const started = performance.now();
    const sentAt = Date.now();
    const watch = new AbortController();
    const replied = this.apiCall<SwapReply & { ok?: true }>(verb, body, timeoutMs).then((reply) => {
      const { ok: _ok, ...rest } = reply;
      return rest as SwapReply;
    });
    const reply = await Promise.race([replied, watchSwapOutcome(this, verb, body, sentAt, watch.signal)]).finally(() => watch.abort());
    return { ...reply, elapsedMs: performance.now() - started };
  }

  /** The history entries of `name` (empty when there are none), or undefined when the controller does not answer in `timeoutMs`. */
  async historyIfAnswered(name: string, timeoutMs: number): Promise<HistoryEntry[] | undefined> {
    try {
      return await this.history(name, { timeoutMs });
    } catch (err) {
      if (err instanceof NotFoundError) return [];
      if (err instanceof TimeoutError) return undefined;
      throw err;
    }
  }

  /**
   * call() on `topo.api.<verb>`, telling "the controller is down" apart from
   * "the controller runs but predates this verb" (both are no-responders).
   */
  private async apiCall<T extends object>(verb: string, body: object, timeoutMs: number): Promise<T> {
    try {
      return await call<T>(this.nc, subjects.api(verb), body, timeoutMs);
    } catch (err) {
      if (!(err instanceof TimeoutError) || !/nobody answers/.test(err.message)) throw err;
      const controllerUp = await call<object>(this.nc, subjects.api('status'), {}, 2_000).then(() => true, () => false);
      if (!controllerUp) throw err;
      throw new TopoError(
        `the controller does not serve \`${verb}\` (${subjects.api(verb)}): it is older than this client; restart the topology with this version (\`topo down\` then \`topo up\`)`,
        { cause: err },
      );
    }
  }

  /**
   * Every record on `stream` from now on (a plain subscription to all its
   * partitions: it takes no part in flow control). Messages that are not valid
   * batches are yielded as TapMalformed items rather than dropped, so a broken
   * producer is visible. Ends when `signal` aborts or the caller breaks.
   */
  async *tap(stream: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<TapItem> {
    checkName('stream', stream);
    const { signal } = opts;
    if (signal?.aborted) return;
    const sub = this.nc.subscribe(subjects.dataAll(stream));
    // Listened for before the first await: an abort while the stream's type is looked up must end the tap too.
    const onAbort = (): void => sub.unsubscribe();
    signal?.addEventListener('abort', onAbort, { once: true });
    // Producers of a fused stream hand records over in-process and publish them only while someone listens: say so, once a second.
    // A typed stream's values are decoded as its type (PROTOCOL.md, Typed streams), looked up again now and then (a swap may change it).
    let type = await this.streamType(stream);
    let announced = 0;
    const announce = (): void => {
      try {
        this.nc.publish(subjects.tapInterest(stream));
      } catch {
        /* closed: the tap ends with the connection */
      }
      if (++announced % 5 === 0) void this.streamType(stream).then((t) => (type = t));
    };
    announce();
    const announcer = setInterval(announce, TAP_ANNOUNCE_MS);
    try {
      for await (const msg of sub) {
        const partition = Number(lastToken(msg.subject));
        let batch;
        try {
          batch = decodeBatch(msg.data);
        } catch (err) {
          yield { malformed: (err as Error).message, subject: msg.subject, partition };
          continue;
        }
        for (const r of batch.recs) {
          const rec: TapRecord = { stream, partition, producer: batch.src, key: r[0], value: r[1], timestamp: r[2], seq: r[3] };
          if (typeof r[4] === 'string') rec.trace = r[4];
          if (type) {
            try {
              rec.value = type.decode(r[1]);
            } catch (err) {
              rec.typeError = (err as Error).message;
            }
          }
          yield rec;
        }
      }
    } finally {
      clearInterval(announcer);
      signal?.removeEventListener('abort', onAbort);
      sub.unsubscribe();
    }
  }

  /**
   * Every record carrying trace `traceId` from now on, on any stream, in arrival order (PROTOCOL.md,
   * Traces): one subscription to every data subject, announcing a tap on each stream that a deployed
   * computation produces (so fused streams are published too). Only batches whose bytes hold the id are
   * decoded; one of those that is not a valid batch is yielded as TapMalformed. Ends when `signal`
   * aborts or the caller breaks.
   */
  async *tapTrace(traceId: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<TapItem> {
    if (!isTraceId(traceId)) throw new BadRequestError(badTraceId(traceId));
    const { signal } = opts;
    if (signal?.aborted) return;
    const sub = this.nc.subscribe(subjects.dataEveryStream);
    // Listened for before the first await (as in tap).
    const onAbort = (): void => sub.unsubscribe();
    signal?.addEventListener('abort', onAbort, { once: true });
    const needle = Buffer.from(traceId, 'latin1');
    let streams = await this.producedStreams();
    let announced = 0;
    const announce = (): void => {
      try {
        for (const stream of streams.keys()) this.nc.publish(subjects.tapInterest(stream));
      } catch {
        /* closed: the tap ends with the connection */
      }
      // A deploy or swap may add streams or change a type: looked up again now and then.
      if (++announced % 5 === 0) void this.producedStreams().then((s) => (streams = s));
    };
    announce();
    const announcer = setInterval(announce, TAP_ANNOUNCE_MS);
    try {
      for await (const msg of sub) {
        const data = msg.data;
        if (Buffer.from(data.buffer, data.byteOffset, data.byteLength).indexOf(needle) < 0) continue;
        const stream = msg.subject.slice('topo.data.'.length, msg.subject.lastIndexOf('.'));
        const partition = Number(lastToken(msg.subject));
        let batch;
        try {
          batch = decodeBatch(data);
        } catch (err) {
          yield { malformed: (err as Error).message, subject: msg.subject, partition };
          continue;
        }
        const type = streams.get(stream);
        for (const r of batch.recs) {
          if (r[4] !== traceId) continue;
          const rec: TapRecord = { stream, partition, producer: batch.src, key: r[0], value: r[1], timestamp: r[2], seq: r[3], trace: traceId };
          if (type) {
            try {
              rec.value = type.decode(r[1]);
            } catch (err) {
              rec.typeError = (err as Error).message;
            }
          }
          yield rec;
        }
      }
    } finally {
      clearInterval(announcer);
      signal?.removeEventListener('abort', onAbort);
      sub.unsubscribe();
    }
  }

  /** The streams deployed computations (and their canaries) produce, each with its type if it is typed; empty when desired state cannot be read. */
  private async producedStreams(): Promise<Map<string, StreamType | undefined>> {
    const out = new Map<string, StreamType | undefined>();
    try {
      this.stateKv ??= new Kvm(this.nc).open(buckets.state);
      const kv = await this.stateKv;
      for await (const key of await kv.keys(kvKeys.computationAll)) {
        const rec = (await kv.get(key))?.json<ComputationRecord>();
        for (const m of [rec?.metadata, rec?.canary?.metadata]) {
          for (const stream of m?.ostreams ?? []) {
            const decl = m?.types?.[stream];
            if (!out.get(stream)) out.set(stream, decl ? new StreamType(stream, decl) : undefined);
          }
        }
      }
    } catch {
      this.stateKv = undefined;
    }
    return out;
  }

  /** Dead letters of one computation (or all), oldest first, from TOPO_DLQ. */
  async *deadLetters(computation?: string, opts: StreamReadOptions = {}): AsyncGenerator<DeadLetterEntry | DeadLetterMalformed> {
    if (computation !== undefined) checkName('computation', computation);
    const filter = computation === undefined ? subjects.deadLetterAll : subjects.deadLetter(computation);
    for await (const m of this.readJetStream(jsStreams.deadLetters, filter, opts)) {
      let decoded: unknown;
      try {
        decoded = packr.unpack(m.data);
      } catch (err) {
        yield { malformed: `not msgpack: ${(err as Error).message}`, subject: m.subject, seq: m.seq };
        continue;
      }
      const d = decoded as Partial<DeadLetter> | null;
      if (d === null || typeof d !== 'object' || typeof d.computation !== 'string' || typeof d.reason !== 'string') {
        yield { malformed: 'not a dead letter (needs computation and reason)', subject: m.subject, seq: m.seq };
        continue;
      }
      yield { ...(d as DeadLetter), seq: m.seq };
    }
  }

  /**
   * Log lines of a computation's instances from TOPO_LOGS: the last `lines`
   * stored ones (default 50), then, with `follow`, new ones until `signal` aborts.
   */
  async *logs(computation: string, opts: { follow?: boolean; lines?: number; signal?: AbortSignal } = {}): AsyncGenerator<LogEntry> {
    checkName('computation', computation);
    const read = { last: opts.lines ?? 50, follow: opts.follow ?? false, ...(opts.signal ? { signal: opts.signal } : {}) };
    for await (const m of this.readJetStream(jsStreams.logs, subjects.logAll(computation), read)) {
      const text = textDecoder.decode(m.data);
      let line: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse(text);
        line = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { msg: text };
      } catch {
        line = { msg: text };
      }
      yield { index: Number(lastToken(m.subject)), subject: m.subject, seq: m.seq, line };
    }
  }

  /**
   * Reads a JetStream stream filtered by subject with ordered consumers:
   * first the last N stored messages (or all), then new ones when following.
   */
  private async *readJetStream(stream: string, filter: string, opts: StreamReadOptions): AsyncGenerator<JsMsg> {
    const { signal, follow = false, last } = opts;
    if (signal?.aborted) return;
    const jsm = await jetstreamManager(this.nc);
    try {
      await jsm.streams.info(stream);
    } catch (err) {
      if (/not found/i.test((err as Error).message)) {
        throw new NotFoundError(`JetStream stream ${stream} does not exist: is the topo controller running? (\`topo up\`)`, { cause: err });
      }
      throw err;
    }
    const js = jetstream(this.nc);

    let startSeq: number | undefined;
    if (last !== undefined) {
      if (last <= 0) {
        if (!follow) return;
      } else {
        startSeq = await this.seqOfLastN(stream, filter, last);
      }
    }
    const consumer = await js.consumers.get(stream, {
      filter_subjects: filter,
      ...(last !== undefined && last <= 0
        ? { deliver_policy: DeliverPolicy.New }
        : startSeq !== undefined
          ? { opt_start_seq: startSeq }
          : { deliver_policy: DeliverPolicy.All }),
    });
    try {
      // Without follow, stop at what was stored when we looked: at most `last`
      // messages, even if more arrive while we read.
      let remaining = Math.min((await consumer.info(true)).num_pending, last ?? Infinity);
      if (!follow && remaining === 0) return;
      const messages = await consumer.consume({ max_messages: 256 });
      const stop = (): void => void messages.stop();
      signal?.addEventListener('abort', stop, { once: true });
      // An abort during the awaits above came before the listener.
      if (signal?.aborted) stop();
      try {
        for await (const m of messages) {
          yield m;
          remaining--;
          if (!follow && (remaining <= 0 || m.info.pending === 0)) break;
        }
      } finally {
        signal?.removeEventListener('abort', stop);
        messages.stop();
      }
    } finally {
      await deleteQuietly(consumer);
    }
  }

  /**
   * Stream sequence of the first of the last `n` messages matching `filter`,
   * or undefined when there are at most `n`. Scans headers only, so it stays
   * cheap even with many stored log lines.
   */
  private async seqOfLastN(stream: string, filter: string, n: number): Promise<number | undefined> {
    const js = jetstream(this.nc);
    const probe = await js.consumers.get(stream, { filter_subjects: filter, deliver_policy: DeliverPolicy.All, headers_only: true });
    try {
      const total = (await probe.info(true)).num_pending;
      if (total <= n) return undefined;
      const skip = total - n;
      let seen = 0;
      const messages = await probe.consume({ max_messages: 1024 });
      try {
        for await (const m of messages) {
          seen++;
          if (seen > skip) return m.seq;
        }
      } finally {
        messages.stop();
      }
      return undefined;
    } finally {
      await deleteQuietly(probe);
    }
  }

  // ---- bridges: producers and consumers outside the controller (runtime/client/bridge.ts) ----

  /**
   * A registered producer of `streams`: swaps of the computations reading them pause it like any upstream
   * (nothing is lost), and it owes their consumer groups credit. `produce(stream, key, value)` waits while it is
   * blocked or its held output is full; `flush()`, `close()`.
   */
  async producer(opts: BridgeProducerOptions): Promise<BridgeProducer> {
    // Values on a typed stream are encoded as its type (PROTOCOL.md, Typed streams), as a computation's are.
    const types = new Map<string, StreamType>();
    for (const stream of new Set(Array.isArray(opts.streams) ? opts.streams : [])) {
      const t = typeof stream === 'string' && NAME_PATTERN.test(stream) ? await this.streamType(stream) : undefined;
      if (t) types.set(stream, t);
    }
    return BridgeProducer.start(this.nc, { ...opts, ...(types.size && !opts.types ? { types } : {}) });
  }

  /**
   * Joins consumer group `opts.group` on `stream`: producers count the group in flow control, and each record is
   * credited once the iteration asks for the next one. `for await (const r of client.consume(s, { group }))`;
   * breaking out (or close()) leaves the group. `ready` resolves once registered.
   */
  consume(stream: string, opts: BridgeConsumerOptions): BridgeConsumer {
    const type = opts.type ?? (NAME_PATTERN.test(stream) ? this.streamType(stream) : Promise.resolve(undefined));
    return new BridgeConsumer(this.nc, stream, { ...opts, type });
  }

  // ---- end of bridges ----

  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    await this.nc.drain().catch(() => this.nc.close());
  }
}

async function deleteQuietly(consumer: Consumer): Promise<void> {
  try {
    await consumer.delete();
  } catch {
    // ordered consumers expire on their own (inactive threshold)
  }
}
