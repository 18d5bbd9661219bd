/**
 * Trace ids (PROTOCOL.md, "Traces"): item 4 of a wire record. A trace id is
 * 16 random bytes written as 32 lowercase hex digits, not all zero: the W3C
 * Trace Context trace-id, so an OpenTelemetry span can carry it as is.
 *
 * A source starts a trace for a sampled fraction of the records it produces;
 * every record produced while processing a traced record carries the same id.
 * A trace item that is not a well-formed id (another length, other
 * characters) is dropped where the record is handed to a computation, and
 * counted: a hostile producer can neither inflate what is propagated nor
 * inject text into logs and spans.
 */
import { randomFillSync } from 'node:crypto';

export const TRACE_ID_LENGTH = 32;
export const TRACE_ID_PATTERN = /^[0-9a-f]{32}$/;
const ALL_ZERO = '0'.repeat(TRACE_ID_LENGTH);

export function isTraceId(v: unknown): v is string {
  return typeof v === 'string' && v.length === TRACE_ID_LENGTH && TRACE_ID_PATTERN.test(v) && v !== ALL_ZERO;
}

/** Why `id` is not a trace id (`topo tap --trace`, a bridge's produce). */
export function badTraceId(id: string): string {
  const shown = id.length > 40 ? `${JSON.stringify(id.slice(0, 40))}… (${id.length} characters)` : JSON.stringify(id);
  return `invalid trace id ${shown}: a trace id is ${TRACE_ID_LENGTH} lowercase hex digits, not all zero (e.g. 4bf92f3577b34da6a3ce929d0e0e4736)`;
}

/**
 * Random bytes are drawn 4 KiB at a time (one syscall per 256 ids) and turned into hex at once:
 * an id is then a slice of that string, a third of the cost of a hex conversion per id.
 */
const POOL = Buffer.alloc(16 * 256);
let hex = '';
let hexAt = 0;

export function newTraceId(): string {
  for (;;) {
    if (hexAt >= hex.length) {
      randomFillSync(POOL);
      hex = POOL.toString('hex');
      hexAt = 0;
    }
    const id = hex.slice(hexAt, (hexAt += TRACE_ID_LENGTH));
    if (id !== ALL_ZERO) return id;
  }
}

/**
 * The sampling rate of a source: a number from 0 (no record starts a trace, the default)
 * to 1 (every record does). Throws naming the setting when `text` is not one.
 */
export function parseTraceSample(text: string | undefined, what = 'TOPO_TRACE_SAMPLE'): number {
  if (text === undefined || text.trim() === '') return 0;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new Error(`${what} must be a number from 0 to 1 (the share of a source's records that start a trace), got ${JSON.stringify(text)}`);
  return n;
}

/** Decides per produced record whether a source starts a trace with it. */
export function sampleTrace(rate: number): string | undefined {
  return rate > 0 && (rate >= 1 || Math.random() < rate) ? newTraceId() : undefined;
}
