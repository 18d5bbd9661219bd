/**
 * A broken counter whose processRecord throws on every record, for trying a rollback:
 *   topo swap counter examples/tweets/broken/counter_throws.ts
 * It starts fine, fails its probation on the first record, and the swap is
 * rolled back: v1 gets back the records this version took and keeps counting.
 */
import { defineComputation } from '../../../sdk/index.js';
import type { Hashtag } from '../model.js';

export default defineComputation({
  name: 'counter',
  istreams: [{ stream: 'hashtags', grouping: 'key' }],
  ostreams: ['top-hashtags'],
  delivery: { hashtags: 'at-least-once', 'top-hashtags': 'at-least-once' },
  processRecord(_ctx, record) {
    const { tag } = record.value as Hashtag;
    throw new Error(`counter_throws: cannot count #${tag} (on purpose)`);
  },
});
