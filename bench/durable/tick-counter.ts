/**
 * Counter of the recovery bench: key-grouped, at-least-once in and out. Each
 * output record carries the pid of the worker process that counted it, so a
 * tap can tell the first record processed by the instance that replaced a
 * killed one (it continues its predecessor's producer id and sequence).
 */
import { defineComputation } from '../../sdk/index.js';
import { RECOVERY_STREAMS, TICK_COUNTER, type TickCount } from './streams.js';

export default defineComputation({
  name: TICK_COUNTER,
  istreams: [{ stream: RECOVERY_STREAMS.in, grouping: 'key' }],
  ostreams: [RECOVERY_STREAMS.out],
  delivery: { [RECOVERY_STREAMS.in]: 'at-least-once', [RECOVERY_STREAMS.out]: 'at-least-once' },
  processRecord(ctx, record) {
    const count = (ctx.state.get<number>(record.key) ?? 0) + 1;
    ctx.state.set(record.key, count);
    ctx.produceRecord(RECOVERY_STREAMS.out, record.key, { count, pid: process.pid } satisfies TickCount);
  },
});
