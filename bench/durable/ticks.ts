/** Source of the recovery bench: TICK_KEYS records every TICK_MS on an at-least-once stream, its tick in (checkpointed) state. */
import { defineComputation } from '../../sdk/index.js';
import { RECOVERY_STREAMS, TICK_KEYS, TICK_MS, TICKS } from './streams.js';

const keys = Array.from({ length: TICK_KEYS }, (_, k) => `key-${k}`);

export default defineComputation({
  name: TICKS,
  istreams: [],
  ostreams: [RECOVERY_STREAMS.in],
  delivery: { [RECOVERY_STREAMS.in]: 'at-least-once' },
  init(ctx) {
    ctx.setTimer('tick', Date.now());
  },
  processTimer(ctx, _key, atMs) {
    const tick = (ctx.state.get<number>('tick') ?? 0) + 1;
    ctx.state.set('tick', tick);
    for (const k of keys) ctx.produceRecord(RECOVERY_STREAMS.in, k, tick);
    ctx.setTimer('tick', Math.max(atMs + TICK_MS, Date.now() - 10 * TICK_MS));
  },
});
