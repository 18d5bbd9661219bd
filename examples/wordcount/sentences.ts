/**
 * A source of sentences, driven by a timer: every TICK_MS it emits the next
 * SENTENCES_PER_TICK lines of a small embedded corpus, starting over at the end.
 */
import { defineComputation } from '../../sdk/index.js';

export const TICK_MS = 200;
export const SENTENCES_PER_TICK = 4;

/** The opening of "Alice's Adventures in Wonderland" (Lewis Carroll, 1865; public domain). */
export const CORPUS = [
  'Alice was beginning to get very tired of sitting by her sister on the bank,',
  'and of having nothing to do: once or twice she had peeped into the book her sister was reading,',
  'but it had no pictures or conversations in it,',
  "'and what is the use of a book,' thought Alice 'without pictures or conversations?'",
  'So she was considering in her own mind (as well as she could, for the hot day made her feel very sleepy and stupid),',
  'whether the pleasure of making a daisy-chain would be worth the trouble of getting up and picking the daisies,',
  'when suddenly a White Rabbit with pink eyes ran close by her.',
  'There was nothing so very remarkable in that;',
  "nor did Alice think it so very much out of the way to hear the Rabbit say to itself, 'Oh dear! Oh dear! I shall be late!'",
  'but when the Rabbit actually took a watch out of its waistcoat-pocket, and looked at it, and then hurried on,',
  'Alice started to her feet, for it flashed across her mind that she had never before seen a rabbit',
  'with either a waistcoat-pocket, or a watch to take out of it,',
  'and burning with curiosity, she ran across the field after it,',
  'and fortunately was just in time to see it pop down a large rabbit-hole under the hedge.',
] as const;

/** On stream `sentences`, keyed by the line number in the corpus. */
export interface Sentence {
  line: number;
  text: string;
}

export default defineComputation({
  name: 'sentences',
  istreams: [],
  ostreams: ['sentences'],
  init(ctx) {
    ctx.setTimer('tick', Date.now());
  },
  processRecord() {
    // A source: nothing ever arrives.
  },
  processTimer(ctx, _key, atMs) {
    let line = ctx.state.get<number>('line') ?? 0;
    for (let i = 0; i < SENTENCES_PER_TICK; i++) {
      const s: Sentence = { line, text: CORPUS[line]! };
      ctx.produceRecord('sentences', String(line), s);
      line = (line + 1) % CORPUS.length;
    }
    ctx.state.set('line', line);
    ctx.setTimer('tick', atMs + TICK_MS);
  },
});
