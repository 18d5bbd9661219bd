/**
 * One zod schema per message that crosses a process, protocol v1. These are
 * the truth: receivers validate with them (BAD_REQUEST, or a dead letter for
 * a malformed batch), `protocol/schemas/*.json` is generated from them for
 * other languages, and the interfaces in control.ts are checked against them
 * at compile time (bottom of this file).
 *
 * Objects are "loose": receivers MUST ignore fields they do not know
 * (PROTOCOL.md, Versioning), so unknown fields are kept and never an error.
 * Bounds are part of the schemas: ids are subject-safe tokens of at most 128
 * characters, credits are positive safe integers, the swap ops that change
 * state require their swapId, and error strings in heartbeats and history
 * are capped (senders truncate them with truncateError).
 */
import { z } from 'zod';
import { BadRequestError, InvalidMetadataError } from './errors.js';
import { GROUPINGS, hintsSchema, typesSchema, validateMetadata } from './metadata.js';
import { NAME_PATTERN, PROTOCOL_VERSION, kvKeys } from './subjects.js';
import type * as C from './control.js';
import type { Batch } from './envelope.js';
import type { NormalizedMetadata } from './metadata.js';
import { operatorSchemas } from './operator.js';

// ---- bounds -------------------------------------------------------------------

/** Ids (src, producer, instance, worker, swap ids): letters, digits, `_` and `-`, so always exactly one subject token. */
export const ID_PATTERN = /^[A-Za-z0-9_-]+$/;
export const MAX_ID_LENGTH = 128;
/** Error strings in heartbeats (lastError) and history (error, step detail). */
export const MAX_ERROR_LENGTH = 1024;
/** A consumer group id: a computation name, or `<computation>#<index>` for broadcast. */
export const GROUP_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{0,63}(#[0-9]{1,3})?$/;
export const SHA256_PATTERN = /^[0-9a-f]{64}$/;
export const MAX_INSTANCES = 64;

/** True for a subject-safe id of at most MAX_ID_LENGTH characters (the hot-path check of decodeBatch). */
export function isId(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_LENGTH && ID_PATTERN.test(v);
}

const TRUNCATED = '… (truncated)';

/** Cuts an error string to `max` characters (default MAX_ERROR_LENGTH), saying so. Senders call it before sending. */
export function truncateError(s: string, max = MAX_ERROR_LENGTH): string {
  if (s.length <= max) return s;
  let cut = max - TRUNCATED.length;
  // Do not split a surrogate pair.
  const c = s.charCodeAt(cut - 1);
  if (c >= 0xd800 && c <= 0xdbff) cut--;
  return s.slice(0, cut) + TRUNCATED;
}

// ---- building blocks -----------------------------------------------------------

const id = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(MAX_ID_LENGTH, { error: `must be at most ${MAX_ID_LENGTH} characters` })
  .regex(ID_PATTERN, { error: 'must contain only letters, digits, "_" or "-"' });
const name = z.string().regex(NAME_PATTERN, {
  error: 'must start with a letter and contain only letters, digits, "_" or "-" (at most 64 characters)',
});
const sha = z.string().regex(SHA256_PATTERN, { error: 'must be 64 lowercase hex characters (sha256 of the artifact)' });
const lang = z.enum(['ts', 'python', 'cmd'], { error: 'must be "ts", "python" or "cmd"' });
/** Languages a worker hosts as operator processes besides its own. */
const hosts = z.array(lang).max(8).optional();
const time = z.number().nonnegative();
const count = z.int().nonnegative();
const positive = z.int().positive();
const version = z.int().min(1, { error: 'must be a version number (an integer >= 1)' });
const errorString = z.string().max(MAX_ERROR_LENGTH, { error: `must be at most ${MAX_ERROR_LENGTH} characters (senders truncate)` });
const partition = z.int().min(0).max(31);

/** Metadata in its normalized form (what travels in assignments and sits in KV). */
export const normalizedMetadata = z.object({
  name,
  istreams: z.array(z.object({ stream: name, grouping: z.enum(GROUPINGS) })),
  ostreams: z.array(name),
  // What the planner may do with it (cpu, fuse, autoscale): kept, or the oracle never sees them.
  hints: hintsSchema.optional(),
  // Typed streams (protocol/types.ts): stream -> {message, descriptor (base64 FileDescriptorSet), fingerprint}, bounded.
  types: typesSchema.optional(),
  // At-least-once streams (PROTOCOL.md, "Delivery"): only those are kept, the default being at-most-once.
  delivery: z.record(name, z.literal('at-least-once')).optional(),
});

/**
 * Metadata as a request may carry it (an istream may be a bare name). The
 * controller normalizes and checks it further with validateMetadata
 * (INVALID_METADATA naming the field).
 */
const requestMetadata = z.object({
  name: z.unknown(),
  istreams: z.array(z.unknown()),
  ostreams: z.array(z.unknown()),
  hints: z.unknown().optional(),
  types: z.unknown().optional(),
  delivery: z.unknown().optional(),
}).meta({ description: 'Computation metadata; see metadata.json in the vectors and PROTOCOL.md, Names.' });

const reply = <T extends z.ZodRawShape>(shape: T) => z.looseObject({ ok: z.literal(true), ...shape });
const errorReply = z.looseObject({
  ok: z.literal(false),
  error: z.looseObject({ code: z.string(), message: z.string(), detail: z.unknown().optional() }),
});

// ---- data plane (msgpack) ------------------------------------------------------

const wireRecord = z.tuple([
  z.string().meta({ description: 'key' }),
  z.unknown().meta({ description: 'value' }),
  z.number().meta({ description: 'ts, ms since the epoch' }),
  z.number().meta({ description: 'seq' }),
  z.union([z.string(), z.null()]).optional().meta({ description: 'trace' }),
]);

const batch = z.looseObject({
  v: z.literal(PROTOCOL_VERSION),
  src: id,
  stream: z.string(),
  bseq: count,
  recs: z.array(wireRecord),
});

const credit = z.looseObject({
  g: z.string().regex(GROUP_PATTERN, { error: 'must be a computation name, or <computation>#<index>' }),
  n: z.int().positive({ error: 'must be a positive safe integer' }),
});

const bin = z.custom<Uint8Array>((v) => v instanceof Uint8Array, { error: 'must be msgpack bin' }).meta({ description: 'msgpack bin' });

const deadLetter = z.looseObject({
  computation: name,
  instanceId: id,
  stream: z.string(),
  reason: z.string(),
  error: z.string(),
  at: time,
  record: z.looseObject({ key: z.string(), value: z.unknown(), ts: z.number(), seq: z.number() }).optional(),
  raw: bin.optional(),
});

// ---- worker <-> controller ------------------------------------------------------

const registerRequest = z.looseObject({
  workerId: id,
  host: z.string().max(255),
  pid: z.int().nonnegative(),
  lang,
  startedAt: time,
  hosts,
});
const registerReply = reply({ heartbeatMs: positive, leaseMs: positive });

const instanceState = z.enum(['starting', 'running', 'paused', 'failed', 'stopping', 'standby', 'probation', 'stuck']);

const instanceMetrics = z.looseObject({
  recordsIn: count,
  recordsOut: count,
  errors: count,
  deadLetters: count,
  malformed: count,
  malformedCredits: count.optional(),
  badTraces: count.optional(),
  busyMs: count.optional(),
  idleMs: count.optional(),
  backpressuredMs: count.optional(),
  queueDepth: count.optional(),
  latencyUs: z.looseObject({ p50: time, p90: time, p99: time, max: time, n: count }).optional(),
  // Checkpoints (PROTOCOL.md, "Checkpoints"): records processed since the last one (lost with the worker on at-most-once input), its age, its size.
  sinceCheckpoint: count.optional(),
  checkpointAgeMs: count.optional(),
  checkpointBytes: count.optional(),
  permissionDenied: count.optional(),
  checkpointFailures: count.optional(),
  // At-least-once input: duplicates skipped (redelivered, or produced again by a restarted producer); publishes retried.
  duplicates: count.optional(),
  publishRetries: count.optional(),
  latencyBuckets: z.array(count).max(64).optional(),
  latencySumUs: time.optional(),
  busyTotalMs: time.optional(),
  idleTotalMs: time.optional(),
  backpressuredTotalMs: time.optional(),
  outlets: z.array(z.looseObject({ stream: name, records: count, creditStallMs: time })).max(256).optional(),
});

const stuckCallback = z.looseObject({ callback: z.string().max(64), forMs: time, count });

const instanceReport = z.looseObject({
  instanceId: id,
  computation: name,
  version,
  index: count,
  count: positive,
  state: instanceState,
  metrics: instanceMetrics,
  lastError: errorString.optional(),
  stuck: stuckCallback.optional(),
  queued: count.optional(),
});

const heartbeat = z.looseObject({
  workerId: id,
  host: z.string().max(255),
  pid: z.int().nonnegative(),
  lang,
  hosts,
  at: time,
  instances: z.array(instanceReport),
  process: z.looseObject({
    rssBytes: count, heapUsedBytes: count, cpuUserMicros: count, cpuSystemMicros: count,
    eventLoopLagMs: z.looseObject({ mean: time, p99: time, max: time }),
  }).optional(),
});

const stuckReport = z.looseObject({
  workerId: id,
  pid: z.int().nonnegative(),
  computation: name.optional(),
  instanceId: id.optional(),
  callback: z.string().max(64).optional(),
  forMs: time,
  thresholdMs: time,
  at: time,
  action: z.string().max(MAX_ERROR_LENGTH),
});

const fusion = z.looseObject({
  group: id,
  inputs: z.array(name).max(64),
  outputs: z.array(z.looseObject({ stream: name, consumer: name })).max(64),
});

const assignment = z.looseObject({
  instanceId: id,
  computation: name,
  version,
  sha,
  lang,
  index: count,
  count: positive,
  metadata: normalizedMetadata,
  partitions: z.array(partition).optional(),
  fusion: fusion.optional(),
});

const upstreamRef = z.looseObject({ workerId: id, instanceId: id, streams: z.array(name) });
const snapshotRef = z.looseObject({ workerId: id, instanceId: id });
const probation = z.looseObject({ records: count, ms: count, callbackTimeoutMs: count });

const partitionSeqs = z.record(z.string().regex(/^\d{1,3}$/), count);
const producerFence = z.looseObject({ producer: id, stream: name, partitions: partitionSeqs, agesMs: partitionSeqs.optional() });

// An instance's own NATS user (a JWT and its nkey seed), minted by the controller: never stored anywhere.
const userCredential = z.strictObject({ jwt: z.jwt().max(8_192), seed: z.string().regex(/^SU[A-Z2-7]{56}$/) });

const controlOps = {
  assign: z.looseObject({ op: z.literal('assign'), assignment, credential: userCredential.optional() }),
  unassign: z.looseObject({ op: z.literal('unassign'), instanceId: id }),
  pause: z.looseObject({ op: z.literal('pause'), instanceId: id, swapId: id.optional(), streams: z.array(name).optional(), leaseMs: positive.optional() }),
  resume: z.looseObject({ op: z.literal('resume'), instanceId: id, swapId: id.optional() }),
  drain: z.looseObject({ op: z.literal('drain'), instanceId: id, timeoutMs: count.optional() }),
  preload: z.looseObject({
    op: z.literal('preload'), sha, metadata: normalizedMetadata, lang: lang.optional(), count: z.int().min(1).max(MAX_INSTANCES).optional(),
    instances: z.array(z.strictObject({ instanceId: id, credential: userCredential })).max(MAX_INSTANCES).optional(),
  }),
  release: z.looseObject({
    op: z.literal('release'), instanceId: id, swapId: id, export: z.enum(['memory', 'store']),
    budgetMs: positive.optional(), leaseMs: positive.optional(), upstreams: z.array(upstreamRef).optional(),
    fences: z.array(producerFence).max(10_000).optional(),
  }),
  adopt: z.looseObject({
    op: z.literal('adopt'), swapId: id, assignment, from: z.array(snapshotRef).min(1), filterByPartition: z.boolean(), probation,
    leaseMs: positive.optional(), upstreams: z.array(upstreamRef).optional(),
    snapshots: z.array(z.looseObject({ instanceId: id, data: z.base64() })).max(1_000).optional(),
  }),
  renew: z.looseObject({ op: z.literal('renew'), swapId: id, leaseMs: positive }),
  health: z.looseObject({ op: z.literal('health'), instanceId: id, timeoutMs: count }),
  commit: z.looseObject({ op: z.literal('commit'), swapId: id }),
  abort: z.looseObject({ op: z.literal('abort'), swapId: id, reason: z.string() }),
  replay: z.looseObject({ op: z.literal('replay'), swapId: id, handback: z.string().min(1).max(512), from: z.array(snapshotRef).min(1).max(1_000) }),
  stop: z.looseObject({ op: z.literal('stop') }),
} as const;

export const CONTROL_OPS = Object.keys(controlOps) as (keyof typeof controlOps)[];

const workerControl = z.discriminatedUnion('op', Object.values(controlOps) as [typeof controlOps.assign, ...(typeof controlOps)[keyof typeof controlOps][]], {
  error: (iss) =>
    iss.code === 'invalid_union'
      ? `unknown worker control op ${JSON.stringify((iss.input as { op?: unknown } | undefined)?.op)} (known: ${CONTROL_OPS.join(', ')})`
      : undefined,
});

const pauseReply = reply({
  producer: id, fences: z.record(z.string(), count),
  partitionFences: z.record(z.string(), partitionSeqs).optional(), partitionAgesMs: z.record(z.string(), partitionSeqs).optional(),
});
const releaseReply = reply({
  keys: count, timers: count, bytes: count, drained: count, handedOver: count.optional(), fencesMet: count.optional(),
  outputFences: z.array(z.looseObject({ producer: id, stream: name, partitions: z.record(z.string().regex(/^\d{1,3}$/), count) })).max(1_000).optional(),
  inline: z.base64().optional(),
});
const healthReply = reply({ processed: count, ms: z.number().nonnegative() });

/** The `ok:true` reply of each control op (an `ok:false` reply is `errorReply`). */
const controlReplies = {
  assign: reply({ instanceId: id, already: z.boolean().optional() }),
  unassign: reply({ unassigned: z.boolean() }),
  pause: pauseReply,
  resume: reply({}),
  drain: reply({ drained: z.boolean() }),
  preload: reply({ loadMs: z.number().nonnegative() }),
  release: releaseReply,
  adopt: reply({ instanceId: id }),
  renew: reply({ renewed: z.boolean() }),
  health: healthReply,
  commit: reply({ committed: count }),
  abort: reply({
    reinstated: count, lostBatches: count.optional(),
    handbacks: z.array(z.looseObject({ name: z.string().max(512), from: z.array(snapshotRef), batches: count })).optional(),
  }),
  replay: reply({ replayed: count }),
  stop: reply({}),
} satisfies Record<keyof typeof controlOps, z.ZodType>;

// ---- KV records --------------------------------------------------------------------

const placement = z.looseObject({ index: count, instanceId: id, workerId: id, partitions: z.array(partition).optional() });

const canaryRecord = z.looseObject({
  version, sha, lang, metadata: normalizedMetadata,
  percent: z.int().min(1).max(99),
  partitions: z.array(partition),
  placements: z.array(placement),
  source: z.string().optional(),
  startedAt: time,
});

const computationRecord = z.looseObject({
  name,
  version,
  sha,
  lang,
  metadata: normalizedMetadata,
  instances: z.int().min(1).max(MAX_INSTANCES),
  placements: z.array(placement),
  source: z.string().optional(),
  deployedAt: time,
  canary: canaryRecord.optional(),
  fusion: fusion.optional(),
  noFuse: z.boolean().optional(),
});

const historyStep = z.looseObject({ step: z.string().max(64), at: time, ms: z.number().nonnegative(), ok: z.boolean(), detail: errorString.optional() });

const historyEntry = z.looseObject({
  name,
  version,
  sha,
  source: z.string().optional(),
  action: z.enum(['deploy', 'kill', 'swap', 'canary', 'promote', 'rollback', 'scale', 'move', 'fuse', 'split']),
  at: time,
  result: z.enum(['ok', 'failed', 'rolled-back']),
  error: errorString.optional(),
  fromVersion: version.optional(),
  pauseMs: z.number().nonnegative().optional(),
  loadMs: z.number().nonnegative().optional(),
  steps: z.array(historyStep).optional(),
  metadata: normalizedMetadata.optional(),
  lang: lang.optional(),
});

/** topo_state `swap.<name>`: the controller's journal of a swap in progress. */
const swapJournal = z.looseObject({
  swapId: id,
  name,
  phase: z.enum(['started', 'committing']),
  workers: z.array(id),
  startedAt: time,
  history: historyEntry,
  record: computationRecord.optional(),
  /** The other computations the same run changes (a fuse or split): each with its history entry and, when committing, its record. */
  also: z.array(z.looseObject({ name, history: historyEntry, record: computationRecord.optional() })).max(64).optional(),
  /** Groups of `workers` an abort goes to one after the other (downstream members of a fused chain first). */
  abortOrder: z.array(z.array(id)).max(64).optional(),
  /** The upstreams the swap paused (a bridge producer: its id as workerId and instanceId). */
  upstreams: z.array(z.looseObject({
    computation: z.string().max(300), workerId: z.string().max(300), instanceId: z.string().max(300), streams: z.array(name).max(256), bridge: z.literal(true).optional(),
  })).max(4096).optional(),
});

const workerStatus = z.looseObject({
  workerId: id,
  host: z.string(),
  pid: z.int().nonnegative(),
  lang,
  hosts,
  alive: z.boolean(),
  lastSeen: time,
  instances: count,
});

// ---- CLI -> controller -------------------------------------------------------------

const nameRequest = z.looseObject({ name });

const deployRequest = z.looseObject({
  sha,
  lang,
  metadata: requestMetadata,
  instances: z.int({ error: `must be an integer from 1 to ${MAX_INSTANCES}` })
    .min(1, { error: `must be an integer from 1 to ${MAX_INSTANCES}` }).max(MAX_INSTANCES, { error: `must be an integer from 1 to ${MAX_INSTANCES}` }).optional(),
  source: z.string().optional(),
  progress: id.optional(),
});

const probationOverride = z.object({
  records: count.optional(),
  ms: count.optional(),
  callbackTimeoutMs: count.optional(),
}).strict();

const swapRequest = z.looseObject({
  name,
  sha,
  lang,
  metadata: requestMetadata,
  source: z.string().optional(),
  canary: z.int({ error: 'must be an integer percentage from 1 to 99' })
    .min(1, { error: 'must be an integer percentage from 1 to 99' }).max(99, { error: 'must be an integer percentage from 1 to 99' }).optional(),
  dryRun: z.boolean().optional(),
  probation: probationOverride.optional(),
  drainBudgetMs: positive.optional(),
  progress: id.optional(),
});

/** `topo.progress.<id>`: a step of a deploy, swap, rollback or promote as it ends (controller -> the requesting client). */
const progressEvent = z.looseObject({ request: z.enum(['deploy', 'swap', 'rollback', 'promote']), name, step: historyStep });

const rollbackRequest = z.looseObject({ name, to: version.optional(), progress: id.optional() });
const promoteRequest = z.looseObject({ name, progress: id.optional() });

const scaleRequest = z.looseObject({
  name,
  instances: z.int({ error: `must be an integer from 1 to ${MAX_INSTANCES}` })
    .min(1, { error: `must be an integer from 1 to ${MAX_INSTANCES}` }).max(MAX_INSTANCES, { error: `must be an integer from 1 to ${MAX_INSTANCES}` }),
  drainBudgetMs: positive.optional(),
});
const fuseRequest = z.looseObject({ names: z.array(name).min(2, { error: 'name at least two computations to fuse' }).max(16) });
const emptyRequest = z.looseObject({});

// ---- bridges: producers and consumers outside the controller (PROTOCOL.md, "Bridges") ----

const bridgeGrouping = z.enum(['shuffle', 'key', 'broadcast'], { error: 'must be "shuffle", "key" or "broadcast"' });
const bridgeCommon = {
  id,
  host: z.string().max(255).optional(),
  pid: z.int().nonnegative().optional(),
  lang: z.string().max(32).optional(),
  startedAt: time,
};
const bridgeProducerRegistration = z.looseObject({
  kind: z.literal('producer'),
  ...bridgeCommon,
  streams: z.array(name).min(1, { error: 'name at least one stream' }).max(64),
});
const bridgeConsumerRegistration = z.looseObject({
  kind: z.literal('consumer'),
  ...bridgeCommon,
  group: name,
  stream: name,
  grouping: bridgeGrouping,
});
const bridgeRegisterRequest = z.discriminatedUnion('kind', [bridgeProducerRegistration, bridgeConsumerRegistration], {
  error: (iss) => (iss.code === 'invalid_union' ? 'kind: must be "producer" or "consumer"' : undefined),
});
const bridgeRegisterReply = reply({ heartbeatMs: positive, leaseMs: positive, creditGroup: z.string().regex(GROUP_PATTERN).optional(), index: count.optional() });
const bridgeStats = z.looseObject({
  records: count.optional(), pending: count.optional(), debt: count.optional(), paused: z.boolean().optional(), credited: count.optional(),
});
const bridgeHeartbeat = z.discriminatedUnion('kind', [
  bridgeProducerRegistration.extend({ at: time, stats: bridgeStats.optional() }),
  bridgeConsumerRegistration.extend({ at: time, stats: bridgeStats.optional() }),
], { error: (iss) => (iss.code === 'invalid_union' ? 'kind: must be "producer" or "consumer"' : undefined) });
const bridgeUnregisterRequest = z.looseObject({ id });
const bridgeUnregisterReply = reply({ removed: z.boolean() });
/** topo_state `consumer.<group>`. */
const bridgeConsumerRecord = z.looseObject({
  group: name,
  stream: name,
  grouping: bridgeGrouping,
  members: z.array(z.looseObject({ id, index: z.int().min(0).max(999) })).max(1_000),
  updatedAt: time,
});
/** The control ops a registered producer answers (the same messages as a worker's). */
const bridgeControl = z.discriminatedUnion('op', [controlOps.pause, controlOps.resume], {
  error: (iss) =>
    iss.code === 'invalid_union'
      ? `unknown bridge control op ${JSON.stringify((iss.input as { op?: unknown } | undefined)?.op)} (a registered producer answers pause and resume)`
      : undefined,
});

const bridgeSchemas = {
  registerRequest: bridgeRegisterRequest,
  registerReply: bridgeRegisterReply,
  heartbeat: bridgeHeartbeat,
  unregisterRequest: bridgeUnregisterRequest,
  unregisterReply: bridgeUnregisterReply,
  consumerRecord: bridgeConsumerRecord,
  control: bridgeControl,
} as const;

/**
 * Checks one KV `topo_state` value stored under `consumer.<group>`: a valid
 * BridgeConsumerRecord of that group (readers skip anything else with a logged error).
 */
export function checkBridgeConsumerEntry(key: string, value: unknown): { ok: true; record: C.BridgeConsumerRecord } | { ok: false; problem: string } {
  const r = checkMessage(bridgeConsumerRecord, value, 'BridgeConsumerRecord');
  if (!r.ok) return { ok: false, problem: r.message };
  const group = kvKeys.bridgeConsumerOf(key) ?? key;
  if (r.value.group !== group) return { ok: false, problem: `its group is ${JSON.stringify(r.value.group)}, not "${group}"` };
  return { ok: true, record: r.value };
}

// ---- end of bridges ----

/** topo_state `user.<instanceId>`. */
const instanceUserRecord = z.looseObject({
  instanceId: id,
  userKey: z.string().regex(/^U[A-Z2-7]{55}$/, { error: 'must be a user nkey public key (U and 55 base32 characters)' }),
  computation: name,
  mintedAt: time,
});

/** Checks one KV `topo_state` value stored under `user.<instanceId>`: a valid InstanceUserRecord of that instance. */
export function checkInstanceUserEntry(key: string, value: unknown): { ok: true; instanceId: string; record: C.InstanceUserRecord } | { ok: false; problem: string } {
  const r = checkMessage(instanceUserRecord, value, 'InstanceUserRecord');
  if (!r.ok) return { ok: false, problem: r.message };
  const instanceId = kvKeys.instanceUserOf(key) ?? key;
  if (r.value.instanceId !== instanceId) return { ok: false, problem: `its instanceId is ${JSON.stringify(r.value.instanceId)}, not "${instanceId}"` };
  return { ok: true, instanceId, record: r.value };
}

/** Every schema, by message. */
export const schemas = {
  batch,
  wireRecord,
  credit,
  deadLetter,
  registerRequest,
  registerReply,
  heartbeat,
  instanceReport,
  stuckReport,
  assignment,
  workerControl,
  controlOps,
  controlReplies,
  errorReply,
  computationRecord,
  historyEntry,
  progressEvent,
  swapJournal,
  workerStatus,
  instanceUserRecord,
  normalizedMetadata,
  /** Bridges (producers and consumers outside the controller). */
  bridge: bridgeSchemas,
  api: {
    deploy: deployRequest,
    kill: nameRequest,
    swap: swapRequest,
    rollback: rollbackRequest,
    promote: promoteRequest,
    scale: scaleRequest,
    fuse: fuseRequest,
    split: nameRequest,
    history: nameRequest,
    status: emptyRequest,
    workers: emptyRequest,
  },
} as const;

// ---- validation ---------------------------------------------------------------------

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

function shown(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? 'nothing' : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  return s.length > 60 ? `${s.slice(0, 60)}… (${s.length} characters)` : s;
}

/** The issues of a failed parse as `path: message`, the path naming the field (`instances[0].lastError`). */
export function describeIssues(error: z.ZodError, max = 3): string {
  const parts = error.issues.slice(0, max).map((i) => {
    const path = formatPath(i.path);
    const got = 'input' in i && i.code !== 'invalid_type' && i.code !== 'invalid_union' && i.code !== 'unrecognized_keys' ? `, got ${shown(i.input)}` : '';
    return path === '(root)' ? `${i.message}${got}` : `${path}: ${i.message}${got}`;
  });
  if (error.issues.length > max) parts.push(`and ${error.issues.length - max} more`);
  return parts.join('; ');
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; message: string; error: z.ZodError };

/** Validates `input` with `schema`; on failure, a message naming the field: `swap request: canary must be ...`. */
export function checkMessage<S extends z.ZodType>(schema: S, input: unknown, what: string): ParseResult<z.output<S>> {
  const r = schema.safeParse(input, { reportInput: true });
  if (r.success) return { ok: true, value: r.data };
  const root = r.error.issues.length === 1 && r.error.issues[0]!.path.length === 0 && r.error.issues[0]!.code === 'invalid_type';
  const message = root ? `${what} must be a JSON object` : `${what}: ${describeIssues(r.error)}`;
  return { ok: false, message, error: r.error };
}

/**
 * Validates a request: returns it parsed, or throws BadRequestError naming
 * the field. A request whose only problems are in `metadata` gets
 * InvalidMetadataError from validateMetadata instead (its detail lists every
 * bad metadata field, as a deploy has always answered).
 */
export function parseRequest<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = checkMessage(schema, input, what);
  if (r.ok) return r.value;
  if (r.error.issues.every((i) => i.path[0] === 'metadata')) {
    validateMetadata((input as { metadata?: unknown }).metadata); // throws InvalidMetadataError
    throw new InvalidMetadataError(`${what}: ${describeIssues(r.error)}`);
  }
  throw new BadRequestError(r.message, { detail: r.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message })) });
}

