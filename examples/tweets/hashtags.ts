/** Extracts the hashtags of each tweet: one record per tag, keyed by the lower-cased tag. */
import { defineComputation } from '../../sdk/index.js';
import type { Hashtag, Tweet } from './model.js';

const HASHTAG = /#(\w+)/g;

export default defineComputation({
  name: 'hashtags',
  istreams: ['tweets'],
  ostreams: ['hashtags'],
  delivery: { tweets: 'at-least-once', hashtags: 'at-least-once' },
  processRecord(ctx, record) {
    const tweet = record.value as Tweet;
    for (const m of tweet.text.matchAll(HASHTAG)) {
      const tag = m[1]!.toLowerCase();
      const out: Hashtag = { tag, user: tweet.user, at: record.timestamp };
      ctx.produceRecord('hashtags', tag, out);
    }
  },
});
