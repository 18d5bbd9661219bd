/**
 * Running word counts. Key grouping sends every occurrence of a word to the
 * same instance, so its count is exact. Once a second a timer emits
 * {word, count} for each word that changed since the last emission.
 */
import { defineComputation } from '../../sdk/index.js';

export const EMIT_EVERY_MS = 1_000;

/** Keyed state: word -> WordCount. */
interface WordCount {
  count: number;
  changed: boolean;
}

/** On stream `counts`, keyed by the word. */
export interface CountUpdate {
  word: string;
  count: number;
}

export default defineComputation({
  name: 'count',
  istreams: [{ stream: 'words', grouping: 'key' }],
  ostreams: ['counts'],
  init(ctx) {
    ctx.setTimer('emit', Date.now() + EMIT_EVERY_MS);
  },
  processRecord(ctx, record) {
    const word = record.key;
    const entry = ctx.state.get<WordCount>(word) ?? { count: 0, changed: false };
    entry.count += typeof record.value === 'number' ? record.value : 1;
    entry.changed = true;
    ctx.state.set(word, entry);
  },
  processTimer(ctx, _key, atMs) {
    for (const word of ctx.state.keys()) {
      const entry = ctx.state.get<WordCount>(word);
      if (!entry?.changed) continue;
      const update: CountUpdate = { word, count: entry.count };
      ctx.produceRecord('counts', word, update);
      entry.changed = false;
      ctx.state.set(word, entry);
    }
    ctx.setTimer('emit', atMs + EMIT_EVERY_MS);
  },
});
