/**
 * Control-plane messages, protocol v1. Control messages are JSON (they are
 * rare and humans read them with `nats sub`); data-plane messages (batches,
 * credits) are msgpack. Every request gets a Reply.
 */
import type { WireError } from './errors.js';
import type { NormalizedMetadata } from './metadata.js';

export type Reply<T extends object = object> = ({ ok: true } & T) | { ok: false; error: WireError };

/** Languages of computations: ts, python, and cmd (any program that speaks the operator protocol: PROTOCOL.md, Hosted operators). */
export type Lang = 'ts' | 'python' | 'cmd';

// ---- worker <-> controller -------------------------------------------------

/** Worker -> controller, request on `topo.worker.register`. */
export interface RegisterRequest {
  workerId: string;
  host: string;
  pid: number;
  lang: Lang;
  startedAt: number;
  /** Other languages it runs as hosted operators (a TS worker: python, cmd). */
  hosts?: Lang[];
}
export interface RegisterReply {
  /** How often the worker must publish a heartbeat. */
  heartbeatMs: number;
  /** A worker silent for this long is considered dead and its instances are re-placed. */
  leaseMs: number;
}

/**
 * standby: released by a swap and kept for a rollback; probation: swapped in, output held until the swap commits;
 * stuck: a callback has not returned for longer than the stuck threshold (InstanceReport.stuck says which).
 */
export type InstanceState = 'starting' | 'running' | 'paused' | 'failed' | 'stopping' | 'standby' | 'probation' | 'stuck';

export interface InstanceMetrics {
  /** Records handed to processRecord. */
  recordsIn: number;
  /** Records produced (produceRecord calls). */
  recordsOut: number;
  /** processRecord/processTimer calls that threw. */
  errors: number;
  /** Records and raw messages sent to the dead-letter stream. */
  deadLetters: number;
  /** Messages on an input subject that were not valid batches. */
  malformed: number;
  /** Messages on the instance's credit subject that were not valid Credits (ignored). */
  malformedCredits?: number;
  /** Input records whose trace item was not a well-formed trace id (PROTOCOL.md, Traces): processed untraced. */
  badTraces?: number;
  /** The last full second, in ms: running callbacks, waiting for input, and holding input back because output was blocked (credit or pause). */
  busyMs?: number;
  idleMs?: number;
  backpressuredMs?: number;
  /** Input batches received and not yet processed, at report time. */
  queueDepth?: number;
  /** Processing latency per record (a batch's callback time over its records), µs: percentiles since the instance started. */
  latencyUs?: LatencySummary;
  /**
   * The same latencies as a histogram: element i counts batches whose per-record latency fell in
   * [2^(i-1), 2^i) µs (element 0: under 1 µs; the last of 28 is open); trailing empty buckets left out.
   */
  latencyBuckets?: number[];
  /** Sum of those latencies (µs). */
  latencySumUs?: number;
  /** Since the instance started (ms): busy in callbacks, idle, and backpressured (input held back while output was blocked). */
  busyTotalMs?: number;
  idleTotalMs?: number;
  backpressuredTotalMs?: number;
  /** Per output stream: records produced and how long output waited for credit (ms), since the instance started. */
  outlets?: OutletMetrics[];
  /** Records processed since the last checkpoint: what its state loses if the worker dies now (on at-most-once input). */
  sinceCheckpoint?: number;
  /** How long ago the last checkpoint was stored (ms). */
  checkpointAgeMs?: number;
  /** Size of the chunks the last checkpoint wrote (msgpack bytes). */
  checkpointBytes?: number;
  /** Checkpoints that could not be stored. */
  checkpointFailures?: number;
  /** Publishes and subscriptions the server refused to this instance's own NATS user (its permissions). */
  permissionDenied?: number;
  /** At-least-once input: records skipped as duplicates (redelivered, or produced again by a restarted producer). */
  duplicates?: number;
  /** At-least-once output: publishes retried until stored. */
  publishRetries?: number;
}

