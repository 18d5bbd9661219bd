/** Swap bench counter, code "b" (the bench swaps between this and the other file). */
import { benchCounter } from './counter.js';

export default benchCounter('b');
