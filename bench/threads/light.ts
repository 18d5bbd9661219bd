// The light bench computation: a counter per key and one output per record (no CPU to speak of).
import { defineComputation } from '../../sdk/index.js';

export default defineComputation({
  name: 'bench-light',
  istreams: [{ stream: 'bench-heavy-in', grouping: 'key' }],
  ostreams: ['bench-heavy-out'],
  processRecord(ctx, record) {
    const c = (ctx.state.get<number>(record.key) ?? 0) + 1;
    ctx.state.set(record.key, c);
    ctx.produceRecord('bench-heavy-out', record.key, c);
  },
});
