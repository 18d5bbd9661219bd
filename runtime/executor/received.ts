/** The record handed to processRecord, built from a wire record; a class so every record has the same shape (one hidden class on the hot path). */
import type { InputRecord } from '../../sdk/index.js';
import type { WireRecord } from '../../protocol/index.js';

export class Received implements InputRecord {
  readonly key: string;
  readonly value: unknown;
  readonly timestamp: number;
  readonly seq: number;
  readonly traceId?: string;
  constructor(
    readonly stream: string,
    r: WireRecord,
    readonly producer: string,
  ) {
    this.key = r[0];
    this.value = r[1];
    this.timestamp = r[2];
    this.seq = r[3];
    if (typeof r[4] === 'string') this.traceId = r[4];
  }
}
