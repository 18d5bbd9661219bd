/**
 * Checking side of the swap end-to-end tests (test/swap*.test.ts): taps of
 * the counter's input and output streams, and a per-key audit of the output
 * against the input (every record exactly once, in order, counts continuing
 * across versions).
 */
import { isMalformed, type TopoClient } from '../runtime/client/client.js';
import { SWAP_IN, SWAP_OUT, type CounterValue, type SourceValue } from './fixtures/swap-e2e-lib.js';
import { afterEach } from 'vitest';
import { startCluster, waitFor, type Cluster } from './harness.js';

export const fixture = (name: string): string => `test/fixtures/swap-e2e-${name}.ts`;

export interface OutRecord extends CounterValue {
  key: string;
  /** Producer instance id (the batch's src): which instance published it. */
  producer: string;
}

export interface Tap<T> {
  records: T[];
  /** Malformed batches seen (should stay 0). */
  malformed: number;
  stop(): Promise<void>;
}

/** Collects every record of `stream` (client.tap: a plain subscriber) until stop(). */
export async function tapStream<T>(client: TopoClient, stream: string, map: (key: string, value: unknown, producer: string) => T): Promise<Tap<T>> {
  const ac = new AbortController();
  const tap: Tap<T> = { records: [], malformed: 0, stop: async () => undefined };
  const it = client.tap(stream, { signal: ac.signal });
  // The first next() runs the generator up to its subscription; flush makes the server know it.
  const first = it.next();
  await client.nc.flush();
  const done = (async () => {
    for (let r = await first; !r.done; r = await it.next()) {
      const item = r.value;
      if (isMalformed(item)) tap.malformed++;
      else tap.records.push(map(item.key, item.value, item.producer));
    }
  })();
  tap.stop = async () => {
    ac.abort();
    await done;
  };
  return tap;
}

/** Taps of the counter's input (ground truth: what the source published) and output. */
export async function tapCounter(client: TopoClient): Promise<{ input: Tap<{ key: string; seq: number }>; output: Tap<OutRecord> }> {
  const input = await tapStream(client, SWAP_IN, (key, value) => ({ key, seq: (value as SourceValue).seq }));
  const output = await tapStream(client, SWAP_OUT, (key, value, producer) => ({ key, producer, ...(value as CounterValue) }));
  return { input, output };
}

/** Highest seq published per key so far. */
export function maxSeqByKey(input: readonly { key: string; seq: number }[]): Map<string, number> {
  const max = new Map<string, number>();
  for (const r of input) if (r.seq > (max.get(r.key) ?? 0)) max.set(r.key, r.seq);
  return max;
}

/**
 * Waits until the output holds, for every key, a record at least as recent
 * as the latest input seen now (everything published so far has been counted).
 */
export async function settle(input: readonly { key: string; seq: number }[], output: readonly OutRecord[], timeoutMs = 15_000): Promise<Map<string, number>> {
  const target = maxSeqByKey(input);
  let from = 0;
  const reached = new Map<string, number>();
  await waitFor(() => {
    for (; from < output.length; from++) {
      const o = output[from]!;
      if (o.seq > (reached.get(o.key) ?? 0)) reached.set(o.key, o.seq);
    }
    for (const [k, s] of target) if ((reached.get(k) ?? 0) < s) return false;
    return true;
  }, {
    what: () => {
      const behind = [...target].filter(([k, s]) => (reached.get(k) ?? 0) < s);
      return `the counter's output to catch up with its input (${behind.length} of ${target.size} keys behind, e.g. ${behind.slice(0, 3).map(([k, s]) => `${k}: ${reached.get(k) ?? 0} < ${s}`).join(', ')})`;
    },
    timeoutMs,
  });
  return target;
}

export interface Audit {
  keys: number;
  records: number;
  /** Input records (key, seq) up to `upTo` never seen in the output. */
  lost: number;
  /** Output records whose (key, seq) was already seen. */
  duplicated: number;
  /** Output records with a seq lower than an earlier one of the same key (not duplicates). */
  reordered: number;
  /** Output records whose count is not the number of records of that key before it plus one. */
  badCounts: number;
  /** Places where a key's code changed (a version boundary) with the count continuing. */
  continuedAcrossVersions: number;
  /** A few readable problems, for failure messages. */
  examples: string[];
}

/**
 * Audits the output per key against the expectation "seqs 1..upTo(key),
 * each exactly once, in order, with count === seq". The source gives every
 * key seq 1, 2, 3, ... and the counter starts from zero, so count === seq
 * holds exactly when no record was lost, duplicated or counted twice, and
 * state carried over every version change. Output beyond upTo is checked
 * for order and duplicates only (it may still be incomplete).
 */
export function audit(output: readonly OutRecord[], upTo: ReadonlyMap<string, number>): Audit {
  const a: Audit = { keys: 0, records: output.length, lost: 0, duplicated: 0, reordered: 0, badCounts: 0, continuedAcrossVersions: 0, examples: [] };
  const note = (s: string): void => {
    if (a.examples.length < 8) a.examples.push(s);
  };
  const byKey = new Map<string, OutRecord[]>();
  for (const o of output) {
    let l = byKey.get(o.key);
    if (!l) byKey.set(o.key, (l = []));
    l.push(o);
  }
  a.keys = byKey.size;
  for (const [key, expectedMax] of upTo) if (!byKey.has(key)) {
    a.lost += expectedMax;
    note(`${key}: no output at all (expected seqs 1..${expectedMax})`);
  }
  for (const [key, list] of byKey) {
    const seen = new Set<number>();
    let last = 0;
    let prev: OutRecord | undefined;
    for (const o of list) {
      if (seen.has(o.seq)) {
        a.duplicated++;
        note(`${key}: seq ${o.seq} twice (code ${o.code})`);
      } else if (o.seq < last) {
        a.reordered++;
        note(`${key}: seq ${o.seq} after ${last}`);
      }
      if (o.count !== o.seq) {
        a.badCounts++;
        note(`${key}: seq ${o.seq} counted as ${o.count} by code ${o.code}`);
      }
      if (prev && prev.code !== o.code && o.count === prev.count + 1) a.continuedAcrossVersions++;
      seen.add(o.seq);
      last = Math.max(last, o.seq);
      prev = o;
    }
    const expectedMax = upTo.get(key) ?? 0;
    for (let s = 1; s <= expectedMax; s++) {
      if (!seen.has(s)) {
        a.lost++;
        note(`${key}: seq ${s} never counted`);
      }
    }
  }
  return a;
}

/** The audit's problem counters, for one readable toEqual. */
export const problems = (a: Audit) => ({ lost: a.lost, duplicated: a.duplicated, reordered: a.reordered, badCounts: a.badCounts });
export const NO_PROBLEMS = { lost: 0, duplicated: 0, reordered: 0, badCounts: 0 };

export { SWAP_IN, SWAP_OUT };

/**
 * A cluster per test, and the taps the test opened, stopped after each test
 * (call once at the top of a test file): `const run = perTest();` then
 * `const c = await run.cluster({ workers: 2 })` and `run.taps.push(tap)`.
 */
export function perTest(): { cluster(opts?: Parameters<typeof startCluster>[0]): Promise<Cluster>; taps: Tap<unknown>[] } {
  let current: Cluster | undefined;
  const taps: Tap<unknown>[] = [];
  afterEach(async () => {
    for (const t of taps.splice(0)) await t.stop();
    await current?.stop();
    current = undefined;
  });
  return {
    async cluster(opts) {
      current = await startCluster(opts);
      return current;
    },
    taps,
  };
}
