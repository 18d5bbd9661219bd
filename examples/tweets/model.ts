/** The record values of the tweets example, shared by its computations and tests. */

/** On stream `tweets`, keyed by user. */
export interface Tweet {
  id: number;
  user: string;
  text: string;
}

/** On stream `hashtags` (and `shouted`), keyed by the tag. */
export interface Hashtag {
  /** Lower-cased, without the '#'. */
  tag: string;
  user: string;
  /** When the tweet was produced (ms since the epoch). */
  at: number;
}

export interface TagCount {
  tag: string;
  count: number;
}

/** On stream `top-hashtags`, keyed by the window start: one counter instance's top tags of one window. */
export interface TopHashtags {
  /** Window start, ms since the epoch; the window is [window, window + length). */
  window: number;
  /** The counter instance (index) that counted it: each sees only its own tags. */
  instance: number;
  /** Most mentioned first. */
  top: TagCount[];
}
