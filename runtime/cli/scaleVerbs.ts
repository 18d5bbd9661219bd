/** The placement commands: scale (parallelism, live) and worker (a worker process joining a topology). */
import { MAX_INSTANCES, PARTITIONS } from '../../protocol/index.js';
import { swapReplyOf, type ScaleOutcome } from '../client/index.js';
import { UsageError, intOption, jsonOption, nameArg, natsOption, type ParsedArgs } from './args.js';
import { namingDeployed, withClient, type Io, type Verb } from './common.js';
import { toJson } from './format.js';
import { ms, renderSteps } from './swapFormat.js';

/** The instance count positional: an integer 1..MAX_INSTANCES, else a usage error. */
function instancesArg(raw: string | undefined): number {
  const text = (raw ?? '').trim();
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_INSTANCES) {
    throw new UsageError(`the number of instances must be an integer from 1 to ${MAX_INSTANCES}, got ${JSON.stringify(raw ?? '')}`, 'scale');
  }
  return n;
}

export function renderScaled(o: ScaleOutcome): string {
  if (o.result === 'unchanged') return `${o.name} already runs on ${o.instances} instance${o.instances === 1 ? '' : 's'} (v${o.version}); nothing changed`;
  const timings = (o.pauseMs !== undefined ? `; upstreams paused ${ms(o.pauseMs)}` : '') + (o.loadMs !== undefined ? `; load ${ms(o.loadMs)} (not paused)` : '');
  const byWorker = new Map<string, number[]>();
  for (const p of [...o.placements].sort((a, b) => a.index - b.index)) byWorker.set(p.workerId, [...(byWorker.get(p.workerId) ?? []), p.index]);
  return [
    `scaled ${o.name} v${o.version} from ${o.fromInstances} to ${o.instances} instance${o.instances === 1 ? '' : 's'} in ${ms(o.elapsedMs)}${timings}`,
    `  placement: ${[...byWorker].map(([w, ix]) => `${w} (instance${ix.length === 1 ? '' : 's'} ${ix.join(', ')})`).join(', ')}`,
    ...renderSteps(o.steps),
  ].join('\n');
}

export const scale: Verb = {
  name: 'scale',
  summary: 'change how many instances of a computation run, live, its keyed state moving with its keys',
  usage: ['topo scale <name> <instances> [--drain-budget MS] [--json] [--nats URL]'],
  details:
    'Runs the computation on the given number of instances without stopping it or the rest of the\n' +
    'topology, with the steps of a swap: the producers upstream are paused, the current instances\n' +
    'drain what they received and hand over their keyed state and timers, and the new instances,\n' +
    'spread over the live workers, start from it and are on probation; a failure rolls back to the\n' +
    'current instances (exit 1). Keyed state is split by the partition of its key: each new instance\n' +
    'gets the state of the keys it will receive. A computation that reads a key-grouped stream can\n' +
    `run on at most ${PARTITIONS} instances (a stream has ${PARTITIONS} key partitions). The version does not change;\n` +
    '`topo history` lists the scale. Scaling to the current number changes nothing.',
  options: [
    { name: 'drain-budget', type: 'string', value: 'MS', description: 'how long the current instances may drain their backlog before the scale is rolled back (default 30000)' },
    jsonOption,
    natsOption,
  ],
  positionals: { min: 2, max: 2, names: 'a computation name and a number of instances, e.g. `topo scale counter 4`' },
  examples: ['topo scale counter 4', 'topo scale counter 1 --json'],
  async run(args: ParsedArgs, io: Io) {
    const name = nameArg(args.positionals[0], 'computation', 'scale');
    const instances = instancesArg(args.positionals[1]);
    const drainBudgetMs = intOption(args.values, 'drain-budget', 1, 'scale');
    const json = args.values.json === true;
    return withClient(args, async (client) => {
      let outcome: ScaleOutcome;
      try {
        outcome = await namingDeployed(client, () => client.scale(name, instances, drainBudgetMs !== undefined ? { drainBudgetMs } : {}));
      } catch (err) {
        const rolledBack = swapReplyOf(err);
        if (!rolledBack) throw err;
        if (json) io.out(toJson({ ...rolledBack, result: 'rolled-back' }));
        io.err([
          `scale of ${name} to ${instances} instance${instances === 1 ? '' : 's'} ROLLED BACK: ${rolledBack.error ?? 'a new instance failed its health gate'}`,
          `${name} v${rolledBack.version} keeps running on its previous instances`,
          ...renderSteps(rolledBack.steps),
        ].join('\n'));
        return 1;
      }
      io.out(json ? toJson(outcome) : renderScaled(outcome));
      return 0;
    });
  },
};
