/**
 * Counts hashtags in tumbling windows of WINDOW_MS. Key grouping sends every
 * record of a tag to the same instance, so each instance's counts are exact
 * for its tags. At each window end a timer emits the instance's TOP_N tags as
 * one record, keyed by the window start, and starts the next window.
 */
import { defineComputation, type KeyedState } from '../../sdk/index.js';
import type { Hashtag, TagCount, TopHashtags } from './model.js';

export const WINDOW_MS = 5_000;
export const TOP_N = 5;

/** The keyed state holds exactly the counts of the current window: tag -> count. */
function topTags(state: KeyedState, n: number): TagCount[] {
  const all: TagCount[] = [];
  for (const tag of state.keys()) all.push({ tag, count: state.get<number>(tag) ?? 0 });
  // Ties broken by name so the output does not depend on arrival order.
  all.sort((a, b) => b.count - a.count || (a.tag < b.tag ? -1 : 1));
  return all.slice(0, n);
}

export default defineComputation({
  name: 'counter',
  istreams: [{ stream: 'hashtags', grouping: 'key' }],
  ostreams: ['top-hashtags'],
  init(ctx) {
    // Windows are aligned to multiples of WINDOW_MS, so all instances share boundaries.
    const firstEnd = (Math.floor(Date.now() / WINDOW_MS) + 1) * WINDOW_MS;
    ctx.setTimer('window', firstEnd);
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
    for (const tag of [...ctx.state.keys()]) ctx.state.delete(tag);
    ctx.setTimer('window', windowEnd + WINDOW_MS);
  },
});
