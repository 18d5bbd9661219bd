// The CPU-heavy bench computation: each record burns a fixed number of
// iterations (the harness calibrates them to ~50 µs) and produces one record.
// A fixed amount of work, not a wall-clock wait, so both modes do the same CPU work.
import { defineComputation } from '../../sdk/index.js';
import { spin } from './spin.js';

export default defineComputation({
  name: 'bench-heavy',
  istreams: [{ stream: 'bench-heavy-in', grouping: 'key' }],
  ostreams: ['bench-heavy-out'],
  hints: { cpu: 'heavy' },
  processRecord(ctx, record) {
    const v = record.value as { iters: number; n: number };
    ctx.produceRecord('bench-heavy-out', record.key, { n: v.n, x: spin(v.iters) });
  },
});
