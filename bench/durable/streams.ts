/** Streams of the recovery bench (bench/durable/ticks.ts -> tick-counter.ts), both at-least-once. */
export const RECOVERY_STREAMS = { in: 'bdur-in', out: 'bdur-out' } as const;
export const TICKS = 'bdur-ticks';
export const TICK_COUNTER = 'bdur-tcounter';
/** One record per key every TICK_MS: 10,000 records/s. */
export const TICK_KEYS = 100;
export const TICK_MS = 10;

/** What the counter produces: its count of the key and the pid of the worker process that counted it. */
export interface TickCount {
  count: number;
  pid: number;
}
