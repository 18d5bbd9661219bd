/**
 * Steps of a deploy or swap as they happen: the client subscribes to `topo.progress.<id>` before it
 * sends the request that names `progress: <id>`, and hands each validated ProgressEvent's step to
 * the caller (PROTOCOL.md, "Progress of a deploy or swap"). An event that does not validate is dropped:
 * the reply, which carries the outcome (and a swap's every step), does not depend on the events.
 */
import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { checkMessage, schemas, subjects, type HistoryStep, type ProgressEvent } from '../../protocol/index.js';
import { decodeJson } from '../transport/rpc.js';

/** Gets each step of a deploy or swap as the controller ends it. */
export type OnProgress = (step: HistoryStep) => void;

/**
 * Runs `send` with a fresh progress id when `onProgress` is given (subscribed, and flushed to the
 * server, before `send` runs), else with none. The subscription ends with `send`.
 */
export async function withProgress<T>(
  nc: NatsConnection, request: ProgressEvent['request'], onProgress: OnProgress | undefined, send: (progressId: string | undefined) => Promise<T>,
): Promise<T> {
  if (!onProgress) return send(undefined);
  const progressId = `p-${randomBytes(12).toString('hex')}`;
  const sub = nc.subscribe(subjects.progress(progressId), {
    callback: (err, msg) => {
      if (err) return;
      let event: unknown;
      try {
        event = decodeJson(msg.data);
      } catch {
        return;
      }
      const r = checkMessage(schemas.progressEvent, event, 'progress event');
      if (r.ok && r.value.request === request) onProgress(r.value.step);
    },
  });
  try {
    await nc.flush(); // the server knows the subscription before the controller can publish to it
    return await send(progressId);
  } finally {
    sub.unsubscribe();
  }
}
