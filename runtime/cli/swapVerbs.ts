/** The hot-swap commands: swap, rollback, promote, history. */
import { resolve } from 'node:path';
import { bundleCommand, bundleSource, swapReplyOf, checkSwapTarget, type CanarySummary, type SwapOptions, type SwapOutcome, type TopoClient } from '../client/index.js';
import { InvalidMetadataError, ModuleLoadError, TopoError, type Probation } from '../../protocol/index.js';
import { UsageError, intOption, jsonOption, nameArg, connectionOptions, stringOption, type ParsedArgs } from './args.js';
import { namingDeployed, shortPath, withClient, type Io, type Verb } from './common.js';
import { toJson } from './format.js';
import { StepPrinter, renderDryRun, renderHistory, renderRolledBack, renderSwapOutcome, type SwapKind } from './swapFormat.js';

/** --canary 25 or --canary 25%: an integer percentage 1..99. */
function canaryOption(args: ParsedArgs): number | undefined {
  const raw = args.values.canary;
  if (raw === undefined) return undefined;
  const text = String(raw).trim().replace(/%$/, '');
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 99) throw new UsageError(`--canary must be a percentage of the keys from 1 to 99, got ${JSON.stringify(raw)}`, 'swap');
  return n;
}

function probationOption(args: ParsedArgs): Partial<Probation> | undefined {
  const ms = intOption(args.values, 'probation-ms', 0, 'swap');
  const records = intOption(args.values, 'probation-records', 0, 'swap');
  if (ms === undefined && records === undefined) return undefined;
  return { ...(ms !== undefined ? { ms } : {}), ...(records !== undefined ? { records } : {}) };
}

/**
 * Runs a swap, rollback or promote and prints the outcome. A rolled-back one
 * prints why and its steps on stderr (the SwapReply on stdout with --json) and exits 1.
 * With `steps`, the steps were printed on stdout as they happened (a swap): the outcome leaves them out.
 */
async function reportSwap(
  kind: SwapKind, io: Io, json: boolean, run: () => Promise<SwapOutcome>, canaryOf?: (o: SwapOutcome) => Promise<CanarySummary | undefined>, steps?: StepPrinter,
): Promise<number> {
  let outcome: SwapOutcome;
  try {
    outcome = await run();
  } catch (err) {
    const rolledBack = swapReplyOf(err);
    if (!rolledBack) throw err;
    if (json) io.out(toJson({ ...rolledBack, result: 'rolled-back' }));
    io.err(renderRolledBack(kind, rolledBack, (steps?.count ?? 0) > 0));
    return 1;
  }
  if (json) {
    io.out(toJson(outcome));
    return 0;
  }
  const canary = canaryOf ? await canaryOf(outcome) : undefined;
  io.out(renderSwapOutcome(kind, outcome, canary, (steps?.count ?? 0) > 0));
  return 0;
}

/** The canary `swap --canary` just started, as the controller stored it (the SwapReply does not carry its partitions). */
async function startedCanary(client: TopoClient, o: SwapOutcome): Promise<CanarySummary | undefined> {
  const view = (await client.status().catch(() => undefined))?.computations.find((c) => c.name === o.name);
  return view?.canary?.version === o.version ? view.canary : undefined;
}

