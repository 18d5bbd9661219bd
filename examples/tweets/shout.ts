/**
 * Upper-cases every hashtag. Not part of the initial pipeline: deploy it into
 * the running topology (`topo deploy examples/tweets/shout.ts`) and it starts
 * reading `hashtags` next to the counter, without touching anything else.
 */
import { defineComputation } from '../../sdk/index.js';
import type { Hashtag } from './model.js';

export default defineComputation({
  name: 'shout',
  istreams: ['hashtags'],
  ostreams: ['shouted'],
  processRecord(ctx, record) {
    const h = record.value as Hashtag;
    const tag = h.tag.toUpperCase();
    const out: Hashtag = { ...h, tag };
    ctx.produceRecord('shouted', tag, out);
  },
});