export interface OutletMetrics {
  stream: string;
  records: number;
  creditStallMs: number;
}

/** Percentiles of a latency histogram (upper bounds of log-spaced buckets). */
export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Samples (batches) behind the figures. */
  n: number;
}

export interface InstanceReport {
  instanceId: string;
  computation: string;
  version: number;
  index: number;
  count: number;
  state: InstanceState;
  metrics: InstanceMetrics;
  /** Last error message, if any. */
  lastError?: string;
  /** Present while a callback has not returned for longer than the stuck threshold. */
  stuck?: StuckCallback;
  /** Input batches received and not yet processed. */
  queued?: number;
}

/** A callback that did not return: which one, since when, and how often this instance got stuck. */
export interface StuckCallback {
  /** 'processRecord' | 'processTimer' | 'init' | 'destroy' */
  callback: string;
  /** How long it has been running, at the time of the report. */
  forMs: number;
  /** Times this instance has been detected stuck. */
  count: number;
}

/** Worker -> controller, publish on `topo.worker.hb.<workerId>`. */
export interface Heartbeat {
  workerId: string;
  host: string;
  pid: number;
  lang: Lang;
  /** As in RegisterRequest. */
  hosts?: Lang[];
  at: number;
  instances: InstanceReport[];
  /** The worker process itself. */
  process?: ProcessMetrics;
}

/** A worker process's figures at heartbeat time. */
export interface ProcessMetrics {
  /** Resident set size and V8 heap in use (bytes). */
  rssBytes: number;
  heapUsedBytes: number;
  /** CPU time since the process started (µs). */
  cpuUserMicros: number;
  cpuSystemMicros: number;
  /** Event-loop delay since the previous heartbeat (ms): mean, p99, max. */
  eventLoopLagMs: { mean: number; p99: number; max: number };
}

/** What a worker must run: one instance of one computation version. */
/** A NATS user as text: its JWT and its nkey seed (what a `.creds` file holds). */
export interface UserCredential {
  jwt: string;
  seed: string;
}

/** KV topo_state `user.<instanceId>`: a minted instance user not yet revoked (its public key only, never its seed). */
export interface InstanceUserRecord {
  instanceId: string;
  /** The user's nkey public key (U...). */
  userKey: string;
  computation: string;
  mintedAt: number;
}

export interface Assignment {
  instanceId: string;
  computation: string;
  version: number;
  /** sha256 hex of the artifact; also its object name in the artifacts store. */
  sha: string;
  lang: Lang;
  index: number;
  count: number;
  metadata: NormalizedMetadata;
  /** Explicit partitions to read on every istream (canary splits); default: partitionsOwnedBy(index, count). */
  partitions?: number[];
  /** Set when this instance runs fused with others of the same index on its worker (see Fusion). */
  fusion?: Fusion;
}

/**
 * Membership of a fusion group: computations whose instances of the same
 * index run in one worker process, connected by direct calls on the streams
 * between them (no serialization, no NATS hop). `inputs` are the istreams fed
 * in-process (not subscribed on NATS); `outputs` the ostreams delivered
 * in-process to `consumer` (and published on NATS only for other consumer
 * groups and for taps).
 */
export interface Fusion {
  group: string;
  inputs: string[];
  outputs: { stream: string; consumer: string }[];
}

