/**
 * A broken counter whose init throws, for trying a rollback:
 *   topo swap counter examples/tweets/broken/counter_init_throws.ts
 * The new instances fail to start, the swap is rolled back and v1 keeps counting.
 */
import { defineComputation } from '../../../sdk/index.js';
import type { Hashtag } from '../model.js';

export default defineComputation({
  name: 'counter',
  istreams: [{ stream: 'hashtags', grouping: 'key' }],
  ostreams: ['top-hashtags'],
  delivery: { hashtags: 'at-least-once', 'top-hashtags': 'at-least-once' },
  init() {
    throw new Error('counter_init_throws: this version cannot start (on purpose)');
  },
  processRecord(ctx, record) {
    const { tag } = record.value as Hashtag;
    ctx.state.set(tag, (ctx.state.get<number>(tag) ?? 0) + 1);
  },
});
