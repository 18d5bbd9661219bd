/** Command-line arguments of the controller process. */

export const USAGE = 'usage: topo-controller --nats URL [--creds FILE] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]   (or set TOPO_NATS_URL, TOPO_NATS_CREDS, TOPO_NATS_TLS_CA/CERT/KEY)';

export interface ControllerArgs {
  natsUrl: string;
  /** Admin .creds file (default $TOPO_NATS_CREDS, read when connecting). */
  creds?: string;
  tls?: { ca?: string; cert?: string; key?: string };
}

const FILE_FLAGS = { '--creds': 'creds', '--tls-ca': 'ca', '--tls-cert': 'cert', '--tls-key': 'key' } as const;

/** Parses argv (without node and script); throws an Error with a readable message on bad input. */
export function parseControllerArgs(argv: readonly string[], env: NodeJS.ProcessEnv): ControllerArgs {
  let natsUrl: string | undefined;
  const files: Partial<Record<(typeof FILE_FLAGS)[keyof typeof FILE_FLAGS], string>> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (flag in FILE_FLAGS) {
      const v = inline ?? argv[++i];
      if (!v || v.startsWith('--')) throw new Error(`${flag} needs a file`);
      files[FILE_FLAGS[flag as keyof typeof FILE_FLAGS]] = v;
    } else if (a === '--nats') {
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
  const { creds, ...tls } = files;
  return { natsUrl, ...(creds ? { creds } : {}), ...(Object.keys(tls).length ? { tls } : {}) };
}
