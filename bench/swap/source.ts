/**
 * Paced source of the swap bench: after a start record {keys, everyMs}, one
 * record per key every `everyMs` (1000 keys every 10 ms = 100,000 records/s).
 * Ticks are numbered and timed by their planned time; a tick that is late
 * (the source was held by a swap's pause or by flow control) is emitted as
 * soon as possible, never skipped, so the rate holds on average and every
 * record of every key is accounted for. A stop record ends it with a report.
 */
import { defineComputation } from '../../sdk/index.js';
import { benchSwapKey, SWAP_BENCH, type SourceControl, type SourceReport, type TickValue } from './streams.js';

/** Ticks emitted in one timer callback at most, so a catch-up does not hog the instance. */
const MAX_TICKS_PER_CALL = 8;

let keys: string[] = [];
let everyMs = 10;
let nextTick = 1;
let nextAt = 0;
let running = false;

export default defineComputation({
  name: 'bswap-source',
  istreams: [SWAP_BENCH.control],
  ostreams: [SWAP_BENCH.input, SWAP_BENCH.report],
  processRecord(ctx, record) {
    const c = record.value as SourceControl;
    if (c.op === 'start' && !running) {
      keys = Array.from({ length: c.keys }, (_, i) => benchSwapKey(i));
      everyMs = c.everyMs;
      running = true;
      nextAt = Date.now();
      ctx.setTimer('tick', nextAt);
    } else if (c.op === 'stop' && running) {
      running = false;
      const report: SourceReport = { lastTick: nextTick - 1, keys: keys.length };
      ctx.produceRecord(SWAP_BENCH.report, 'report', report);
    }
  },
  processTimer(ctx) {
    if (!running) return;
    const now = Date.now();
    for (let n = 0; n < MAX_TICKS_PER_CALL && nextAt <= now; n++) {
      const value: TickValue = { seq: nextTick, t: nextAt };
      for (let i = 0; i < keys.length; i++) ctx.produceRecord(SWAP_BENCH.input, keys[i]!, value);
      nextTick++;
      nextAt += everyMs;
    }
    ctx.setTimer('tick', nextAt);
  },
});
