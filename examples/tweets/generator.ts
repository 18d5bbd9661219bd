/**
 * A source of mock tweets, driven only by timers (istreams is empty): every
 * TICK_MS it emits TWEETS_PER_TICK tweets with 0-3 hashtags drawn from a small
 * vocabulary in which a few tags are far more popular than the rest.
 */
import { defineComputation } from '../../sdk/index.js';
import type { Tweet } from './model.js';

export const TICK_MS = 100;
export const TWEETS_PER_TICK = 50;

/** Most popular first; mixed case on purpose (the hashtags stage lower-cases). */
export const VOCABULARY = [
  'TypeScript', 'nats', 'streaming', 'Rust', 'python', 'golang', 'Kafka', 'devops',
  'opensource', 'webdev', 'databases', 'latency', 'WASM', 'observability', 'linux', 'coffee',
] as const;

const USERS = ['ada', 'alan', 'grace', 'edsger', 'barbara', 'donald', 'ken', 'margaret', 'linus', 'radia'] as const;
const PHRASES = [
  'shipping a new release today',
  'reading about backpressure again',
  'who else is debugging on a friday',
  'the benchmark numbers are in',
  'pair programming beats code review',
  'finally migrated the last service',
  'hot take: logs are a stream',
  'one small operator at a time',
] as const;

/** Zipf-like weights (1/rank): the first tag is ~16 times as likely as the last. */
const CUMULATIVE = (() => {
  const w = VOCABULARY.map((_, rank) => 1 / (rank + 1));
  const total = w.reduce((a, b) => a + b, 0);
  let acc = 0;
  return w.map((x) => (acc += x / total));
})();

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)]!;
}

function popularTag(): string {
  const r = Math.random();
  const i = CUMULATIVE.findIndex((c) => r < c);
  return VOCABULARY[i === -1 ? VOCABULARY.length - 1 : i]!;
}

/** 0-3 distinct hashtags: none 20%, one 40%, two 25%, three 15%. */
function hashtags(): string[] {
  const r = Math.random();
  const n = r < 0.2 ? 0 : r < 0.6 ? 1 : r < 0.85 ? 2 : 3;
  const tags = new Set<string>();
  while (tags.size < n) tags.add(popularTag());
  return [...tags];
}

export default defineComputation({
  name: 'mock-tweets-generator',
  istreams: [],
  ostreams: ['tweets'],
  delivery: { tweets: 'at-least-once' },
  init(ctx) {
    ctx.setTimer('tick', Date.now());
  },
  processTimer(ctx, _key, atMs) {
    let next = ctx.state.get<number>('next') ?? 0;
    for (let i = 0; i < TWEETS_PER_TICK; i++, next++) {
      const tags = hashtags();
      const tweet: Tweet = {
        // Unique across instances: instance i of n uses ids i, i+n, i+2n, ...
        id: next * ctx.instance.count + ctx.instance.index,
        user: pick(USERS),
        text: [pick(PHRASES), ...tags.map((t) => `#${t}`)].join(' '),
      };
      ctx.produceRecord('tweets', tweet.user, tweet);
    }
    ctx.state.set('next', next);
    // From the scheduled time, not "now", so a late tick does not shift the rhythm.
    ctx.setTimer('tick', atMs + TICK_MS);
  },
});