/**
 * Checks one KV `topo_state` value stored under `comp.<name>`: a valid
 * ComputationRecord of that name. Returns the record, or why it is not one
 * (readers skip it with a logged error).
 */
export function checkComputationEntry(key: string, value: unknown): { ok: true; record: C.ComputationRecord } | { ok: false; problem: string } {
  const r = checkMessage(computationRecord, value, 'ComputationRecord');
  if (!r.ok) return { ok: false, problem: r.message };
  const name = kvKeys.computationOf(key) ?? key;
  if (r.value.name !== name) return { ok: false, problem: `its name is ${JSON.stringify(r.value.name)}, not "${name}"` };
  return { ok: true, record: r.value };
}

// ---- JSON Schema --------------------------------------------------------------------

/** File name (without .json) -> JSON Schema of each message, as written to protocol/schemas/. */
export function jsonSchemas(): Record<string, unknown> {
  const flat: Record<string, z.ZodType> = {
    batch, credit, 'dead-letter': deadLetter,
    'register-request': registerRequest, 'register-reply': registerReply,
    heartbeat, 'stuck-report': stuckReport,
    'worker-control': workerControl, 'error-reply': errorReply,
    'computation-record': computationRecord, 'history-entry': historyEntry, 'progress-event': progressEvent, 'swap-journal': swapJournal, 'worker-status': workerStatus,
    'instance-user-record': instanceUserRecord,
  };
  for (const [op, s] of Object.entries(controlReplies)) flat[`control-reply-${op}`] = s;
  // The operator protocol's frames (PROTOCOL.md, "Hosted operators").
  Object.assign(flat, operatorSchemas);
  // Bridges: bridge-register-request.json, bridge-heartbeat.json, bridge-control.json, ...
  for (const [msg, s] of Object.entries(bridgeSchemas)) flat[`bridge-${msg.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`] = s;
  for (const [verb, s] of Object.entries(schemas.api)) flat[`api-${verb}-request`] = s;
  const out: Record<string, unknown> = {};
  for (const [file, s] of Object.entries(flat)) {
    out[file] = { ...z.toJSONSchema(s, { unrepresentable: 'any', target: 'draft-2020-12' }), title: file };
  }
  return out;
}

