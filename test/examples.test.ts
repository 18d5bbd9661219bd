/**
 * Unit tests of the examples with the SDK test kit (no NATS). The examples
 * start their timers from Date.now() in init, so each test starts the fake
 * clock just before the real time and reads the first timer from `t.timers`.
 */
import { describe, expect, it } from 'vitest';
import { createTestContext, type OutputRecord } from '../sdk/testing/index.js';
import generator, { TICK_MS, TWEETS_PER_TICK, VOCABULARY } from '../examples/tweets/generator.js';
import hashtags from '../examples/tweets/hashtags.js';
import counter, { TOP_N, WINDOW_MS } from '../examples/tweets/counter.js';
import sink from '../examples/tweets/sink.js';
import shout from '../examples/tweets/shout.js';
import type { Hashtag, TopHashtags, Tweet } from '../examples/tweets/model.js';
import sentences, { CORPUS, SENTENCES_PER_TICK, TICK_MS as SENTENCE_TICK_MS, type Sentence } from '../examples/wordcount/sentences.js';
import split from '../examples/wordcount/split.js';
import count, { EMIT_EVERY_MS, type CountUpdate } from '../examples/wordcount/count.js';

/**
 * A fake-clock start strictly before what init's Date.now() will return, so a
 * timer that init sets "now" is pending after init rather than already fired.
 */
const justBeforeNow = (): number => Date.now() - 1;

const VOCAB = new Set(VOCABULARY.map((t) => t.toLowerCase()));

function firstTimer(t: { timers: { key: string; atMs: number }[] }, key: string): number {
  const timer = t.timers.find((x) => x.key === key);
  if (!timer) throw new Error(`no pending timer "${key}"`);
  return timer.atMs;
}