export const swap: Verb = {
  name: 'swap',
  summary: 'replace the code of a running computation live, rolling back by itself if the new code fails',
  usage: ['topo swap <name> <file> [--canary PCT] [--dry-run] [--drain-budget MS] [--python PATH] [--json] [--nats URL]', "topo swap <name> --cmd '<command>' [...]"],
  details:
    'The file must define a computation with the same name. It is bundled and its metadata checked\n' +
    'before anything is sent. Then the controller has the workers load the new version (not paused),\n' +
    'pauses the producers upstream, lets the old instances drain what they received, hands their\n' +
    'keyed state and pending timers to the new instances and resumes. The new version is on\n' +
    'probation: its output is held until it has handled some records or some time has passed\n' +
    'without an error. If it fails init, throws or hangs, the swap is rolled back: the old version\n' +
    'resumes with its state and gets back the input the new one took. A rolled-back swap exits 1.\n' +
    'Old instances with a backlog drain it for up to --drain-budget MS (default 30000); past that\n' +
    'the swap is rolled back, and the old instances keep their state and unprocessed input.\n' +
    '\n' +
    '--canary PCT runs the new version on PCT% of the key partitions of its key-grouped istreams,\n' +
    'beside the current version; `topo promote` then moves all keys to it, `topo rollback` drops it.\n' +
    '--dry-run prints which streams would change (istreams gained, lost or regrouped, ostreams\n' +
    'gained or lost, and the computations feeding or reading them) and changes nothing.',
  options: [
    { name: 'canary', type: 'string', value: 'PCT', description: 'run the new version on PCT% (1-99) of the keys beside the current one' },
    { name: 'dry-run', type: 'boolean', description: 'show what would change in the stream graph; change nothing' },
    { name: 'probation-ms', type: 'string', value: 'MS', description: 'probation length: the new version passes after MS ms without an error (default: the controller\'s)' },
    { name: 'probation-records', type: 'string', value: 'N', description: '...or after handling N records without an error, whichever comes first' },
    { name: 'drain-budget', type: 'string', value: 'MS', description: 'how long the old instances may drain their backlog before the swap is rolled back (default 30000)' },
    { name: 'python', type: 'string', value: 'PATH', description: 'for a .py file: the Python interpreter that runs the new version' },
    { name: 'cmd', type: 'string', value: 'COMMAND', description: 'the new version is this program speaking the operator protocol (see topo deploy --help)' },
    jsonOption,
    ...connectionOptions,
  ],
  positionals: { min: 1, max: 2, names: 'a computation name and a file (or --cmd), e.g. `topo swap counter examples/tweets/counter_v2.ts`' },
  examples: [
    'topo swap counter examples/tweets/counter_v2.ts',
    'topo swap counter examples/tweets/counter_v2.ts --dry-run',
    'topo swap counter examples/tweets/counter_v2.ts --canary 25',
    'topo swap mock-tweets-generator examples/tweets/generator_v2.py',
    'topo swap counter examples/tweets/broken/counter_throws.ts   # rolled back, exit 1',
  ],
  async run(args, io) {
    const name = nameArg(args.positionals[0], 'computation', 'swap');
    const cmd = stringOption(args.values, 'cmd');
    if (cmd !== undefined && args.positionals[1] !== undefined) throw new UsageError('give a file or --cmd, not both', 'swap');
    if (cmd === undefined && args.positionals[1] === undefined) throw new UsageError('`topo swap` needs a computation name and a file (or --cmd \'<command>\'), e.g. `topo swap counter examples/tweets/counter_v2.ts`', 'swap');
    const file = args.positionals[1] ?? '';
    const json = args.values.json === true;
    const canary = canaryOption(args);
    const probation = probationOption(args);
    const drainBudgetMs = intOption(args.values, 'drain-budget', 1, 'swap');
    const opts: SwapOptions = {
      ...(canary !== undefined ? { canary } : {}),
      ...(drainBudgetMs !== undefined ? { drainBudgetMs } : {}),
      ...(args.values['dry-run'] === true ? { dryRun: true } : {}),
      ...(probation ? { probation } : {}),
    };
    const source = cmd !== undefined ? `cmd: ${cmd}` : shortPath(resolve(file));
    // Bundle and validate first: a broken file or a name mismatch fails here without touching the topology.
    const python = stringOption(args.values, 'python');
    if (cmd !== undefined && python !== undefined) throw new UsageError('--python applies to .py files, not to --cmd', 'swap');
    const bundle = cmd !== undefined
      ? await bundleCommand(cmd, { name })
      : await bundleSource(file, python !== undefined ? { python } : {});
    checkSwapTarget(name, bundle.metadata, source);
    return withClient(args, async (client) => {
      if (opts.dryRun) {
        const reply = await remoteSwap(name, source, () => client.swapBundle(name, bundle, { ...opts, source }));
        io.out(json ? toJson(reply) : renderDryRun(reply, canary));
        return 0;
      }
      // Steps as they happen (progress events), unless --json: stdout then carries only the reply.
      const steps = json ? undefined : new StepPrinter(io.out);
      return reportSwap(
        'swap', io, json,
        () => namingDeployed(client, () => remoteSwap(name, source, () => client.swapBundle(name, bundle, { ...opts, source, ...(steps ? { onProgress: steps.print } : {}) }))),
        canary !== undefined ? (o) => startedCanary(client, o) : undefined,
        steps,
      );
    });
  },
};

