/**
 * A broken counter whose processRecord never finishes (it returns a promise
 * that never settles), for trying a rollback:
 *   topo swap counter examples/tweets/broken/counter_hangs.ts
 * The first record hangs it; the callback runs past the probation's callback
 * timeout, the swap is rolled back and v1 keeps counting.
 */
import { defineComputation } from '../../../sdk/index.js';

export default defineComputation({
  name: 'counter',
  istreams: [{ stream: 'hashtags', grouping: 'key' }],
  ostreams: ['top-hashtags'],
  delivery: { hashtags: 'at-least-once', 'top-hashtags': 'at-least-once' },
  processRecord() {
    return new Promise<void>(() => {
      // never resolves: the next record waits forever
    });
  },
});