/** Controller -> worker, request on `topo.worker.ctl.<workerId>`. */
export type WorkerControl =
  /** `credential`: the instance's own NATS user (PROTOCOL.md, "Identities and permissions"); without it the instance uses the worker's connection. */
  | { op: 'assign'; assignment: Assignment; credential?: UserCredential }
  | { op: 'unassign'; instanceId: string }
  /**
   * Hold output on `streams` (default: all ostreams): nothing more is published
   * there; the instance keeps processing until its held output is full, then
   * stops taking input. Replies PauseReply once what was published before the
   * fence has reached the server. A pause is a lease: unless renewed (by
   * sending pause again) or resumed, the worker resumes by itself after
   * `leaseMs` (default 5000), so a dead controller cannot leave it paused.
   */
  | { op: 'pause'; instanceId: string; swapId?: string; streams?: string[]; leaseMs?: number }
  | { op: 'resume'; instanceId: string; swapId?: string }
  /** Process everything already received, flush outputs, then reply. */
  | { op: 'drain'; instanceId: string; timeoutMs?: number }
  /** Fetch and load an artifact ahead of a swap so load time is not pause time. Replies {loadMs}. */
  /** lang: a hosted operator's; count: how many instances of it this worker will adopt (that many operator processes are started now). */
  /**
   * `instances`: the adopts to come on this worker, each with its own NATS user, whose connections the
   * worker opens now (signing in takes tens of ms: not inside the pause); an adopt takes its own.
   */
  | { op: 'preload'; sha: string; metadata: NormalizedMetadata; lang?: Lang; count?: number; instances?: { instanceId: string; credential: UserCredential }[] }
  /**
   * Swap step "drain and snapshot": stop taking input, process everything
   * received (after a round trip to the server, so all fenced input is in),
   * flush output, snapshot keyed state and pending timers, and keep the
   * instance on standby for a rollback. Replies ReleaseReply.
   */
  | {
    op: 'release'; instanceId: string; swapId: string; export: 'memory' | 'store';
    /**
     * Drain budget: a release still draining after this long gives up (a TIMEOUT error) and
     * stays the swap's old instance, to be reinstated by the abort. Default 30000.
     */
    budgetMs?: number;
    /** Swap lease: unless renewed ('renew'), commit or abort arrives within it, the worker aborts the swap by itself. */
    leaseMs?: number;
    /** The swap's paused upstreams: a worker aborting by itself keeps them paused until its old instances are back. */
    upstreams?: UpstreamRef[];
    /**
     * What the paused producers published last, per partition subject: the instance drains until it has
     * seen every fence it can see (partitions it reads alone: key-grouped and broadcast istreams).
     */
    fences?: ProducerFence[];
  }
  /**
   * Swap step "start the new version": restore the snapshots `from` (state
   * entries filtered to the partitions this instance owns when
   * `filterByPartition`), subscribe, run init, and enter probation: output is
   * held and every input record is kept until commit or abort. Replies once
   * init has succeeded (InitFailedError otherwise; nothing is left running).
   */
  | {
    op: 'adopt'; swapId: string; assignment: Assignment; from: SnapshotRef[]; filterByPartition: boolean; probation: Probation;
    leaseMs?: number; upstreams?: UpstreamRef[];
    /** Snapshots of `from` instances carried in the request (their ReleaseReply.inline): not read from the store. */
    snapshots?: { instanceId: string; data: string }[];
  }
  /** Renews the swap lease on a worker with released or adopted instances. */
  | { op: 'renew'; swapId: string; leaseMs: number }
  /** Waits for the probation verdict of an adopted instance: HealthReply, or the failure as an error. */
  | { op: 'health'; instanceId: string; timeoutMs: number }
  /** Ends the swap here: adopted instances publish held output and leave probation; standby instances are destroyed. */
  | { op: 'commit'; swapId: string }
  /**
   * Rolls the swap back here: adopted instances stop, their output is dropped,
   * and every input record they took is handed back, in order, to the standby
   * instances they replaced, which resume with their snapshot state.
   */
  | { op: 'abort'; swapId: string; reason: string }
  /**
   * After an abort: the input that adopted instances on another worker took
   * and could not hand back there (their old instances run here) is in the
   * Object Store as `handback` (AbortReply.handbacks); the standby-turned-running
   * old instances `instanceIds` here take their share of it, in order. Every
   * item goes to exactly one of `from` (all old instances of the adopter): the
   * one owning its partition on a key-grouped istream, else from[partition % from.length].
   */
  | { op: 'replay'; swapId: string; handback: string; from: SnapshotRef[] }
  /** Destroy every instance and exit the process. */
  | { op: 'stop' };

