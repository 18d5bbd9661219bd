/**
 * Counts hashtags in tumbling windows of WINDOW_MS. Key grouping sends every
 * record of a tag to the same instance, so each instance's counts are exact
 * for its tags. At each window end a timer emits the instance's TOP_N tags as
 * one record, keyed by the window start, and starts the next window.
 */
import { defineComputation } from '../../sdk/index.js';
import type { Hashtag, TopHashtags } from './model.js';
import { WINDOW_MS, clearWindow, nextWindowEnd, topTags } from './window.js';

export { WINDOW_MS };
export const TOP_N = 5;

export default defineComputation({
  name: 'counter',
  istreams: [{ stream: 'hashtags', grouping: 'key' }],
  ostreams: ['top-hashtags'],
  // Kept in JetStream and replayed from the checkpoint when a worker dies: the counts stay exact (README, Durability).
  delivery: { hashtags: 'at-least-once', 'top-hashtags': 'at-least-once' },
  init(ctx) {
    ctx.setTimer('window', nextWindowEnd(Date.now()));
  },
  processRecord(ctx, record) {
    const { tag } = record.value as Hashtag;
    ctx.state.set(tag, (ctx.state.get<number>(tag) ?? 0) + 1);
  },
  processTimer(ctx, _key, windowEnd) {
    const window = windowEnd - WINDOW_MS;
    const tags = ctx.state.size;
    const top = topTags(ctx.state, TOP_N);
    if (top.length > 0) {
      const out: TopHashtags = { window, instance: ctx.instance.index, top };
      ctx.produceRecord('top-hashtags', String(window), out);
    }
    ctx.log.info({ window, tags }, `window ${new Date(window).toISOString()}: ${tags} distinct tags, top ${top.map((t) => `#${t.tag} ${t.count}`).join(', ') || 'none'}`);
    clearWindow(ctx.state);
    ctx.setTimer('window', windowEnd + WINDOW_MS);
  },
});
