/**
 * Progress of a deploy or swap for the client that asked for it: each step, as it ends, published on
 * `topo.progress.<id>` (the id its request named), so the CLI prints steps as they happen instead of
 * all of them with the reply. Best effort: a publish that fails is logged and the request goes on.
 */
import type { Logger } from 'pino';
import { subjects, type HistoryStep, type ProgressEvent } from '../../protocol/index.js';
import { encodeJson } from '../transport/rpc.js';
import type { ControllerContext } from './context.js';

export type ProgressSink = (step: HistoryStep) => void;

/** A sink publishing the steps of `request` on `name` to `progressId`; undefined when the request named none. */
export function progressSink(ctx: Pick<ControllerContext, 'nc'>, log: Logger, progressId: string | undefined, request: ProgressEvent['request'], name: string): ProgressSink | undefined {
  if (progressId === undefined) return undefined;
  const subject = subjects.progress(progressId);
  return (step) => {
    const event: ProgressEvent = { request, name, step };
    try {
      ctx.nc.publish(subject, encodeJson(event));
    } catch (err) {
      log.debug({ err, subject }, `could not publish the progress of the ${request} of "${name}"`);
    }
  };
}
