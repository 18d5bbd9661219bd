/**
 * Second stage of the live fuse/split bench's chain: a key-grouped counter,
 * output as the swap bench's counter. Two versions (counter.ts, counter-b.ts)
 * differ only in their code tag, for the hot swaps measured as the baseline.
 */
import { benchCounter } from '../swap/counter.js';
import { LIVE } from './streams.js';

export function liveCounter(code: string) {
  return benchCounter(code, LIVE.counter, LIVE.mid);
}
