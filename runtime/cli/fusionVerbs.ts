/** The fusion commands: fuse (run a chain in one process per instance) and split (take one out), both live. */
import type { FusionReply } from '../../protocol/index.js';
import { swapReplyOf, type TopoClient } from '../client/index.js';
import { jsonOption, nameArg, connectionOptions, type ParsedArgs } from './args.js';
import { namingDeployed, withClient, type Io, type Verb } from './common.js';
import { toJson } from './format.js';
import { ms, renderSteps } from './swapFormat.js';

function renderGroups(r: FusionReply): string[] {
  return r.groups.length ? r.groups.map((g) => `  ${g.group}: ${g.members.join(' -> ')}`) : ['  (no fusion groups)'];
}

function rendered(what: string, r: FusionReply & { elapsedMs: number }): string {
  if (r.result === 'unchanged') return [`${what}: nothing to change`, 'fusion groups:', ...renderGroups(r)].join('\n');
  return [
    `${what} in ${ms(r.elapsedMs)}${r.pauseMs !== undefined ? `; upstreams paused ${ms(r.pauseMs)}` : ''}`,
    'fusion groups:',
    ...renderGroups(r),
    ...renderSteps(r.steps),
  ].join('\n');
}

async function runChange(args: ParsedArgs, io: Io, what: string, call: (c: TopoClient) => Promise<FusionReply & { elapsedMs: number }>): Promise<number> {
  const json = args.values.json === true;
  return withClient(args, async (client) => {
    try {
      const r = await namingDeployed(client, () => call(client));
      io.out(json ? toJson(r) : rendered(what, r));
      return 0;
    } catch (err) {
      const rolledBack = swapReplyOf(err);
      if (!rolledBack) throw err;
      if (json) io.out(toJson({ ...rolledBack, result: 'rolled-back' }));
      io.err([`${what} ROLLED BACK: ${rolledBack.error ?? 'a new instance failed its health gate'}`, 'every computation keeps running as before', ...renderSteps(rolledBack.steps)].join('\n'));
      return 1;
    }
  });
}

export const fuse: Verb = {
  name: 'fuse',
  summary: 'run a chain of computations fused: instance i of each in one worker process, records passed by direct calls',
  usage: ['topo fuse <name> <name>... [--json] [--nats URL]'],
  details:
    'Fuses the named computations (and the groups they are already in) into one chain, live, with the\n' +
    'steps of a swap: the producers feeding the chain are paused, the current instances drain front to\n' +
    'back and hand over their keyed state, and the fused instances start from it on the worker of the\n' +
    'chain head\'s instance of the same index. Between fused computations records are handed over\n' +
    'in-process: no serialization, no NATS hop. A fused stream stays visible: `topo tap` and any other\n' +
    'consumer still see it (a producer publishes it on NATS only while someone listens).\n' +
    'Rules (each edge a -> b): both TypeScript; b reads only that stream and a is its only producer;\n' +
    'the same number of instances; shuffle grouping, or key/broadcast with one instance each; no cycle.\n' +
    'A hint (hints.fuse = false, cpu heavy, autoscale) is overridden by naming the pair here.',
  options: [jsonOption, ...connectionOptions],
  positionals: { min: 2, max: 16, names: 'the computations to fuse, e.g. `topo fuse parse enrich`' },
  examples: ['topo fuse parse enrich', 'topo fuse parse enrich score --json'],
  async run(args: ParsedArgs, io: Io) {
    const names = args.positionals.map((p) => nameArg(p, 'computation', 'fuse'));
    return runChange(args, io, `fused ${names.join(' + ')}`, (client) => client.fuse(names));
  },
};

export const split: Verb = {
  name: 'split',
  summary: 'take a computation out of its fusion group, live, and keep it out',
  usage: ['topo split <name> [--json] [--nats URL]'],
  details:
    'Runs the computation on its own again (its group splits around it), with the steps of a swap and\n' +
    'nothing lost; it is not fused again until `topo fuse` names it. A computation that is not fused is\n' +
    'only marked so.',
  options: [jsonOption, ...connectionOptions],
  positionals: { min: 1, max: 1, names: 'a computation name, e.g. `topo split enrich`' },
  examples: ['topo split enrich'],
  async run(args: ParsedArgs, io: Io) {
    const name = nameArg(args.positionals[0], 'computation', 'split');
    return runChange(args, io, `split ${name}`, (client) => client.split(name));
  },
};
