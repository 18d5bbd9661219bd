/**
 * The oracle's input and output: plain data, so a plan can be computed,
 * stored, diffed and tested without NATS. Every field is documented here and
 * nowhere else.
 */
import type { Grouping } from '../../protocol/index.js';

/** The language an operator is written in, and that a worker can host. */
export type Lang = 'ts' | 'python' | 'cmd';

export interface OracleComputation {
  name: string;
  lang: Lang;
  istreams: { stream: string; grouping: Grouping }[];
  ostreams: string[];
  /** Desired (or current) instance count. */
  instances: number;
  /** Streams it declares at-least-once (never fused, rule 12). */
  atLeastOnce?: string[];
  hints?: {
    /** false: never fuse this computation with another. */
    fuse?: boolean;
    /** 'heavy': runs in its own thread, never fused. */
    cpu?: 'heavy' | 'light';
    /** The oracle may scale it between min and max instances (inclusive). */
    autoscale?: { min: number; max: number };
  };
}

export interface OracleWorker {
  workerId: string;
  host: string;
  /** The language of operators it hosts. */
  lang: Lang;
  alive: boolean;
  /** Cores or slots; default 1. 0 (or less) means draining: nothing is placed on it. */
  capacity?: number;
}

export interface ComputationStats {
  recordsPerSec: number;
  cpuMicrosPerRecord: number;
  queueDepth: number;
  /** Fraction of the last second the instances were busy, 0..1. */
  busyRatio: number;
  /** Recent per-second busy ratios, oldest first. */
  busyWindow?: number[];
}

export interface Overrides {
  /** `topo fuse a b`: fuse a with its downstream b when the hard rules hold. */
  fuse?: [string, string][];
  /** `topo split a`: a is never fused. Wins over a fuse override. */
  split?: string[];
}

export interface OracleInput {
  computations: OracleComputation[];
  workers: OracleWorker[];
  stats?: Record<string, ComputationStats>;
  overrides?: Overrides;
  /** The plan running now: kept where still valid, for stability. */
  current?: Plan;
}

export interface FusionGroup {
  /** Members joined by '+', e.g. 'a+b+c'; a singleton's id is its name. */
  id: string;
  /** In chain order: members[i] feeds members[i + 1]. */
  members: string[];
}

/** 'inline': in the worker's event loop; 'thread': a worker thread (CPU-heavy); 'external': a process of another language. */
export type Runner = 'inline' | 'thread' | 'external';

export interface InstancePlacement {
  computation: string;
  index: number;
  workerId: string;
  host: string;
  /** Id of the fusion group the computation belongs to. */
  group: string;
  runner: Runner;
}

export interface InstanceRef {
  computation: string;
  index: number;
}

export interface Plan {
  /** Every computation is in exactly one group, singletons included; sorted by id. */
  groups: FusionGroup[];
  instances: Record<string, number>;
  /** Sorted by computation, then index. */
  placements: InstancePlacement[];
  /** Instances no live worker can host (e.g. no worker of their language). */
  unplaced: InstanceRef[];
  /** Why: each decision in one human line. */
  notes: string[];
}

/** One live change, run by the controller one at a time in the order given. */
export type Change =
  | { kind: 'split'; group: string; members: string[] }
  | { kind: 'scale'; computation: string; from: number; to: number }
  | { kind: 'move'; computation: string; index: number; fromWorker: string; toWorker: string }
  | { kind: 'fuse'; members: string[] };
