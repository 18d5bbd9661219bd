/** Command-line arguments of the controller process. */

export const USAGE = 'usage: topo-controller --nats URL   (or set TOPO_NATS_URL)';

export interface ControllerArgs {
  natsUrl: string;
}

/** Parses argv (without node and script); throws an Error with a readable message on bad input. */
export function parseControllerArgs(argv: readonly string[], env: NodeJS.ProcessEnv): ControllerArgs {
  let natsUrl: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--nats') {
      const v = argv[++i];
      if (!v || v.startsWith('--')) throw new Error('--nats needs a URL, e.g. --nats nats://127.0.0.1:4222');
      natsUrl = v;
    } else if (a.startsWith('--nats=')) {
      natsUrl = a.slice('--nats='.length);
      if (!natsUrl) throw new Error('--nats needs a URL, e.g. --nats=nats://127.0.0.1:4222');
    } else {
      throw new Error(`unknown argument ${JSON.stringify(a)}`);
    }
  }
  natsUrl ??= env.TOPO_NATS_URL || undefined;
  if (!natsUrl) throw new Error('no NATS server given: pass --nats URL or set TOPO_NATS_URL');
  return { natsUrl };
}
