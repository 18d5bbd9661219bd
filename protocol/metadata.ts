/**
 * Computation metadata: the part of a computation the runtime can see without
 * running it. Validated with zod at every edge (SDK, CLI, controller, worker);
 * errors name the bad field by its path.
 */
import { z } from 'zod';
import { NAME_PATTERN } from './subjects.js';
import { InvalidMetadataError } from './errors.js';
import {
  MAX_DESCRIPTOR_CHARS, MAX_MESSAGE_NAME, MAX_TYPED_STREAMS, MAX_TYPES_CHARS, MESSAGE_NAME_PATTERN, type TypeDecl,
} from './typeLimits.js';

export const GROUPINGS = ['shuffle', 'key', 'broadcast'] as const;
export type Grouping = (typeof GROUPINGS)[number];

const name = z.string().regex(NAME_PATTERN, {
  message: 'must start with a letter and contain only letters, digits, "_" or "-" (at most 64 characters)',
});

const istreamObject = z.object({ stream: name, grouping: z.enum(GROUPINGS).default('shuffle') }).strict();

/**
 * A bare name or {stream, grouping}. Checked by hand rather than with
 * z.union so that the error names the bad field (`istreams[0].grouping`)
 * instead of a generic "invalid input".
 */
const istream = z.unknown().transform((v, ctx) => {
  const r = typeof v === 'string' ? name.safeParse(v) : v !== null && typeof v === 'object' ? istreamObject.safeParse(v) : undefined;
  if (!r) {
    ctx.addIssue({ code: 'custom', message: 'must be a stream name or { stream, grouping }' });
    return z.NEVER;
  }
  if (!r.success) {
    for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', path: issue.path as (string | number)[], message: issue.message });
    return z.NEVER;
  }
  return r.data as string | { stream: string; grouping: Grouping };
});

/**
 * Advice to the runtime, optional: `cpu: 'heavy'` runs each instance in its
 * own thread (runtime/runners/thread.ts), `fuse: false` never fuses it with
 * another computation, `autoscale` lets the planner change its parallelism
 * between min and max instances, `traceSample` (a source: the share of the
 * records it produces that start a trace, 0 to 1) overrides the worker's
 * TOPO_TRACE_SAMPLE. Hints do not change how it is wired.
 */
export const hintsSchema = z
  .object({
    cpu: z.enum(['heavy', 'light']).optional(),
    fuse: z.boolean().optional(),
    autoscale: z
      .object({ min: z.int().min(1).max(1024), max: z.int().min(1).max(1024) })
      .strict()
      .refine((a) => a.min <= a.max, { message: 'min must be at most max' })
      .optional(),
    traceSample: z.number().min(0).max(1).optional(),
  })
  .strict();

export type Hints = z.output<typeof hintsSchema>;

/**
 * A typed stream's declaration (protocol/types.ts makes them: the SDK's
 * protoType): the message's full name, a FileDescriptorSet in base64 and its
 * sha256. The controller checks that the descriptor holds the message and
 * matches its fingerprint (checkTypeDecls) and refuses conflicting types.
 */
export const typeDeclSchema = z
  .object({
    message: z.string().max(MAX_MESSAGE_NAME).regex(MESSAGE_NAME_PATTERN, { message: 'must be a protobuf message full name, e.g. "demo.Tweet"' }),
    descriptor: z.string().min(1).max(MAX_DESCRIPTOR_CHARS, { message: `must be at most ${MAX_DESCRIPTOR_CHARS} characters of base64` })
      .regex(/^[A-Za-z0-9+/]*={0,2}$/, { message: 'must be a base64 FileDescriptorSet' }),
    fingerprint: z.string().regex(/^[0-9a-f]{64}$/, { message: 'must be the sha256 hex of the descriptor' }),
  })
  .strict();

export const typesSchema = z
  .record(name, typeDeclSchema)
  .refine((t) => Object.keys(t).length <= MAX_TYPED_STREAMS, { message: `at most ${MAX_TYPED_STREAMS} typed streams` })
  .refine((t) => Object.values(t).reduce((n, d) => n + d.descriptor.length, 0) <= MAX_TYPES_CHARS, {
    message: `descriptors must add up to at most ${MAX_TYPES_CHARS} characters`,
  });

/**
 * How records of a stream are delivered (PROTOCOL.md, "Delivery"): `at-most-once` is core NATS (the
 * default), `at-least-once` a JetStream stream with acked consumers and checkpoint-aligned replay.
 * Declared by any computation that produces or reads the stream; the topology takes at-least-once
 * when one of them says so.
 */
export const DELIVERIES = ['at-most-once', 'at-least-once'] as const;
export type Delivery = (typeof DELIVERIES)[number];
export const deliverySchema = z.record(name, z.enum(DELIVERIES));

