/** The record handed to processRecord, built from a wire record; a class so every record has the same shape (one hidden class on the hot path). */
import type { InputRecord } from '../../sdk/index.js';
import type { WireRecord } from '../../protocol/index.js';
import { isTraceId } from '../../protocol/trace.js';

/** Where a record whose trace item is not a well-formed trace id is counted (the trace is dropped, the record kept). */
export interface TraceCounts {
  badTraces?: number;
}

export class Received implements InputRecord {
  readonly key: string;
  readonly value: unknown;
  readonly timestamp: number;
  readonly seq: number;
  readonly traceId: string | undefined;
  constructor(
    readonly stream: string,
    r: WireRecord,
    readonly producer: string,
    counts?: TraceCounts,
  ) {
    this.key = r[0];
    this.value = r[1];
    this.timestamp = r[2];
    this.seq = r[3];
    const t = r[4];
    if (t === undefined || t === null) this.traceId = undefined;
    else if (isTraceId(t)) this.traceId = t;
    else {
      this.traceId = undefined;
      if (counts) counts.badTraces = (counts.badTraces ?? 0) + 1;
    }
  }
}