describe('tweets/generator', () => {
  it('emits a burst of tweets per tick and re-arms its timer', async () => {
    const t = createTestContext(generator, { now: justBeforeNow() });
    await t.init();
    const first = firstTimer(t, 'tick');
    await t.advanceTo(first);
    const burst = t.takeOutputs();
    expect(burst).toHaveLength(TWEETS_PER_TICK);
    expect(t.timers).toEqual([{ key: 'tick', atMs: first + TICK_MS }]);

    for (const out of burst) {
      const tweet = out.value as Tweet;
      expect(out.stream).toBe('tweets');
      expect(out.key).toBe(tweet.user);
      expect(Number.isInteger(tweet.id)).toBe(true);
      const tags = [...tweet.text.matchAll(/#(\w+)/g)].map((m) => m[1]!.toLowerCase());
      expect(tags.length).toBeLessThanOrEqual(3);
      expect(new Set(tags).size).toBe(tags.length);
      for (const tag of tags) expect(VOCAB.has(tag)).toBe(true);
    }
    await t.destroy();
  });

  it('gives every tweet a distinct id, also across instances, and favours the first tags', async () => {
    const ids = new Set<number>();
    const mentions = new Map<string, number>();
    let tweets = 0;
    for (const index of [0, 1]) {
      const t = createTestContext(generator, { now: justBeforeNow(), index, count: 2 });
      await t.init();
      const fired = await t.advanceTo(firstTimer(t, 'tick') + 49 * TICK_MS);
      expect(fired).toBe(50);
      for (const out of t.takeOutputs()) {
        const tweet = out.value as Tweet;
        ids.add(tweet.id);
        tweets++;
        for (const m of tweet.text.matchAll(/#(\w+)/g)) mentions.set(m[1]!.toLowerCase(), (mentions.get(m[1]!.toLowerCase()) ?? 0) + 1);
      }
    }
    expect(tweets).toBe(2 * 50 * TWEETS_PER_TICK);
    expect(ids.size).toBe(tweets);
    // 5000 tweets with ~6000 tags; the most popular tag is ~16x as likely as the last.
    const most = mentions.get(VOCABULARY[0].toLowerCase()) ?? 0;
    const least = mentions.get(VOCABULARY[VOCABULARY.length - 1]!.toLowerCase()) ?? 0;
    expect(most).toBeGreaterThan(4 * least);
  });
});

describe('tweets/hashtags', () => {
  it('emits one record per hashtag, keyed by the lower-cased tag', async () => {
    const t = createTestContext(hashtags);
    const tweet: Tweet = { id: 7, user: 'grace', text: 'shipping today #TypeScript and #nats_io!' };
    await t.send('tweets', 'grace', tweet, { timestamp: 1234 });
    expect(t.takeOutputs()).toEqual([
      { stream: 'hashtags', key: 'typescript', value: { tag: 'typescript', user: 'grace', at: 1234 } },
      { stream: 'hashtags', key: 'nats_io', value: { tag: 'nats_io', user: 'grace', at: 1234 } },
    ]);
    await t.send('tweets', 'ada', { id: 8, user: 'ada', text: 'no tags here' });
    expect(t.outputs).toHaveLength(0);
  });
});

describe('tweets/counter', () => {
  const tag = (name: string): Hashtag => ({ tag: name, user: 'u', at: 0 });

  async function sendTags(t: ReturnType<typeof createTestContext<'hashtags', 'top-hashtags'>>, counts: Record<string, number>): Promise<void> {
    for (const [name, n] of Object.entries(counts)) for (let i = 0; i < n; i++) await t.send('hashtags', name, tag(name));
  }

  it('emits the top tags of each window at its end, then starts over', async () => {
    const t = createTestContext(counter, { now: justBeforeNow(), index: 1, count: 2 });
    await t.init();
    const end = firstTimer(t, 'window');
    expect(end % WINDOW_MS).toBe(0);
    await sendTags(t, { nats: 6, rust: 2, go: 1, kafka: 4, linux: 3, wasm: 5, coffee: 2 });
    expect(t.outputs).toHaveLength(0);

    await t.advanceTo(end);
    const [out, ...rest] = t.takeOutputs();
    expect(rest).toHaveLength(0);
    expect(out?.stream).toBe('top-hashtags');
    expect(out?.key).toBe(String(end - WINDOW_MS));
    const value = out?.value as TopHashtags;
    expect(value.window).toBe(end - WINDOW_MS);
    expect(value.instance).toBe(1);
    expect(value.top).toHaveLength(TOP_N);
    expect(value.top).toEqual([
      { tag: 'nats', count: 6 },
      { tag: 'wasm', count: 5 },
      { tag: 'kafka', count: 4 },
      { tag: 'linux', count: 3 },
      { tag: 'coffee', count: 2 },
    ]);
    expect(t.state.size).toBe(0);
    expect(t.timers).toEqual([{ key: 'window', atMs: end + WINDOW_MS }]);
    expect(t.logs.filter((l) => l.level === 30)).toHaveLength(1);

    // The next window counts from zero.
    await sendTags(t, { rust: 1 });
    await t.advanceTo(end + WINDOW_MS);
    expect((t.takeOutputs()[0]?.value as TopHashtags).top).toEqual([{ tag: 'rust', count: 1 }]);

    // An empty window produces nothing but is still logged.
    await t.advanceTo(end + 2 * WINDOW_MS);
    expect(t.outputs).toHaveLength(0);
    expect(t.logs.filter((l) => l.level === 30)).toHaveLength(3);
  });
});

describe('tweets/sink', () => {
  it('logs each top-N record and keeps running totals', async () => {
    const t = createTestContext(sink);
    const a: TopHashtags = { window: 0, instance: 0, top: [{ tag: 'nats', count: 3 }, { tag: 'rust', count: 2 }] };
    const b: TopHashtags = { window: 5000, instance: 1, top: [{ tag: 'go', count: 4 }] };
    await t.send('top-hashtags', '0', a);
    await t.send('top-hashtags', '5000', b);
    expect(t.state.get('windows')).toBe(2);
    expect(t.state.get('mentions')).toBe(9);
    const info = t.logs.filter((l) => l.level === 30);
    expect(info).toHaveLength(2);
    expect(info[1]?.msg).toContain('#go 4');
    expect(t.outputs).toHaveLength(0);
  });
});

describe('tweets/shout', () => {
  it('upper-cases the tag and keys by it', async () => {
    const t = createTestContext(shout);
    await t.send('hashtags', 'nats', { tag: 'nats', user: 'ken', at: 5 } satisfies Hashtag);
    expect(t.takeOutputs()).toEqual([{ stream: 'shouted', key: 'NATS', value: { tag: 'NATS', user: 'ken', at: 5 } }]);
  });
});

describe('tweets pipeline, stage by stage', () => {
  it('counts every hashtag the generator wrote', async () => {
    const gen = createTestContext(generator, { now: justBeforeNow() });
    await gen.init();
    await gen.advanceTo(firstTimer(gen, 'tick') + 9 * TICK_MS);
    const tweets = gen.takeOutputs();
    const expected = new Map<string, number>();
    for (const o of tweets) {
      for (const m of (o.value as Tweet).text.matchAll(/#(\w+)/g)) expected.set(m[1]!.toLowerCase(), (expected.get(m[1]!.toLowerCase()) ?? 0) + 1);
    }

    const tags = createTestContext(hashtags);
    for (const o of tweets) await tags.send('tweets', o.key, o.value);
    const cnt = createTestContext(counter, { now: justBeforeNow() });
    await cnt.init();
    for (const o of tags.takeOutputs()) await cnt.send('hashtags', o.key, o.value);
    await cnt.advanceTo(firstTimer(cnt, 'window'));
    const top = (cnt.takeOutputs()[0]?.value as TopHashtags).top;

    const want = [...expected].map(([tag, c]) => ({ tag, count: c })).sort((a, b) => b.count - a.count || (a.tag < b.tag ? -1 : 1)).slice(0, TOP_N);
    expect(top).toEqual(want);
  });
});

describe('wordcount/sentences', () => {
  it('emits the corpus in order, a few lines per tick, wrapping around', async () => {
    const t = createTestContext(sentences, { now: justBeforeNow() });
    await t.init();
    const ticks = Math.ceil(CORPUS.length / SENTENCES_PER_TICK) + 1;
    await t.advanceTo(firstTimer(t, 'tick') + (ticks - 1) * SENTENCE_TICK_MS);
    const out = t.takeOutputs();
    expect(out).toHaveLength(ticks * SENTENCES_PER_TICK);
    out.forEach((o, i) => {
      const s = o.value as Sentence;
      expect(s.line).toBe(i % CORPUS.length);
      expect(s.text).toBe(CORPUS[i % CORPUS.length]);
      expect(o.key).toBe(String(s.line));
    });
  });
});

describe('wordcount/split', () => {
  it('emits lower-cased words keyed by the word', async () => {
    const t = createTestContext(split);
    await t.send('sentences', '0', { line: 0, text: "The Rabbit's daisy-chain: the end!" } satisfies Sentence);
    expect(t.takeOutputs().map((o) => o.key)).toEqual(['the', "rabbit's", 'daisy-chain', 'the', 'end']);
  });
});

describe('wordcount/count', () => {
  it('emits running counts once a second, only for words that changed', async () => {
    const t = createTestContext(count, { now: justBeforeNow() });
    await t.init();
    const first = firstTimer(t, 'emit');
    for (const w of ['alice', 'rabbit', 'alice']) await t.send('words', w, 1);
    expect(t.outputs).toHaveLength(0);

    await t.advanceTo(first);
    const byWord = (outs: OutputRecord[]): Record<string, number> => Object.fromEntries(outs.map((o) => [o.key, (o.value as CountUpdate).count]));
    expect(byWord(t.takeOutputs())).toEqual({ alice: 2, rabbit: 1 });

    await t.send('words', 'rabbit', 1);
    await t.advanceTo(first + EMIT_EVERY_MS);
    expect(byWord(t.takeOutputs())).toEqual({ rabbit: 2 });

    await t.advanceTo(first + 2 * EMIT_EVERY_MS);
    expect(t.outputs).toHaveLength(0);
  });
});
