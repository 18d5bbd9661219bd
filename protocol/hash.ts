/**
 * Key -> partition mapping, protocol v1: FNV-1a 32-bit over the UTF-8 bytes
 * of the key, modulo PARTITIONS. Every SDK must implement exactly this so that
 * all producers agree on where a key goes.
 */
import { PARTITIONS } from './subjects.js';

const encoder = new TextEncoder();

export function fnv1a32(key: string): number {
  let h = 0x811c9dc5;
  // ASCII fast path avoids allocating a byte array for the common case.
  let ascii = true;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c > 0x7f) {
      ascii = false;
      break;
    }
    h ^= c;
    h = Math.imul(h, 0x01000193);
  }
  if (ascii) return h >>> 0;
  h = 0x811c9dc5;
  for (const b of encoder.encode(key)) {
    h ^= b;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function partitionOf(key: string, partitions: number = PARTITIONS): number {
  return fnv1a32(key) % partitions;
}

/** Partitions owned by instance `index` of `count` under key grouping. */
export function partitionsOwnedBy(index: number, count: number, partitions: number = PARTITIONS): number[] {
  const owned: number[] = [];
  for (let p = 0; p < partitions; p++) if (p % count === index) owned.push(p);
  return owned;
}
