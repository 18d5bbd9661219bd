/**
 * Version 2 of the counter, for `topo swap counter examples/tweets/counter_v2.ts`.
 * Same name, istreams, ostreams and state layout (tag -> count of the current
 * window) as counter.ts, so a hot swap hands v1's counts and pending window
 * timer to it and the window in progress keeps counting where v1 stopped.
 * What changes, visibly on `topo tap top-hashtags`: the top 10 instead of 5,
 * and a `version: 2` field in each record.
 */
import { defineComputation, type KeyedState } from '../../sdk/index.js';
import type { Hashtag, TagCount, TopHashtags } from './model.js';

export const WINDOW_MS = 5_000;
export const TOP_N = 10;
export const VERSION = 2;

/** A TopHashtags record that says which counter version made it. */
export interface TopHashtagsV2 extends TopHashtags {
  version: typeof VERSION;
}

function topTags(state: KeyedState, n: number): TagCount[] {
  const all: TagCount[] = [];
  for (const tag of state.keys()) all.push({ tag, count: state.get<number>(tag) ?? 0 });
  all.sort((a, b) => b.count - a.count || (a.tag < b.tag ? -1 : 1));
  return all.slice(0, n);
}

export default defineComputation({
  name: 'counter',
  istreams: [{ stream: 'hashtags', grouping: 'key' }],
  ostreams: ['top-hashtags'],
  init(ctx) {
    // After a swap, init runs with v1's state and timers already restored.
    // Setting 'window' replaces the restored timer, with the same window end
    // (windows are aligned to multiples of WINDOW_MS). Only if v1's timer came
    // due during the swap itself are that window's counts emitted with the
    // next window's; no count is lost. Setting it always (rather than only on
    // a fresh start) keeps v2 emitting even where no timer was handed over.
    const firstEnd = (Math.floor(Date.now() / WINDOW_MS) + 1) * WINDOW_MS;
    ctx.setTimer('window', firstEnd);
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
    for (const tag of [...ctx.state.keys()]) ctx.state.delete(tag);
    ctx.setTimer('window', windowEnd + WINDOW_MS);
  },
});