/** What an abort could not hand back on its worker (the old instances run elsewhere): stored for a replay op. */
export interface Handback {
  /** Object name in topo_snapshots. */
  name: string;
  /** The old instances of the adopter that took it. */
  from: SnapshotRef[];
  batches: number;
}

export interface AbortReply {
  reinstated: number;
  handbacks?: Handback[];
  /** Batches that could be handed back nowhere (no old instance to take them): lost, and so counted. */
  lostBatches?: number;
}

export interface PauseReply {
  /** The producer id of the paused instance. */
  producer: string;
  /** Per held stream: the producer sequence of the last record published before the pause. */
  fences: Record<string, number>;
  /** Per held stream and partition subject: the sequence of the last record published there (what a release waits for). */
  partitionFences?: Record<string, Record<string, number>>;
  /** Per held stream and partition subject: how long ago that record was published, in ms. */
  partitionAgesMs?: Record<string, Record<string, number>>;
}

/** The fence of one paused producer on one stream: the sequence of the last record it published on each partition subject. */
export interface ProducerFence {
  producer: string;
  stream: string;
  /** Partition (as a string key) -> producer sequence of the last record published on topo.data.<stream>.<partition>. */
  partitions: Record<string, number>;
  /**
   * Partition -> how long ago (ms) that record was published, as of when the release was sent: an instance
   * that subscribed after it cannot have received it (its predecessor did, and handed over what it consumed).
   */
  agesMs?: Record<string, number>;
}

export interface ReleaseReply {
  /** Keyed-state entries and pending timers in the snapshot. */
  keys: number;
  timers: number;
  /** msgpack size of the snapshot. */
  bytes: number;
  /** Records processed by the released instance while draining. */
  drained: number;
  /**
   * Records not processed because a callback was stuck: handed over with the
   * snapshot, so the adopting instance processes them first (the stuck one included).
   */
  handedOver?: number;
  /** Fences this instance could see and saw before draining (PROTOCOL.md, "Pause leases and fences"). */
  fencesMet?: number;
  /** What it published last, per ostream and partition: the next stage of a fused chain's release waits for these. */
  outputFences?: ProducerFence[];
  /**
   * With export "store", a small snapshot (at most 256 KiB of msgpack) comes back here, base64, instead of
   * going to the Object Store: the controller hands it to the adopters in their adopt request (one trip, not several).
   */
  inline?: string;
}

/** An upstream producer instance paused by a swap. */
export interface UpstreamRef {
  workerId: string;
  instanceId: string;
  streams: string[];
}

/** Where an adopting instance finds a released instance's snapshot. */
export interface SnapshotRef {
  workerId: string;
  instanceId: string;
}

/** How long a swapped-in instance is on probation, and what fails it. */
export interface Probation {
  /** Passes after this many records handled without error... */
  records: number;
  /** ...or after this long without an error, whichever comes first. */
  ms: number;
  /** A callback (including init) that has not returned after this long fails the probation (a hang). */
  callbackTimeoutMs: number;
}

export interface HealthReply {
  processed: number;
  ms: number;
}

// ---- desired state (KV) ----------------------------------------------------

export interface Placement {
  index: number;
  instanceId: string;
  workerId: string;
  /** Explicit partitions this instance reads (canary splits); default: partitionsOwnedBy(index, count). */
  partitions?: number[];
}

/** A version running on part of the keys beside the current one (`topo swap --canary`). */
export interface CanaryRecord {
  version: number;
  sha: string;
  lang: Lang;
  metadata: NormalizedMetadata;
  /** Share of key partitions requested, 1..99. */
  percent: number;
  /** Partitions routed to the canary; the current version's placements no longer read them. */
  partitions: number[];
  placements: Placement[];
  source?: string;
  startedAt: number;
}

