/**
 * Subject naming, protocol v1. Every subject topo uses is built here so that
 * the names in PROTOCOL.md and the code cannot drift apart.
 */
export const PROTOCOL_VERSION = 1;

/** Number of partitions of every stream. Key grouping maps a key to one of them. */
export const PARTITIONS = 32;

/** Stream and computation names: subject-safe tokens (no dots, spaces or wildcards). */
export const NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

export const subjects = {
  /** Data batches of one partition of a stream. */
  data: (stream: string, partition: number) => `topo.data.${stream}.${partition}`,
  /** All partitions of a stream (shuffle and broadcast consumers, tap). */
  dataAll: (stream: string) => `topo.data.${stream}.*`,
  /** Every partition of every stream (`topo tap --trace`). */
  dataEveryStream: 'topo.data.*.*',
  /** Flow-control credits returned to one producer instance. */
  credit: (producerId: string) => `topo.fc.${producerId}`,
  /** Dead letters of one computation. */
  deadLetter: (computation: string) => `topo.dlq.${computation}`,
  deadLetterAll: 'topo.dlq.>',
  /** Structured log lines of one computation instance. */
  log: (computation: string, index: number) => `topo.log.${computation}.${index}`,
  logAll: (computation: string) => `topo.log.${computation}.*`,
  logEverything: 'topo.log.>',
  /** CLI -> controller requests. */
  api: (verb: string) => `topo.api.${verb}`,
  /** Controller -> the client that sent a deploy or swap naming `progressId`: each step as it ends (JSON ProgressEvent, publish). */
  progress: (progressId: string) => `topo.progress.${progressId}`,
  /** Worker -> controller registration request. */
  register: 'topo.worker.register',
  /** Worker -> controller heartbeat (publish). */
  heartbeat: (workerId: string) => `topo.worker.hb.${workerId}`,
  heartbeatAll: 'topo.worker.hb.*',
  /** Controller -> worker control requests. */
  workerControl: (workerId: string) => `topo.worker.ctl.${workerId}`,
  /** Worker (its watchdog thread) -> anyone: a callback blocked the worker's event loop (StuckReport, JSON publish). */
  stuck: (workerId: string) => `topo.worker.stuck.${workerId}`,
  stuckAll: 'topo.worker.stuck.*',
  /**
   * A tap announces it listens to a stream (publish, empty, about once a
   * second): producers of a fused stream, which otherwise hand records over
   * in-process only, then also publish them on NATS.
   */
  tapInterest: (stream: string) => `topo.tap.${stream}`,
  tapInterestAll: 'topo.tap.*',
  // ---- bridges: producers and consumers outside the controller (PROTOCOL.md, "Bridges") ----
  /** Bridge -> controller: register a producer or a consumer-group member (request/reply, BridgeRegisterRequest). */
  bridgeRegister: 'topo.bridge.register',
  /** Bridge -> controller: leave at once instead of letting the lease run out (request/reply, `{id}`). */
  bridgeUnregister: 'topo.bridge.unregister',
  /** Bridge -> controller: lease renewal (publish, BridgeHeartbeat), every heartbeatMs. */
  bridgeHeartbeat: (bridgeId: string) => `topo.bridge.hb.${bridgeId}`,
  bridgeHeartbeatAll: 'topo.bridge.hb.*',
  /** Controller (or a swap) -> registered producer: `pause` / `resume` WorkerControl ops (request/reply, PauseReply). */
  bridgeControl: (bridgeId: string) => `topo.bridge.ctl.${bridgeId}`,
  // ---- end of bridges ----
} as const;

/** KV buckets and object store of the control plane. */
export const buckets = {
  /** Desired state: key `comp.<name>` holds a ComputationRecord. */
  state: 'topo_state',
  /** Worker leases as last seen by the controller: key `<workerId>`. */
  workers: 'topo_workers',
  /** Deploy history: key `<name>.<version>`. */
  history: 'topo_history',
  /** Computation artifacts, object name = sha256 hex of the bundle. */
  artifacts: 'topo_artifacts',
  /** State snapshots handed between workers by a swap: object `<swapId>/<instanceId>`. */
  snapshots: 'topo_snapshots',
  /** State checkpoints (protocol/checkpoint.ts): `<computation>.p<partition>` and `<computation>.m<index>`. */
  checkpoints: 'topo_checkpoints',
} as const;

/** Keys of the control-plane KV buckets: every key is built here, never by hand. */
export const kvKeys = {
  /** topo_state: desired state of one computation (ComputationRecord). */
  computation: (name: string) => `comp.${name}`,
  computationPrefix: 'comp.',
  /** Watch/list filter over every computation. */
  computationAll: 'comp.>',
  computationList: 'comp.*',
  /** topo_state: journal of a swap under way (SwapJournal). */
  swap: (name: string) => `swap.${name}`,
  swapList: 'swap.*',
  /** topo_history: one history entry. */
  history: (name: string, version: number) => `${name}.${version}`,
  historyOf: (name: string) => `${name}.>`,
  /** Name of a computation from its topo_state key, or undefined for another kind of key. */
  computationOf: (key: string): string | undefined => (key.startsWith('comp.') ? key.slice('comp.'.length) : undefined),
  /** topo_state: the NATS user minted for one instance (InstanceUserRecord), until revoked. */
  instanceUser: (instanceId: string) => `user.${instanceId}`,
  instanceUserList: 'user.*',
  instanceUserOf: (key: string): string | undefined => (key.startsWith('user.') ? key.slice('user.'.length) : undefined),
  // ---- bridges ----
  /** topo_state: a consumer group registered by bridges (BridgeConsumerRecord); producers count it in flow control. */
  bridgeConsumer: (group: string) => `consumer.${group}`,
  bridgeConsumerAll: 'consumer.>',
  bridgeConsumerList: 'consumer.*',
  /** Group of a bridge consumer from its topo_state key, or undefined for another kind of key. */
  bridgeConsumerOf: (key: string): string | undefined => (key.startsWith('consumer.') ? key.slice('consumer.'.length) : undefined),
  // ---- end of bridges ----
} as const;

/** JetStream streams that keep recent logs and dead letters for later reading. */
export const jsStreams = {
  logs: 'TOPO_LOGS',
  deadLetters: 'TOPO_DLQ',
} as const;

/** Names of the JetStream resources of at-least-once streams (PROTOCOL.md, "Delivery"). */
export const atLeastOnceNames = {
  /** The JetStream stream holding an at-least-once topo stream; its subjects are the stream's data subjects. */
  stream: (stream: string) => `TOPO_DATA_${stream}`,
  /**
   * A durable consumer of one partition of an at-least-once stream for one consumer group, per incarnation:
   * `<group>_p<partition>_<incarnation>` ("#" of a broadcast group's id becomes "_i"). The one that opens it
   * deletes the group's older ones of that partition, once its own exists.
   */
  consumerPrefix: (group: string, partition: number) => `${group.replace('#', '_i')}_p${partition}_`,
} as const;
