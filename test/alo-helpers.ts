/**
 * The audit of the at-least-once fixtures (test/fixtures/alo-lib.ts): every tick gives each key one
 * record, so a count that is not its record's tick is a loss or a double count, and a tick missing at
 * the output is a loss. Used by test/at-least-once.test.ts and the chaos run (bench/chaos/durable.ts).
 */
import type { CountValue } from './fixtures/alo-lib.js';

export interface Out extends CountValue {
  key: string;
  producer: string;
}


/** What the output says: records whose count is not their tick (a loss or a double count), missing ticks, duplicates. */
export function exactness(out: readonly Out[]) {
  const ticks = new Map<string, Set<number>>();
  let wrong = 0;
  let duplicates = 0;
  const examples: string[] = [];
  for (const o of out) {
    if (o.count !== o.tick) {
      wrong++;
      if (examples.length < 5) examples.push(`${o.key}: tick ${o.tick} counted as ${o.count}`);
    }
    let s = ticks.get(o.key);
    if (!s) ticks.set(o.key, (s = new Set()));
    if (s.has(o.tick)) duplicates++;
    s.add(o.tick);
  }
  let missing = 0;
  let minMax = Infinity;
  for (const s of ticks.values()) {
    const max = Math.max(...s);
    minMax = Math.min(minMax, max);
    for (let t = 1; t <= max; t++) if (!s.has(t)) missing++;
  }
  return { keys: ticks.size, wrong, missing, duplicates, minMax, examples };
}