/** KV `topo_state`, key `comp.<name>`. */
export interface ComputationRecord {
  name: string;
  version: number;
  sha: string;
  lang: Lang;
  metadata: NormalizedMetadata;
  instances: number;
  placements: Placement[];
  /** Where the artifact came from (file name), for humans. */
  source?: string;
  deployedAt: number;
  /** Present while a canary of a newer version runs. */
  canary?: CanaryRecord;
  /** Present while the computation runs fused (its instance i on the worker of the group's instance i). */
  fusion?: Fusion;
  /** Set by `topo split`: not fused again until `topo fuse` names it. */
  noFuse?: boolean;
}

/** One step of a deploy or swap, as written to history. */
export interface HistoryStep {
  step: 'preload' | 'pause' | 'release' | 'adopt' | 'resume' | 'health' | 'commit' | 'abort' | 'lease-expired' | string;
  at: number;
  ms: number;
  ok: boolean;
  detail?: string;
}

/** KV `topo_history`, key `<name>.<version>` (the bucket keeps revisions). */
export interface HistoryEntry {
  name: string;
  version: number;
  sha: string;
  source?: string;
  /** scale, move, fuse and split change where and on how many instances a version runs, not its code: they keep the version. */
  action: 'deploy' | 'kill' | 'swap' | 'canary' | 'promote' | 'rollback' | 'scale' | 'move' | 'fuse' | 'split';
  at: number;
  result: 'ok' | 'failed' | 'rolled-back';
  error?: string;
  /** Version that was running before a swap, canary, promote or rollback. */
  fromVersion?: number;
  /** Upstreams paused until resumed (ms), for swaps. */
  pauseMs?: number;
  /** Artifact fetch and load before the pause (ms). */
  loadMs?: number;
  steps?: HistoryStep[];
  /** Metadata and language of this version, so a rollback can bring it back. */
  metadata?: NormalizedMetadata;
  lang?: Lang;
}

// ---- CLI -> controller -----------------------------------------------------

/** `topo.api.deploy`: the artifact must already be in the object store. */
export interface DeployRequest {
  sha: string;
  lang: Lang;
  metadata: NormalizedMetadata;
  instances?: number;
  source?: string;
  /** Publish each step as it ends on `topo.progress.<progress>` (a ProgressEvent each); the caller subscribes first. */
  progress?: string;
}
export interface DeployReply {
  computation: ComputationRecord;
}

/** `topo.api.kill` */
export interface KillRequest {
  name: string;
}

/** `topo.api.swap`: replace a running computation's code live. The artifact must be in the object store. */
export interface SwapRequest {
  name: string;
  sha: string;
  lang: Lang;
  metadata: NormalizedMetadata;
  source?: string;
  /** Route this percentage of key partitions (1..99) to the new version; the rest stay. */
  canary?: number;
  /** Only compute the metadata diff; change nothing. */
  dryRun?: boolean;
  probation?: Partial<Probation>;
  /** How long each old instance may drain before the swap is rolled back (default: the controller's, 30 s). */
  drainBudgetMs?: number;
  /** Publish each step as it ends on `topo.progress.<progress>` (a ProgressEvent each); the caller subscribes first. */
  progress?: string;
}

/**
 * `topo.progress.<id>`: one step of the deploy, swap, rollback or promote whose request named `progress: <id>`, published
 * by the controller as the step ends, before the reply (which still carries every step of a swap).
 */
export interface ProgressEvent {
  request: 'deploy' | 'swap' | 'rollback' | 'promote';
  /** The computation deployed or swapped. */
  name: string;
  step: HistoryStep;
}

export interface MetadataDiff {
  istreams: { gained: string[]; lost: string[]; regrouped: { stream: string; from: string; to: string }[] };
  ostreams: { gained: string[]; lost: string[] };
  /** Computations producing to an istream gained or lost (they start or stop feeding it). */
  producersAffected: string[];
  /** Computations reading an ostream gained or lost. */
  consumersAffected: string[];
  /** Typed streams (PROTOCOL.md, Typed streams): types added, removed or changed per stream. Present when any changed. */
  types?: TypesDiff;
}

