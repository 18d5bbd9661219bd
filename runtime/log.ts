/** Process-level structured logger (pino, JSON lines on stderr). */
import { pino, type Logger } from 'pino';

export function processLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ name, level: process.env.TOPO_LOG_LEVEL ?? 'info', base: { pid: process.pid, ...bindings } }, pino.destination(2));
}
