/**
 * Per-instance structured logger: pino JSON lines go to this process's stderr
 * and are published on topo.log.<computation>.<index>, where the controller's
 * TOPO_LOGS stream keeps them for `topo logs`.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { subjects } from '../../protocol/index.js';
import { boundLogger } from '../log.js';

const enc = new TextEncoder();

/** `nc`: where lines are published (a function: the instance's own connection, then its worker's once that one is closed). */
export function instanceLogger(nc: NatsConnection | (() => NatsConnection), bindings: { computation: string; index: number; instanceId: string; worker: string; version: number }): Logger {
  const subject = subjects.log(bindings.computation, bindings.index);
  const connection = typeof nc === 'function' ? nc : () => nc;
  const destination = {
    write(line: string): void {
      process.stderr.write(line);
      try {
        connection().publish(subject, enc.encode(line.endsWith('\n') ? line.slice(0, -1) : line));
      } catch {
        /* connection closing: stderr still has it */
      }
    },
  };
  // Each key once per line, even when a computation logs a field of the same name (e.g. its own `version`): see boundLogger.
  return boundLogger({ ...bindings, instance: bindings.index }, { level: process.env.TOPO_LOG_LEVEL ?? 'info' }, destination);
}