/** A stream's type in a diff: the message and its fingerprint. */
export interface TypeRef {
  message: string;
  fingerprint: string;
}

export interface TypesDiff {
  added: { stream: string; to: TypeRef }[];
  removed: { stream: string; from: TypeRef }[];
  changed: { stream: string; from: TypeRef; to: TypeRef }[];
}

export interface SwapReply {
  name: string;
  result: 'ok' | 'rolled-back' | 'dry-run';
  fromVersion: number;
  version: number;
  sha: string;
  pauseMs?: number;
  loadMs?: number;
  steps: HistoryStep[];
  diff: MetadataDiff;
  /** Why the new version was rolled back. */
  error?: string;
}

/** `topo.api.rollback`: back to the previous (or `to`) version; with a canary running, drops the canary. */
export interface RollbackRequest {
  name: string;
  to?: number;
  /** As in SwapRequest: each step published on `topo.progress.<progress>` as it ends. */
  progress?: string;
}

/** `topo.api.promote`: the canary becomes the version on all keys. */
export interface PromoteRequest {
  name: string;
  /** As in SwapRequest: each step published on `topo.progress.<progress>` as it ends. */
  progress?: string;
}

/**
 * `topo.api.scale`: run a computation on `instances` instances, live. Keyed
 * state moves with the partition of its key; the version stays the same.
 */
export interface ScaleRequest {
  name: string;
  instances: number;
  /** How long each old instance may drain before the scale is rolled back (default: the controller's, 30 s). */
  drainBudgetMs?: number;
}

export interface ScaleReply {
  name: string;
  /** unchanged: it already ran on that many instances; nothing was done. */
  result: 'ok' | 'unchanged';
  /** The version running (a scale keeps it). */
  version: number;
  fromInstances: number;
  instances: number;
  /** Where the instances run now. */
  placements: Placement[];
  pauseMs?: number;
  loadMs?: number;
  steps: HistoryStep[];
}

/** `topo.api.fuse`: run these computations as one chain (instance i of each in one process, direct calls between them). */
export interface FuseRequest {
  names: string[];
}

/** `topo.api.split`: run this computation on its own, and do not fuse it again until `topo fuse` names it. */
export interface SplitRequest {
  name: string;
}

/** The fusion groups after a fuse or split. */
export interface FusionReply {
  /** unchanged: the groups already were so; nothing was done. */
  result: 'ok' | 'unchanged';
  groups: { group: string; members: string[] }[];
  pauseMs?: number;
  steps: HistoryStep[];
}

/** `topo.api.history` */
export interface HistoryRequest {
  name: string;
}
export interface HistoryReply {
  entries: HistoryEntry[];
}

export interface WorkerStatus {
  workerId: string;
  host: string;
  pid: number;
  lang: Lang;
  hosts?: Lang[];
  alive: boolean;
  lastSeen: number;
  instances: number;
}

export interface InstanceStatus extends InstanceReport {
  workerId: string;
  /** Records/s computed by the controller from its heartbeats' counters over the last 10 s. */
  inPerSec: number;
  outPerSec: number;
}

