/**
 * JSON request/reply over NATS with protocol v1 Reply envelopes. Errors come
 * back as WireError and are rebuilt into their TopoError class here.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { fromWireError, parseRequest, toWireError, TimeoutError, BadRequestError, type Reply } from '../../protocol/index.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return enc.encode(JSON.stringify(value));
}
export function decodeJson<T = unknown>(data: Uint8Array): T {
  return JSON.parse(dec.decode(data)) as T;
}

/** Sends a request and returns the reply body; throws the remote error rebuilt. */
export async function call<T extends object>(nc: NatsConnection, subject: string, body: unknown, timeoutMs = 10_000): Promise<T> {
  let msg: Msg;
  try {
    msg = await nc.request(subject, encodeJson(body), { timeout: timeoutMs });
  } catch (err) {
    const e = err as Error;
    if (/no responders/i.test(e.message) || e.name === 'NoRespondersError') {
      throw new TimeoutError(`nobody answers on ${subject}: is the topo controller running? (\`topo up\`)`, { cause: err });
    }
    if (/timeout/i.test(e.message) || e.name === 'TimeoutError') {
      throw new TimeoutError(`no reply on ${subject} within ${timeoutMs} ms`, { cause: err });
    }
    throw err;
  }
  const reply = decodeJson<Reply<T>>(msg.data);
  if (!reply.ok) throw fromWireError(reply.error);
  return reply as T;
}

export interface ServeOptions {
  queue?: string;
  /**
   * Validates every request (protocol/schemas.ts): an invalid one gets
   * BAD_REQUEST naming the field (INVALID_METADATA for bad metadata) and the
   * handler is not called; a valid one reaches it parsed.
   */
  schema?: z.ZodType;
  /** Names the request in error messages (default: the subject). */
  what?: string;
}

/**
 * Serves requests on a subject: the handler's result becomes `{ok:true,...}`,
 * a thrown error becomes `{ok:false,error}`. Handlers run concurrently.
 */
export function serve<Req, Res extends object>(
  nc: NatsConnection,
  subject: string,
  handler: (req: Req, msg: Msg) => Promise<Res> | Res,
  opts: ServeOptions = {},
): { unsubscribe(): void } {
  const sub = nc.subscribe(subject, {
    ...(opts.queue ? { queue: opts.queue } : {}),
    callback: (err, msg) => {
      if (err) return;
      void (async () => {
        let reply: Reply<Res>;
        try {
          let req: Req;
          try {
            req = msg.data.length ? decodeJson<Req>(msg.data) : ({} as Req);
          } catch (e) {
            throw new BadRequestError(`request on ${msg.subject} is not JSON: ${(e as Error).message}`);
          }
          if (opts.schema) req = parseRequest(opts.schema, req, opts.what ?? `request on ${msg.subject}`) as Req;
          const res = await handler(req, msg);
          reply = { ok: true, ...res };
        } catch (e) {
          reply = { ok: false, error: toWireError(e) };
        }
        if (msg.reply) msg.respond(encodeJson(reply));
      })();
    },
  });
  return { unsubscribe: () => sub.unsubscribe() };
}
