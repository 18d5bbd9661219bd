/**
 * Per-key audit of a counter's output against a sequence-numbered source (as
 * test/swap-helpers.ts audit does): every key must see seqs 1..lastTick
 * exactly once, in order, each counted as count === seq (state carried over
 * every live change). Kept as a bitmap per key, so nothing is stored per record.
 */
import { decodeBatch } from '../../protocol/index.js';
import { LatencyHistogram } from '../swap/stats.js';
import { benchSwapKey, type CountedValue } from '../swap/streams.js';

export interface AuditFigures {
  expected: number;
  received: number;
  lost: number;
  duplicated: number;
  reordered: number;
  badCounts: number;
  examples: string[];
}

export class KeyAudit {
  private readonly keyIndex = new Map<string, number>();
  private readonly seen: Uint8Array[];
  private readonly distinct: Int32Array;
  private readonly maxSeq: Int32Array;
  received = 0;
  duplicated = 0;
  reordered = 0;
  badCounts = 0;
  firstAt = 0;
  lastAt = 0;
  readonly latency = new LatencyHistogram();
  readonly examples: string[] = [];

  constructor(readonly keys: number) {
    for (let i = 0; i < keys; i++) this.keyIndex.set(benchSwapKey(i), i);
    this.seen = Array.from({ length: keys }, () => new Uint8Array(1024));
    this.distinct = new Int32Array(keys);
    this.maxSeq = new Int32Array(keys);
  }

  private note(s: string): void {
    if (this.examples.length < 8) this.examples.push(s);
  }

  onBatch(data: Uint8Array): void {
    const now = Date.now();
    if (this.firstAt === 0) this.firstAt = now;
    this.lastAt = now;
    for (const r of decodeBatch(data).recs) {
      const idx = this.keyIndex.get(r[0]);
      if (idx === undefined) continue;
      const v = r[1] as CountedValue;
      this.received++;
      this.latency.add(now - v.t);
      let bits = this.seen[idx]!;
      if (v.seq >= bits.length) {
        const grown = new Uint8Array(Math.max(bits.length * 2, v.seq + 1));
        grown.set(bits);
        this.seen[idx] = bits = grown;
      }
      if (bits[v.seq]) {
        this.duplicated++;
        this.note(`${r[0]}: seq ${v.seq} twice`);
      } else {
        bits[v.seq] = 1;
        this.distinct[idx]!++;
        if (v.seq < this.maxSeq[idx]!) {
          this.reordered++;
          this.note(`${r[0]}: seq ${v.seq} after ${this.maxSeq[idx]}`);
        }
      }
      if (v.seq > this.maxSeq[idx]!) this.maxSeq[idx] = v.seq;
      if (v.count !== v.seq) {
        this.badCounts++;
        this.note(`${r[0]}: seq ${v.seq} counted as ${v.count}`);
      }
    }
  }

  /** Keys whose highest seq is below `lastTick`. */
  behind(lastTick: number): number {
    let n = 0;
    for (let i = 0; i < this.keys; i++) if (this.maxSeq[i]! < lastTick) n++;
    return n;
  }

  figures(lastTick: number): AuditFigures {
    let lost = 0;
    for (let i = 0; i < this.keys; i++) {
      const bits = this.seen[i]!;
      let have = 0;
      for (let s = 1; s <= lastTick && s < bits.length; s++) have += bits[s]!;
      if (have < lastTick) {
        lost += lastTick - have;
        const first = Array.from({ length: lastTick }, (_, k) => k + 1).find((s) => !bits[s]);
        this.note(`${benchSwapKey(i)}: ${lastTick - have} of seqs 1..${lastTick} missing (first: ${first})`);
      }
    }
    return {
      expected: lastTick * this.keys, received: this.received, lost,
      duplicated: this.duplicated, reordered: this.reordered, badCounts: this.badCounts, examples: [...this.examples],
    };
  }
}