export interface ComputationStatus {
  name: string;
  version: number;
  sha: string;
  lang: Lang;
  istreams: NormalizedMetadata['istreams'];
  ostreams: string[];
  instances: InstanceStatus[];
  /** Sums over instances (records/s over the last 10 s of heartbeats). */
  inPerSec: number;
  outPerSec: number;
  /** Records/s produced onto each output stream, summed over instances, same window. */
  streamsOutPerSec?: Record<string, number>;
  errors: number;
  deadLetters: number;
  /** Times an instance of it was reported stuck (a synchronous hang that cost its worker process). */
  stuckCount?: number;
  /**
   * Records its instances had processed on at-most-once input since their last checkpoint when their
   * worker died: restarted from that checkpoint, their state lacks these records' effect.
   */
  lostSinceCheckpoint?: number;
  /** The last time an instance of it ran again after its worker died: ms from the worker's last heartbeat to the instance's assign answered. */
  lastRecovery?: { ms: number; at: number };
  /** The streams it declares at-least-once (PROTOCOL.md, "Delivery"). */
  atLeastOnce?: string[];
  /** At-least-once input its running instances skipped as duplicates (redelivered, or produced again by a restarted producer). */
  duplicates?: number;
  /** Publishes and subscriptions the server refused its running instances' own NATS users. */
  permissionDenied?: number;
  /** Present while the controller does not re-place its instances because they keep failing. */
  coolDown?: ComputationCoolDown;
  /** The fusion group it runs in, if fused. */
  group?: string;
  /** Set by `topo split`: not fused again until `topo fuse` names it. */
  noFuse?: boolean;
}

/**
 * JSON on `topo.worker.stuck.<workerId>`, published by a worker's watchdog
 * thread when the worker's event loop has been blocked for longer than its
 * threshold (a callback in a synchronous loop). The worker process is killed
 * right after and restarted by its supervisor: the keyed state its instances
 * held in memory is lost.
 */
export interface StuckReport {
  workerId: string;
  pid: number;
  /** Absent when the loop was blocked outside any callback. */
  computation?: string;
  instanceId?: string;
  /** 'processRecord' | 'processTimer' | 'init' | ... as noted by the worker. */
  callback?: string;
  /** How long the event loop had been blocked. */
  forMs: number;
  thresholdMs: number;
  at: number;
  /** What the watchdog does about it, e.g. 'killing the worker process (SIGKILL)'. */
  action: string;
}

/** A computation the controller stopped re-placing for a while, because its instances keep failing. */
export interface ComputationCoolDown {
  until: number;
  /** Failures counted in the window that triggered it. */
  failures: number;
  windowMs: number;
  /** The last failure, e.g. 'stuck in processRecord for 3012 ms on w-1'. */
  reason: string;
}

/** One process of a local topology as its supervisor sees it (`topo status` reads it from .topo/run.json). */
export interface ProcessStatus {
  /** 'nats-server' | 'controller' | 'w-1' ... */
  name: string;
  kind: 'nats' | 'controller' | 'worker';
  pid?: number;
  /** backoff: waiting to be restarted; cool-down: crashed too often, not restarted until coolDownUntil. */
  state: 'running' | 'backoff' | 'cool-down' | 'stopped';
  restarts: number;
  startedAt?: number;
  /** 'code 1' / 'signal SIGKILL', and when. */
  lastExit?: { code: number | null; signal: string | null; at: number };
  nextStartAt?: number;
  coolDownUntil?: number;
  /** Unexpected exits within the crash window. */
  recentCrashes: number;
  /** The last stuck report of this worker (its watchdog killed it). */
  lastStuck?: StuckReport;
}

/** `topo.api.status` */
export interface StatusReply {
  natsUrl?: string;
  /** Where the controller serves /metrics and the web UI. */
  httpUrl?: string;
  workers: WorkerStatus[];
  computations: ComputationStatus[];
  /** Stuck reports seen by the controller, newest last (bounded), and how many in all. */
  stuck?: { total: number; recent: StuckReport[] };
  /** Fusion groups, each head first (its members' instances of one index run in one process). */
  fusion?: { group: string; members: string[] }[];
  /** Filled by the CLI from the supervisor's table in .topo/run.json, not by the controller. */
  processes?: ProcessStatus[];
}

// ---- data plane -----------------------------------------------------------

/**
 * msgpack on `topo.fc.<producerId>`: consumer group `g` has processed `n` more
 * records of that producer. Producers stop emitting once a group is `window`
 * records behind.
 */
export interface Credit {
  g: string;
  n: number;
}

