/** Process-level structured logger (pino, JSON lines on stderr), and the bound-fields logger both it and instance loggers use. */
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/**
 * A pino logger whose every line carries `fields` (who is logging: process,
 * worker, computation, instance, version...), each key exactly once.
 *
 * pino's own bindings (`base`, `child()`) are written as a prefix and the
 * fields of a log call after them, so `log.info({ version: 2 }, ...)` on a
 * logger bound to `version` produced a line with `version` twice (invalid for
 * strict JSON readers; JSON.parse keeps the last). Here the fields come from a
 * mixin, merged into the call's own object: a field the call (or a child
 * logger's bindings) sets itself replaces the bound one instead of repeating it.
 */
export function boundLogger(fields: Record<string, unknown>, options: LoggerOptions, destination: DestinationStream): Logger {
  let root: Logger | undefined;
  const logger = pino(
    {
      ...options,
      base: {},
      mixin(mergeObject, _level, from) {
        const out: Record<string, unknown> = {};
        // A child's bindings are written before the call's object: skip the keys they already carry.
        const bound = from !== root ? from.bindings() : undefined;
        for (const [k, v] of Object.entries(fields)) {
          if (Object.prototype.hasOwnProperty.call(mergeObject, k)) continue;
          if (bound && Object.prototype.hasOwnProperty.call(bound, k)) continue;
          out[k] = v;
        }
        return out;
      },
    },
    destination,
  );
  root = logger;
  return logger;
}

export function processLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  return boundLogger({ pid: process.pid, ...bindings }, { name, level: process.env.TOPO_LOG_LEVEL ?? 'info' }, pino.destination(2));
}
