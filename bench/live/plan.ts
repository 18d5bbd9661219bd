/** Timing of the live-change benches (shared by the harness and the RESULTS.md method text). */

/** Source running before the first change. */
export const WARMUP_MS = 3_000;
/** Between two changes, so each starts from a steady state. */
export const GAP_MS = 1_000;
