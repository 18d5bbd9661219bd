/** Stream names and record shapes of the swap bench, shared by its computations and harness. */
export const SWAP_BENCH = {
  /** Harness -> source: one SourceControl record starts or stops the source. */
  control: 'bswap-control',
  /** source -> counter: keyed records at a fixed rate. */
  input: 'bswap-in',
  /** counter -> harness (tapped): one CountedValue per input record. */
  output: 'bswap-out',
  /** source -> harness: its last tick once stopped. */
  report: 'bswap-report',
  /** Name of the swapped computation. */
  counter: 'bswap-counter',
} as const;

export type SourceControl =
  | { op: 'start'; keys: number; everyMs: number }
  | { op: 'stop' };

/** What the source emits: tick number (every key gets every tick) and the tick's planned time. */
export interface TickValue {
  seq: number;
  /** Planned emission time of the tick (ms since epoch): latency counts from here, so a held-back source shows. */
  t: number;
}

/** What the counter emits. */
export interface CountedValue extends TickValue {
  /** Records of this key counted so far, across versions. */
  count: number;
  /** Which of the two alternating versions counted it. */
  code: string;
}

export interface SourceReport {
  /** Last tick emitted: every key has seqs 1..lastTick. */
  lastTick: number;
  keys: number;
}

/** Key names: 8 characters, like the throughput bench. */
export const benchSwapKey = (i: number): string => `s${i.toString(36).padStart(7, '0')}`;
