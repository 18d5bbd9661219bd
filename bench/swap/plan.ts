/** Timing of one swap bench run (shared by the harness and the RESULTS.md method text). */

/** Source running before anything is measured (JIT, connections, first credits). */
export const WARMUP_MS = 3_000;
/** Measured without swaps before the first one. */
export const BASELINE_MS = 5_000;
/** Pause between two swaps, so each swap starts from a steady state. */
export const GAP_MS = 250;
/** Records up to this long after a swap's reply still count as "during the swap" (its backlog drains). */
export const TAIL_MS = 100;