// ---- compile-time agreement with the interfaces in control.ts -----------------------

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
/** What a schema accepts is usable as the interface of the same message. */
type Fits<S extends z.ZodType, T> = [z.output<S>] extends [T] ? true : false;

export type SchemaChecks = [
  Assert<Same<z.output<typeof instanceState>, C.InstanceState>>,
  Assert<Same<z.output<typeof lang>, C.Lang>>,
  Assert<Same<z.output<typeof workerControl>['op'], C.WorkerControl['op']>>,
  Assert<Fits<typeof normalizedMetadata, NormalizedMetadata>>,
  Assert<Fits<typeof batch, Batch>>,
  Assert<Fits<typeof credit, C.Credit>>,
  Assert<Fits<typeof deadLetter, C.DeadLetter>>,
  Assert<Fits<typeof registerRequest, C.RegisterRequest>>,
  Assert<Fits<typeof heartbeat, C.Heartbeat>>,
  Assert<Fits<typeof stuckReport, C.StuckReport>>,
  Assert<Fits<typeof workerControl, C.WorkerControl>>,
  Assert<Fits<typeof computationRecord, C.ComputationRecord>>,
  Assert<Fits<typeof historyEntry, C.HistoryEntry>>,
  Assert<Fits<typeof workerStatus, C.WorkerStatus>>,
  Assert<Fits<typeof instanceUserRecord, C.InstanceUserRecord>>,
  Assert<Fits<typeof rollbackRequest, C.RollbackRequest>>,
  Assert<Fits<typeof scaleRequest, C.ScaleRequest>>,
  Assert<Fits<typeof nameRequest, C.KillRequest>>,
  // bridges
  Assert<Fits<typeof bridgeRegisterRequest, C.BridgeRegisterRequest>>,
  Assert<Fits<typeof bridgeHeartbeat, C.BridgeHeartbeat>>,
  Assert<Fits<typeof bridgeConsumerRecord, C.BridgeConsumerRecord>>,
];