/** msgpack on `topo.dlq.<computation>`. */
export interface DeadLetter {
  computation: string;
  instanceId: string;
  stream: string;
  /** Why: 'processRecord threw', 'malformed batch', ... */
  reason: string;
  error: string;
  at: number;
  /** The record as received, when it could be decoded. */
  record?: { key: string; value: unknown; ts: number; seq: number };
  /** The raw bytes, when the batch could not be decoded. */
  raw?: Uint8Array;
}

// ---- bridges: producers and consumers outside the controller (PROTOCOL.md, "Bridges") ----

/** How a registered consumer group reads its stream (as a computation's istream). */
export type BridgeGrouping = 'shuffle' | 'key' | 'broadcast';

/** `topo.bridge.register`, kind producer: an external producer that swaps pause like any upstream. */
export interface BridgeProducerRegistration {
  kind: 'producer';
  /** Its producer id (the batches' `src`; credits come on `topo.fc.<id>`, control on `topo.bridge.ctl.<id>`). */
  id: string;
  /** The streams it publishes. */
  streams: string[];
  host?: string;
  pid?: number;
  lang?: string;
  /** Process start; a new value for a live id is another process and is refused (CONFLICT). */
  startedAt: number;
}

/** `topo.bridge.register`, kind consumer: one member of a consumer group reading one stream. */
export interface BridgeConsumerRegistration {
  kind: 'consumer';
  /** The member id. */
  id: string;
  /** Consumer group name (a name that no computation has: producers count it like a computation). */
  group: string;
  stream: string;
  grouping: BridgeGrouping;
  host?: string;
  pid?: number;
  lang?: string;
  startedAt: number;
}

export type BridgeRegisterRequest = BridgeProducerRegistration | BridgeConsumerRegistration;

export interface BridgeRegisterReply {
  heartbeatMs: number;
  /** A bridge silent this long is dropped (a consumer member leaves its group). */
  leaseMs: number;
  /** Consumers: the group id to credit as (`<group>`, or `<group>#<index>` for broadcast). */
  creditGroup?: string;
  /** Consumers: the member's index in its group (broadcast). */
  index?: number;
}

/** Counters a bridge reports in its heartbeat (all optional). */
export interface BridgeStats {
  /** Producer: records published; consumer: records received. */
  records?: number;
  /** Producer: records produced and not yet published (held or blocked). */
  pending?: number;
  /** Producer: the largest credit debt over its consumer groups. */
  debt?: number;
  /** Producer: held by a pause right now. */
  paused?: boolean;
  /** Consumer: records credited back. */
  credited?: number;
}

/** `topo.bridge.hb.<id>` (publish): the registration again, plus when and counters; renews the lease (and registers again after a controller restart). */
export type BridgeHeartbeat = BridgeRegisterRequest & { at: number; stats?: BridgeStats };

/** `topo.bridge.unregister`. */
export interface BridgeUnregisterRequest {
  id: string;
}

/** topo_state `consumer.<group>`: a consumer group registered by bridges (written by the controller). */
export interface BridgeConsumerRecord {
  group: string;
  stream: string;
  grouping: BridgeGrouping;
  members: { id: string; index: number }[];
  updatedAt: number;
}

export interface BridgeProducerStatus {
  id: string;
  streams: string[];
  host?: string;
  pid?: number;
  lang?: string;
  lastSeen: number;
  registeredAt: number;
  stats?: BridgeStats;
}

export interface BridgeConsumerStatus {
  id: string;
  group: string;
  stream: string;
  grouping: BridgeGrouping;
  index: number;
  creditGroup: string;
  host?: string;
  pid?: number;
  lang?: string;
  lastSeen: number;
  registeredAt: number;
  stats?: BridgeStats;
}

/** StatusReply gains the registered bridges (declaration merging: the field is optional). */
export interface StatusReply {
  bridges?: { producers: BridgeProducerStatus[]; consumers: BridgeConsumerStatus[] };
}

// ---- end of bridges ----
