/** The end of the tweets pipeline: logs each top-N record and keeps running totals in state. */
import { defineComputation } from '../../sdk/index.js';
import type { TopHashtags } from './model.js';

export default defineComputation({
  name: 'sink',
  istreams: ['top-hashtags'],
  ostreams: [],
  delivery: { 'top-hashtags': 'at-least-once' },
  processRecord(ctx, record) {
    const { window, instance, top } = record.value as TopHashtags;
    const windows = (ctx.state.get<number>('windows') ?? 0) + 1;
    const mentions = (ctx.state.get<number>('mentions') ?? 0) + top.reduce((sum, t) => sum + t.count, 0);
    ctx.state.set('windows', windows);
    ctx.state.set('mentions', mentions);
    ctx.log.info(
      { window, instance, windows, mentions },
      `top hashtags of ${new Date(window).toISOString()} (counter ${instance}): ${top.map((t) => `#${t.tag} ${t.count}`).join(', ')}; running total: ${mentions} mentions in ${windows} top-N records`,
    );
  },
});
