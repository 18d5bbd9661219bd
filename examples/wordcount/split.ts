/** Splits sentences into lower-cased words: one record per word, keyed by the word, value 1. */
import { defineComputation } from '../../sdk/index.js';
import type { Sentence } from './sentences.js';

/** Letters with inner hyphens or apostrophes: "daisy-chain", "she'd". */
const WORD = /[a-z]+(?:['-][a-z]+)*/g;

export default defineComputation({
  name: 'split',
  istreams: ['sentences'],
  ostreams: ['words'],
  processRecord(ctx, record) {
    const { text } = record.value as Sentence;
    for (const m of text.toLowerCase().matchAll(WORD)) ctx.produceRecord('words', m[0], 1);
  },
});
