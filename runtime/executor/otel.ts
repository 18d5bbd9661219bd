/**
 * OpenTelemetry spans for traced records (PROTOCOL.md, Traces), behind
 * TOPO_OTEL=1: processRecord of a record with a trace runs inside a span of
 * that trace (`<computation> processRecord`, kind consumer), so spans the
 * computation starts itself nest under it. Only @opentelemetry/api is used:
 * it is a no-op until the process registers a tracer provider (a
 * computation's module doing `trace.setGlobalTracerProvider(...)` or
 * `provider.register()` with the SDK of its choice, or a file loaded with
 * `NODE_OPTIONS=--import`); the API keeps that provider in a process global,
 * so a provider registered by a computation's own bundled copy of the API is
 * the one found here. The exporter is the user's business.
 *
 * The wire carries a trace id, not a span id: every span of a trace gets the
 * same remote parent, a span id made from the trace id, so a trace viewer
 * groups the spans of one record's journey under one (absent) root.
 */
import { SpanKind, SpanStatusCode, TraceFlags, context, trace, type Span, type Tracer, type TracerProvider } from '@opentelemetry/api';
import type { InputRecord } from '../../sdk/index.js';

export type MaybePromise = void | Promise<void>;

/** TOPO_OTEL=1 (read once per process); otherwise nothing here runs. */
export const otelEnabled = process.env.TOPO_OTEL === '1';

let provider: TracerProvider | undefined;
let tracer: Tracer | undefined;

/**
 * The tracer of the provider registered now. Looked up per span, not once: a provider registered
 * through another copy of the API (a computation's bundle) is found in the process global, but
 * the proxy tracer this copy would hand out before that never learns of it.
 */
function currentTracer(): Tracer {
  const p = trace.getTracerProvider();
  if (p !== provider || !tracer) {
    provider = p;
    tracer = p.getTracer('topo');
  }
  return tracer;
}

/** The remote parent of every span of `traceId`: the trace id's second half as span id (never all zero: a trace id's halves are not both zero). */
function parentSpanId(traceId: string): string {
  const half = traceId.slice(16);
  return half === '0000000000000000' ? traceId.slice(0, 16) : half;
}

/** Runs `call` inside a span of the record's trace; the span ends when the callback returns or settles, with its error if it threw. */
export function withSpan(computation: string, rec: InputRecord, traceId: string, call: () => MaybePromise): MaybePromise {
  const parent = trace.setSpanContext(context.active(), { traceId, spanId: parentSpanId(traceId), traceFlags: TraceFlags.SAMPLED, isRemote: true });
  const span = currentTracer().startSpan(`${computation} processRecord`, {
    kind: SpanKind.CONSUMER,
    attributes: { 'topo.computation': computation, 'topo.stream': rec.stream, 'topo.producer': rec.producer, 'topo.seq': rec.seq },
  }, parent);
  let r: MaybePromise;
  try {
    r = context.with(trace.setSpan(parent, span), call);
  } catch (err) {
    fail(span, err);
    span.end();
    throw err;
  }
  if (r !== null && typeof r === 'object' && typeof r.then === 'function') {
    r.then(() => span.end(), (err: unknown) => {
      fail(span, err);
      span.end();
    });
  } else span.end();
  return r;
}

function fail(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}
