/** Swap bench counter, code "a" (the bench swaps between this and the other file). */
import { benchCounter } from './counter.js';

export default benchCounter('a');
