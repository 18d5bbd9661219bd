/**
 * The live-change benches (scale, fuse/split) reuse the swap bench's source
 * (bench/swap/source.ts: bswap-control -> bswap-in) and output shape
 * (bswap-out, CountedValue). The scale bench scales the swap bench's counter
 * (bench/swap/counter-a.ts); the fuse/split bench runs source -> relay -> counter.
 */
export const LIVE = {
  relay: 'blive-relay',
  /** relay -> counter: the stream a fuse hands over in-process. */
  mid: 'blive-mid',
  counter: 'blive-counter',
} as const;
