/**
 * Control-plane messages, protocol v1. Control messages are JSON (they are
 * rare and humans read them with `nats sub`); data-plane messages (batches,
 * credits) are msgpack. Every request gets a Reply.
 */
import type { WireError } from './errors.js';
import type { NormalizedMetadata } from './metadata.js';

export type Reply<T extends object = object> = ({ ok: true } & T) | { ok: false; error: WireError };

/** Languages a worker can host. */
export type Lang = 'ts' | 'python';

// ---- worker <-> controller -------------------------------------------------

/** Worker -> controller, request on `topo.worker.register`. */
export interface RegisterRequest {
  workerId: string;
  host: string;
  pid: number;
  lang: Lang;
  startedAt: number;
}
export interface RegisterReply {
  /** How often the worker must publish a heartbeat. */
  heartbeatMs: number;
  /** A worker silent for this long is considered dead and its instances are re-placed. */
  leaseMs: number;
}

export type InstanceState = 'starting' | 'running' | 'paused' | 'failed' | 'stopping';

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
}

/** Worker -> controller, publish on `topo.worker.hb.<workerId>`. */
export interface Heartbeat {
  workerId: string;
  host: string;
  pid: number;
  lang: Lang;
  at: number;
  instances: InstanceReport[];
}

/** What a worker must run: one instance of one computation version. */
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
}

/** Controller -> worker, request on `topo.worker.ctl.<workerId>`. */
export type WorkerControl =
  | { op: 'assign'; assignment: Assignment }
  | { op: 'unassign'; instanceId: string }
  /** Stop emitting to ostreams (output is held) and stop taking input. */
  | { op: 'pause'; instanceId: string }
  | { op: 'resume'; instanceId: string }
  /** Process everything already received, flush outputs, then reply. */
  | { op: 'drain'; instanceId: string; timeoutMs?: number }
  /** Destroy every instance and exit the process. */
  | { op: 'stop' };

// ---- desired state (KV) ----------------------------------------------------

export interface Placement {
  index: number;
  instanceId: string;
  workerId: string;
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
}

// ---- CLI -> controller -----------------------------------------------------

/** `topo.api.deploy`: the artifact must already be in the object store. */
export interface DeployRequest {
  sha: string;
  lang: Lang;
  metadata: NormalizedMetadata;
  instances?: number;
  source?: string;
}
export interface DeployReply {
  computation: ComputationRecord;
}

/** `topo.api.kill` */
export interface KillRequest {
  name: string;
}

export interface WorkerStatus {
  workerId: string;
  host: string;
  pid: number;
  lang: Lang;
  alive: boolean;
  lastSeen: number;
  instances: number;
}

export interface InstanceStatus extends InstanceReport {
  workerId: string;
  /** Per-second rates computed by the controller from successive heartbeats. */
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
  /** Sums over instances. */
  inPerSec: number;
  outPerSec: number;
  errors: number;
  deadLetters: number;
}

/** `topo.api.status` */
export interface StatusReply {
  natsUrl?: string;
  workers: WorkerStatus[];
  computations: ComputationStatus[];
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
