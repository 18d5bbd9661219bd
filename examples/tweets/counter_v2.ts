/**
 * Version 2 of the counter, for `topo swap counter examples/tweets/counter_v2.ts`.
 * Same name, istreams, ostreams and state layout (tag -> count of the current
 * window) as counter.ts, so a hot swap hands v1's counts and pending window
 * timer to it and the window in progress keeps counting where v1 stopped.
 * What changes, visibly on `topo tap top-hashtags`: the top 10 instead of 5,
 * and a `version: 2` field in each record.
 */
import { defineComputation } from '../../sdk/index.js';
import type { Hashtag, TopHashtags } from './model.js';
import { WINDOW_MS, clearWindow, nextWindowEnd, topTags } from './window.js';

export { WINDOW_MS };
export const TOP_N = 10;
export const VERSION = 2;

/** A TopHashtags record that says which counter version made it. */
export interface TopHashtagsV2 extends TopHashtags {
  version: typeof VERSION;
}

export default defineComputation({
  name: 'counter',
  istreams: [{ stream: 'hashtags', grouping: 'key' }],
  ostreams: ['top-hashtags'],
  delivery: { hashtags: 'at-least-once', 'top-hashtags': 'at-least-once' },
  init(ctx) {
    // After a swap, init runs with v1's state and timers already restored.
    // Setting 'window' replaces the restored timer, with the same window end
    // (windows are aligned to multiples of WINDOW_MS). Only if v1's timer came
    // due during the swap itself are that window's counts emitted with the
    // next window's; no count is lost. Setting it always (rather than only on
    // a fresh start) keeps v2 emitting even where no timer was handed over.
    ctx.setTimer('window', nextWindowEnd(Date.now()));
    ctx.log.info({ version: VERSION, tags: ctx.state.size }, `counter v${VERSION} started with ${ctx.state.size} tags counted so far in this window`);
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
      // version first, so it shows at the start of each record in `topo tap top-hashtags`.
      const out: TopHashtagsV2 = { version: VERSION, window, instance: ctx.instance.index, top };
      ctx.produceRecord('top-hashtags', String(window), out);
    }
    ctx.log.info({ window, tags, version: VERSION }, `v${VERSION} window ${new Date(window).toISOString()}: ${tags} distinct tags, top ${top.map((t) => `#${t.tag} ${t.count}`).join(', ') || 'none'}`);
    clearWindow(ctx.state);
    ctx.setTimer('window', windowEnd + WINDOW_MS);
  },
});
