/**
 * The five trivial record functions of the fusion bench. The fused chain runs
 * one per computation (stage.ts); the hand-written baseline calls all five in
 * a loop in one computation (loop.ts), so both do the same work per record.
 */
import type { BenchValue } from '../records.js';

export type Step = (v: BenchValue) => BenchValue;

export const STEPS: readonly Step[] = [
  (v) => ({ id: v.id + 1, user: v.user, text: v.text }),
  (v) => ({ id: v.id ^ 0x55, user: v.user, text: v.text }),
  (v) => ({ id: v.id + (v.user.length & 1), user: v.user, text: v.text }),
  (v) => ({ id: v.id ^ 0x55, user: v.user, text: v.text }),
  (v) => ({ id: v.id - 1, user: v.user, text: v.text }),
];

/** Streams: bench-source -> bench-a -> stage 1 -> bfuse-1 -> ... -> stage 5 -> bfuse-5 -> sink. */
export const stageName = (i: number): string => `bfuse-stage-${i}`;
export const stageOut = (i: number): string => `bfuse-${i}`;
export const FUSION_OUT = stageOut(STEPS.length);
export const FUSION_SINK = 'bfuse-sink';
export const FUSION_LOOP = 'bfuse-loop';
