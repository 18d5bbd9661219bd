/** `topo ui`: where the running topology's web UI is (the controller serves it, runtime/controller/web.ts). */
import { jsonOption, connectionOptions, type ParsedArgs } from './args.js';
import { withClient, type Io, type Verb } from './common.js';
import { toJson } from './format.js';

/** How long the UI's address may take to answer before `topo ui` says it does not. */
const CHECK_TIMEOUT_MS = 3_000;

export const ui: Verb = {
  name: 'ui',
  summary: "print the address of the running topology's web UI (live graph, rates, timeline, logs)",
  usage: ['topo ui [--json] [--nats URL]'],
  details:
    'The controller serves the web UI and /metrics on one local HTTP port (`topo up` asks for\n' +
    '127.0.0.1:7390 and takes a free port when that one is taken; TOPO_HTTP on the controller picks\n' +
    'another address, TOPO_HTTP=off serves nothing). This asks the controller where, checks that the\n' +
    'address answers, and prints it: open it in a browser. The UI is read-only; changes go through\n' +
    'the CLI (deploy, swap, scale, kill, ...).',
  options: [jsonOption, ...connectionOptions],
  positionals: { min: 0, max: 0, names: '' },
  examples: ['topo ui', 'topo ui --json'],
  async run(args: ParsedArgs, io: Io) {
    const json = args.values.json === true;
    return withClient(args, async (client) => {
      const s = await client.status();
      if (!s.httpUrl) {
        throw new Error('the controller serves no HTTP (it was started with TOPO_HTTP=off, or is older than the web UI): restart it without TOPO_HTTP=off to get the UI');
      }
      const url = `${s.httpUrl}/`;
      const problem = await notAnswering(url);
      if (problem) throw new Error(`the controller says it serves the UI at ${url}, but ${problem}`);
      io.out(json ? toJson({ url, metrics: `${s.httpUrl}/metrics`, natsUrl: s.natsUrl }) : `web UI: ${url}   metrics: ${s.httpUrl}/metrics`);
      return 0;
    });
  },
};

/** Why `url` does not serve the UI (unreachable, an error status), or undefined when it does. */
async function notAnswering(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(CHECK_TIMEOUT_MS) });
    if (res.ok) return undefined;
    return `it answers HTTP ${res.status}: ${(await res.text()).trim().slice(0, 300)}`;
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    return `it does not answer from here (${cause ?? (err as Error).message})`;
  }
}
