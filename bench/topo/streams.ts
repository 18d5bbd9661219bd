/** Stream names of the bench topologies, shared by the computations and the harness. */
export const BENCH_STREAMS = {
  /** Harness -> source and sink: one record {count} that starts a run. */
  start: 'bench-start',
  /** source -> sink (one-hop), source -> pass (three-stage). */
  first: 'bench-a',
  /** pass -> sink (three-stage). */
  second: 'bench-b',
  /** sink -> harness: progress and the final figure (a BenchReport). */
  report: 'bench-report',
} as const;

/** The value the harness puts on the start stream. */
export interface BenchStart {
  count: number;
}

/** What the sink produces on the report stream. */
export interface BenchReport {
  /** Records received so far. */
  count: number;
  /** True once `count` reached the expected count; then the times are set. */
  done: boolean;
  /** performance.now() in the sink at the first and at the last record. */
  firstMs: number;
  lastMs: number;
}
