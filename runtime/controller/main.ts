/**
 * `node dist/controller.mjs --nats URL` (or env TOPO_NATS_URL): the topo
 * controller process. Exit codes: 0 after SIGTERM/SIGINT, 1 on a runtime
 * failure, 2 on bad arguments.
 */
import { processLogger } from '../log.js';
import { startController } from './controller.js';
import { USAGE, parseControllerArgs, type ControllerArgs } from './args.js';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let args: ControllerArgs;
  try {
    args = parseControllerArgs(argv, process.env);
  } catch (err) {
    process.stderr.write(`topo-controller: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const log = processLogger('topo-controller');
  let controller: Awaited<ReturnType<typeof startController>>;
  try {
    controller = await startController({ natsUrl: args.natsUrl, creds: args.creds, tls: args.tls, logger: log });
  } catch (err) {
    log.fatal({ err }, `controller could not start: ${(err as Error).message}`);
    process.stderr.write(`topo-controller: ${(err as Error).message}\n`);
    process.exit(1);
  }
  // SIGTERM/SIGINT is how `topo down` (and `topo up` ending) stops the controller: stop the workers
  // registered from elsewhere too. TOPO_KEEP_WORKERS=1 leaves them running (e.g. to restart only the controller).
  const stopWorkers = process.env.TOPO_KEEP_WORKERS !== '1';
  const shutdown = (signal: string): void => {
    log.info({ signal, stopWorkers }, `received ${signal}, stopping`);
    controller.stop({ stopWorkers }).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(0);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

await main();
