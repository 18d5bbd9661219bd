/** The live fuse/split bench's counter, code "b": the hot swap baseline alternates it with counter.ts. */
import { liveCounter } from './counter-lib.js';

export default liveCounter('b');