/** A load or metadata error coming back from the workers means the swap never started: say so. */
async function remoteSwap(name: string, source: string, run: () => Promise<SwapOutcome>): Promise<SwapOutcome> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof ModuleLoadError || err instanceof InvalidMetadataError) {
      throw new TopoError(`swap of ${name} not started: the workers could not load ${source}: ${err.message}; nothing was paused or changed`, { cause: err });
    }
    throw err;
  }
}

export const rollback: Verb = {
  name: 'rollback',
  summary: 'swap a computation back to its previous version (or drop its canary)',
  usage: ['topo rollback <name> [--to VERSION] [--json] [--nats URL]'],
  details:
    'Swaps the running computation back to the version that ran before it (or to --to VERSION),\n' +
    'with the same steps as `topo swap`: keyed state and timers are handed over. While a canary\n' +
    'runs, rollback drops the canary and gives its keys back to the current version.\n' +
    '`topo history <name>` lists the versions.',
  options: [{ name: 'to', type: 'string', value: 'VERSION', description: 'the version to go back to (default: the previous one)' }, jsonOption, ...connectionOptions],
  positionals: { min: 1, max: 1, names: 'the name of a computation, e.g. `topo rollback counter`' },
  examples: ['topo rollback counter', 'topo rollback counter --to 1', 'topo rollback counter --json'],
  async run(args, io) {
    const name = nameArg(args.positionals[0], 'computation', 'rollback');
    const to = intOption(args.values, 'to', 1, 'rollback');
    const json = args.values.json === true;
    const steps = json ? undefined : new StepPrinter(io.out);
    return withClient(args, (client) =>
      reportSwap('rollback', io, json, () => namingDeployed(client, () => client.rollback(name, { ...(to !== undefined ? { to } : {}), ...(steps ? { onProgress: steps.print } : {}) })), undefined, steps),
    );
  },
};

export const promote: Verb = {
  name: 'promote',
  summary: "make a computation's canary the version on all keys",
  usage: ['topo promote <name> [--json] [--nats URL]'],
  details: 'Ends a canary started with `topo swap <name> <file> --canary PCT`: the canary version takes\nover every key partition, with the state of the keys it did not have handed over to it.',
  options: [jsonOption, ...connectionOptions],
  positionals: { min: 1, max: 1, names: 'the name of a computation running a canary, e.g. `topo promote counter`' },
  examples: ['topo promote counter'],
  async run(args, io) {
    const name = nameArg(args.positionals[0], 'computation', 'promote');
    const json = args.values.json === true;
    const steps = json ? undefined : new StepPrinter(io.out);
    return withClient(args, (client) =>
      reportSwap('promote', io, json, () => namingDeployed(client, () => client.promote(name, steps ? { onProgress: steps.print } : {})), undefined, steps));
  },
};

export const history: Verb = {
  name: 'history',
  summary: 'list the versions of a computation: deploys, swaps, canaries, rollbacks, kills',
  usage: ['topo history <name> [--json] [--nats URL]'],
  details:
    'One row per version, oldest first: what was done (action), how it ended (result), the\n' +
    'artifact fingerprint, when (local time), how long upstreams were paused and the new code took\n' +
    'to load (swaps), the version it replaced, and the error of a failed or rolled-back one.\n' +
    '--json prints the full entries, with every step, one per line.',
  options: [jsonOption, ...connectionOptions],
  positionals: { min: 1, max: 1, names: 'the name of a computation, e.g. `topo history counter`' },
  examples: ['topo history counter', 'topo history counter --json | jq .steps'],
  async run(args, io) {
    const name = nameArg(args.positionals[0], 'computation', 'history');
    const entries = await withClient(args, (client) => client.history(name));
    if (args.values.json === true) for (const e of entries) io.out(toJson(e));
    else io.out(renderHistory(entries));
    return 0;
  },
};
