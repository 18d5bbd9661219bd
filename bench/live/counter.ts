/** The live fuse/split bench's counter, code "a" (see counter-lib.ts). */
import { liveCounter } from './counter-lib.js';

export default liveCounter('a');