export const metadataSchema = z
  .object({
    name,
    istreams: z.array(istream),
    ostreams: z.array(name),
    hints: hintsSchema.optional(),
    types: typesSchema.optional(),
    delivery: deliverySchema.optional(),
  })
  .superRefine((m, ctx) => {
    const seen = new Set<string>();
    m.istreams.forEach((s, i) => {
      const stream = typeof s === 'string' ? s : s.stream;
      if (seen.has(stream)) ctx.addIssue({ code: 'custom', path: ['istreams', i], message: `stream "${stream}" is listed twice` });
      seen.add(stream);
    });
    const out = new Set<string>();
    m.ostreams.forEach((s, i) => {
      if (out.has(s)) ctx.addIssue({ code: 'custom', path: ['ostreams', i], message: `stream "${s}" is listed twice` });
      out.add(s);
    });
    for (const stream of Object.keys(m.types ?? {})) {
      if (!seen.has(stream) && !out.has(stream)) ctx.addIssue({ code: 'custom', path: ['types', stream], message: `stream "${stream}" is neither an istream nor an ostream` });
    }
    for (const stream of Object.keys(m.delivery ?? {})) {
      if (!seen.has(stream) && !out.has(stream)) ctx.addIssue({ code: 'custom', path: ['delivery', stream], message: `stream "${stream}" is neither an istream nor an ostream` });
    }
  });

/** Metadata as it travels on the wire and sits in KV: istreams always in object form. */
export interface NormalizedMetadata {
  name: string;
  istreams: { stream: string; grouping: Grouping }[];
  ostreams: string[];
  /** Present only when the computation gives hints (so metadata without them is unchanged). */
  hints?: Hints;
  /** Present only when some stream is typed (protocol/types.ts): stream -> declaration, keys sorted. */
  types?: Record<string, TypeDecl>;
  /** Present only when some stream is declared at-least-once: those streams, sorted (at-most-once is the default, so it is not kept). */
  delivery?: Record<string, 'at-least-once'>;
}

function formatPath(path: PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

/** Validates metadata (and nothing else of the object) and returns it normalized. */
export function validateMetadata(input: unknown): NormalizedMetadata {
  const picked =
    input !== null && typeof input === 'object'
      ? (({ name, istreams, ostreams, hints, types, delivery }) => ({
        name, istreams, ostreams, ...(hints === undefined ? {} : { hints }), ...(types === undefined ? {} : { types }),
        ...(delivery === undefined ? {} : { delivery }),
      }))(input as Record<string, unknown>)
      : input;
  const parsed = metadataSchema.safeParse(picked);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
    const who = typeof (picked as { name?: unknown } | null)?.name === 'string' ? ` of "${(picked as { name: string }).name}"` : '';
    throw new InvalidMetadataError(
      `invalid computation metadata${who}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      { detail: issues },
    );
  }
  return {
    name: parsed.data.name,
    istreams: parsed.data.istreams.map((s) => (typeof s === 'string' ? { stream: s, grouping: 'shuffle' as const } : s)),
    ostreams: parsed.data.ostreams,
    ...(parsed.data.hints ? { hints: normalizeHints(parsed.data.hints) } : {}),
    ...(parsed.data.types && Object.keys(parsed.data.types).length ? { types: normalizeTypes(parsed.data.types) } : {}),
    ...normalizeDelivery(parsed.data.delivery),
  };
}

function normalizeDelivery(d: Record<string, Delivery> | undefined): { delivery?: Record<string, 'at-least-once'> } {
  const streams = Object.keys(d ?? {}).filter((s) => d![s] === 'at-least-once').sort();
  if (!streams.length) return {};
  const delivery: Record<string, 'at-least-once'> = {};
  for (const s of streams) delivery[s] = 'at-least-once';
  return { delivery };
}

/** Types with streams sorted and each declaration's keys in one order (metadata is compared as JSON). */
function normalizeTypes(t: Record<string, TypeDecl>): Record<string, TypeDecl> {
  const out: Record<string, TypeDecl> = {};
  for (const k of Object.keys(t).sort()) out[k] = { message: t[k]!.message, descriptor: t[k]!.descriptor, fingerprint: t[k]!.fingerprint };
  return out;
}

/** Hints with their keys in one order (metadata is compared as JSON). */
function normalizeHints(h: Hints): Hints {
  return {
    ...(h.cpu !== undefined ? { cpu: h.cpu } : {}),
    ...(h.fuse !== undefined ? { fuse: h.fuse } : {}),
    ...(h.autoscale !== undefined ? { autoscale: { min: h.autoscale.min, max: h.autoscale.max } } : {}),
    ...(h.traceSample !== undefined ? { traceSample: h.traceSample } : {}),
  };
}
