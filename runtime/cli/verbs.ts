/** The `topo` commands: each is a VerbSpec (for parsing and --help) plus a run function. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  DEFAULT_DIR, TopoClient, bundleCommand, bundleSource, downSupervised, findTopologyDir, isMalformed, packageRoot, readSupervisedRun,
  upSupervised, type StatusView,
} from '../client/index.js';
import { badTraceId, isTraceId } from '../../protocol/trace.js';
import { UsageError, intOption, jsonOption, nameArg, connectionOptions, stringOption } from './args.js';
import { checkKnownComputation, clockTime, namingDeployed, shortPath, sleep, unproducedStream, withClient, type Io, type Verb } from './common.js';
import { renderDeadLetter, renderDeployed, renderProcesses, renderLogEntry, renderStatus, renderTapRecord, toJson } from './format.js';
import { scale, worker } from './scaleVerbs.js';
import { fuse, split } from './fusionVerbs.js';
import { history, promote, rollback, swap } from './swapVerbs.js';
import { StepPrinter } from './swapFormat.js';
import { ui } from './uiVerbs.js';

export type { Io, Verb } from './common.js';

const DEMO_FILES = ['generator', 'hashtags', 'counter', 'sink'].map((n) => join('examples', 'tweets', `${n}.ts`));
/** The same demo with its source and its sink in Python, its extractor and counter in TypeScript. */
const MIXED_DEMO_FILES = ['generator.py', 'hashtags.ts', 'counter.ts', 'sink.py'].map((n) => join('examples', 'tweets', n));
const DEMO_STREAM = 'top-hashtags';

// ---- up / down ---------------------------------------------------------------

const up: Verb = {
  name: 'up',
  summary: 'start a local topology: nats-server, a controller and workers (they keep running)',
  usage: ['topo up [--workers N] [--nats URL [--creds FILE]] [--no-auth] [--dir DIR] [--demo [--mixed]]'],
  details:
    'Processes run in the background under a supervisor that restarts them when they die (backoff,\n' +
    'then a cool-down after repeated crashes), and write their logs to DIR/logs. `topo down` stops them.\n' +
    'Run again, it starts only what is missing and never stops or resets a live process.\n' +
    'With --demo, the tweets example (generator -> hashtags -> counter -> sink) is deployed and\n' +
    `the ${DEMO_STREAM} stream is printed until Ctrl-C; the topology keeps running afterwards.\n` +
    'With --mixed too, the generator and the sink are the Python ones (examples/tweets/*.py, run by\n' +
    'the workers in Python processes), the hashtags extractor and the counter TypeScript.\n' +
    'The nats-server it starts has authentication on (NATS JWT, operator mode): keys and creds are in\n' +
    'DIR/auth (mode 0600); the CLI finds the admin creds through DIR/run.json, each worker has its own\n' +
    'restricted credential (no deploy, kill or KV writes). --no-auth turns that off.',
  options: [
    { name: 'workers', type: 'string', value: 'N', description: 'number of worker processes (default 2)' },
    { name: 'nats', type: 'string', value: 'URL', description: 'use this NATS server (with JetStream) instead of starting one' },
    { name: 'creds', type: 'string', value: 'FILE', description: 'with --nats: credentials for the controller and workers (default $TOPO_NATS_CREDS)' },
    { name: 'no-auth', type: 'boolean', description: 'start nats-server without authentication (any local client may then deploy, kill or write KV)' },
    { name: 'dir', type: 'string', value: 'DIR', description: `folder for run.json, logs and data (default ${DEFAULT_DIR})` },
    { name: 'demo', type: 'boolean', description: `deploy examples/tweets and print the ${DEMO_STREAM} stream` },
    { name: 'mixed', type: 'boolean', description: 'with --demo: the generator and sink in Python, the rest in TypeScript' },
  ],
  positionals: { min: 0, max: 0, names: '' },
  examples: ['topo up', 'topo up --workers 4', 'topo up --demo', 'topo up --demo --mixed', 'topo up --nats nats://127.0.0.1:4222'],
  async run(args, io) {
    const dir = resolve(stringOption(args.values, 'dir') ?? DEFAULT_DIR);
    const workers = intOption(args.values, 'workers', 1, 'up') ?? 2;
    const demo = args.values.demo === true;
    const mixed = args.values.mixed === true;
    if (mixed && !demo) throw new UsageError('--mixed goes with --demo', 'up');
    const natsFlag = stringOption(args.values, 'nats');
    if (demo) checkDemoFiles(mixed);
    const creds = stringOption(args.values, 'creds');
    if (creds && !natsFlag) throw new UsageError('--creds goes with --nats (the server `topo up` starts makes its own credentials)', 'up');
    const noAuth = args.values['no-auth'] === true;
    if (noAuth && natsFlag) throw new UsageError('--no-auth is for the server `topo up` starts; with --nats, the server decides', 'up');
    const r = await upSupervised({
      dir,
      ...(args.values.workers !== undefined ? { workers } : {}),
      ...(natsFlag ? { natsUrl: natsFlag } : {}),
      // A stable address for the UI and /metrics across restarts; a taken port falls back to a free one.
      env: { TOPO_HTTP: process.env.TOPO_HTTP || DEFAULT_HTTP, ...(creds ? { TOPO_NATS_CREDS: creds } : {}) },
      noAuth,
    });
    const httpUrl = await controllerHttpUrl(r.run.natsUrl, r.run.credsFile ?? creds);
    const natsUrl = r.run.natsUrl;
    const names = (r.run.processes ?? []).filter((p) => p.kind === 'worker').map((p) => p.name);
    if (r.how === 'running') {
      io.out(`topo is already running in ${shortPath(dir)} (NATS ${natsUrl}, started ${new Date(r.run.startedAt).toLocaleString()}); ${r.started.length ? `started ${r.started.join(', ')}` : 'started nothing'}.`);
      io.out(`found ${r.found.length ? r.found.join(', ') : 'no live process (its supervisor restarts them)'}; supervisor pid ${r.run.supervisorPid}.`);
      if (httpUrl) io.out(`web UI: ${httpUrl}/   metrics: ${httpUrl}/metrics`);
      if (!demo) {
        io.out('`topo status` shows it; `topo down` stops it.');
        return 0;
      }
    } else {
      if (r.how === 'adopted') io.out(`found ${r.found.join(', ')} still running: kept them; started ${r.started.length ? r.started.join(', ') : 'only a new supervisor'}.`);
      io.out(`topo is up: NATS ${natsUrl}, controller and ${names.length} worker${names.length === 1 ? '' : 's'} (${names.join(', ')}), supervised (pid ${r.run.supervisorPid}: restarts what dies).`);
      io.out(`logs: ${shortPath(r.run.logDir)}/ (supervisor.log, controller.log, worker-<n>.log${r.run.ownsNats ? ', nats.log' : ''})`);
      if (httpUrl) io.out(`web UI: ${httpUrl}/   metrics: ${httpUrl}/metrics`);
      if (r.run.natsMonitorUrl) io.out(`nats-server monitoring: ${r.run.natsMonitorUrl}/ (/varz, /connz, /jsz)`);
      if (!demo) {
        io.out('next:');
        io.out('  topo deploy <file.ts>      deploy a computation (see examples/)');
        io.out('  topo status                computations, stream graph, workers, processes');
        io.out('  topo tap <stream>          print the records on a stream');
        io.out('  topo down                  stop everything');
        return 0;
      }
    }
    return runDemo(natsUrl, r.run.credsFile ?? creds, io, mixed);
  },
};

const DEFAULT_HTTP = '127.0.0.1:7390';

/** Where the controller serves the UI and /metrics (its status says), or undefined if it does not answer in time. */
async function controllerHttpUrl(natsUrl: string, creds: string | undefined): Promise<string | undefined> {
  const client = await TopoClient.connect(natsUrl, { name: 'topo-cli', creds }).catch(() => undefined);
  if (!client) return undefined;
  try {
    return (await client.status({ timeoutMs: 5_000 })).httpUrl;
  } catch {
    return undefined;
  } finally {
    await client.close().catch(() => undefined);
  }
}

function checkDemoFiles(mixed = false): string[] {
  const files = (mixed ? MIXED_DEMO_FILES : DEMO_FILES).map((f) => join(packageRoot(), f));
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length) throw new Error(`the demo needs ${missing.map(shortPath).join(', ')}, which ${missing.length > 1 ? 'are' : 'is'} missing`);
  return files;
}

async function runDemo(natsUrl: string, creds: string | undefined, io: Io, mixed: boolean): Promise<number> {
  const files = checkDemoFiles(mixed);
  const client = await TopoClient.connect(natsUrl, { name: 'topo-cli', creds });
  try {
    const running = new Map((await client.status()).computations.map((c) => [c.name, c]));
    for (const file of files) {
      const bundle = await bundleSource(file);
      const current = running.get(bundle.metadata.name);
      if (current) {
        io.out(`${current.name} is already deployed (v${current.version}, sha ${current.sha.slice(0, 12)})`);
        continue;
      }
      io.out(renderDeployed(await client.deployBundle(bundle, { source: shortPath(file) })));
    }
    io.out(`printing ${DEMO_STREAM} (Ctrl-C to stop; the topology keeps running, \`topo status\` shows it and \`topo down\` stops it)`);
    for await (const item of client.tap(DEMO_STREAM, { signal: io.signal })) {
      if (isMalformed(item)) io.err(`malformed message on ${item.subject}: ${item.malformed}`);
      else io.out(renderTapRecord(item));
    }
    io.out('stopped printing; the topology keeps running: `topo down` stops it.');
    return 0;
  } finally {
    await client.close().catch(() => undefined);
  }
}

const down: Verb = {
  name: 'down',
  summary: 'stop the local topology that `topo up` started',
  usage: ['topo down [--dir DIR]'],
  details: 'Asks the supervisor to stop the workers, then the controller, then nats-server (if `topo up` started it),\nand kills whatever run.json still lists, restarted processes included.\nState in DIR/nats is kept: the next `topo up` starts from it.',
  options: [{ name: 'dir', type: 'string', value: 'DIR', description: `topology folder (default: ${DEFAULT_DIR} here or in a parent folder)` }],
  positionals: { min: 0, max: 0, names: '' },
  examples: ['topo down', 'topo down --dir /tmp/my-topo'],
  async run(args, io) {
    const flag = stringOption(args.values, 'dir');
    const dir = flag ? resolve(flag) : (findTopologyDir() ?? resolve(DEFAULT_DIR));
    const result = await downSupervised(dir);
    if (!result.found) {
      io.out(`no topo is running here (no ${shortPath(join(dir, 'run.json'))}); nothing to stop.`);
      return 0;
    }
    io.out(result.stopped.length ? `stopped ${result.stopped.join(', ')}.` : 'the processes had already exited; cleaned up run.json.');
    return 0;
  },
};

// ---- deploy / kill ---------------------------------------------------------

const deploy: Verb = {
  name: 'deploy',
  summary: 'bundle a computation (TypeScript, Python, or any command) and deploy it into the running topology',
  usage: ['topo deploy <file> [--instances N] [--python PATH] [--json] [--nats URL]', "topo deploy --cmd '<command>' --name <name> [--instances N] [--json] [--nats URL]"],
  details:
    'A .ts or .js file must default-export a defineComputation(...). It is bundled into one\n' +
    'artifact (the SDK and npm dependencies inlined) and its metadata is checked before anything\n' +
    'is sent: a broken file changes nothing in the running topology.\n' +
    '\n' +
    'A .py file (file.py, or file.py:ClassName when it defines several) holds a subclass of\n' +
    'topo.Computation; its metadata is read with `python -m topo describe`. Workers run it in a\n' +
    'Python process with --python PATH, else their TOPO_PYTHON, else .topo/python (made by\n' +
    '`npm run setup`, with the SDK installed). Packages it imports must be installed in that\n' +
    'interpreter: give --python the interpreter of a virtual environment that has them.\n' +
    '\n' +
    "--cmd '<command>' runs any program that speaks the operator protocol (PROTOCOL.md, Hosted\n" +
    'operators) with /bin/sh -c, in the current folder; it is started once here to read the\n' +
    'metadata it declares, which must name the computation --name. The command must exist on\n' +
    'every machine that runs a worker.\n' +
    '\n' +
    'The steps (placement, the start of each instance, saving desired state) are printed as the\n' +
    'controller ends them. --json prints only the deployed ComputationRecord, as one JSON object.',
  options: [
    { name: 'instances', type: 'string', value: 'N', description: 'number of parallel instances (default: chosen by the controller)' },
    { name: 'python', type: 'string', value: 'PATH', description: 'the Python interpreter that runs a .py computation' },
    { name: 'cmd', type: 'string', value: 'COMMAND', description: 'run a program in any language that speaks the operator protocol' },
    { name: 'name', type: 'string', value: 'NAME', description: 'with --cmd: the computation it declares' },
    jsonOption,
    ...connectionOptions,
  ],
  positionals: { min: 0, max: 1, names: 'a computation file, e.g. `topo deploy examples/tweets/hashtags.ts`' },
  examples: [
    'topo deploy examples/tweets/hashtags.ts',
    'topo deploy counter.ts --instances 4',
    'topo deploy examples/tweets/generator.py',
    "topo deploy --cmd './word-lengths' --name word-lengths",
  ],
  async run(args, io) {
    const file = args.positionals[0];
    const instances = intOption(args.values, 'instances', 1, 'deploy');
    const cmd = stringOption(args.values, 'cmd');
    const name = stringOption(args.values, 'name');
    const python = stringOption(args.values, 'python');
    if (cmd !== undefined && file !== undefined) throw new UsageError('give a file or --cmd, not both', 'deploy');
    if (cmd === undefined && file === undefined) throw new UsageError('`topo deploy` needs a computation file (or --cmd \'<command>\' --name <name>), e.g. `topo deploy examples/tweets/hashtags.ts`', 'deploy');
    if (cmd !== undefined && name === undefined) throw new UsageError('--cmd needs --name <name>, the computation the command declares', 'deploy');
    if (cmd === undefined && name !== undefined) throw new UsageError('--name goes with --cmd (a file declares its own name)', 'deploy');
    if (cmd !== undefined && python !== undefined) throw new UsageError('--python applies to .py files, not to --cmd', 'deploy');
    if (cmd !== undefined && cmd.trim() === '') throw new UsageError('--cmd needs a command', 'deploy');
    // Bundle and validate first: a broken file fails here without touching the topology.
    const bundle = cmd !== undefined
      ? await bundleCommand(cmd, { name: nameArg(name, 'computation', 'deploy') })
      : await bundleSource(file!, python !== undefined ? { python } : {});
    const source = cmd !== undefined ? `cmd: ${cmd}` : shortPath(resolve(file!));
    const json = args.values.json === true;
    // Steps as they happen (progress events), unless --json: stdout then carries only the record.
    const steps = json ? undefined : new StepPrinter(io.out);
    const record = await withClient(args, (c) =>
      c.deployBundle(bundle, { source, ...(instances !== undefined ? { instances } : {}), ...(steps ? { onProgress: steps.print } : {}) }),
    );
    io.out(json ? toJson(record) : renderDeployed(record));
    return 0;
  },
};

const kill: Verb = {
  name: 'kill',
  summary: 'stop a computation and remove it from the topology',
  usage: ['topo kill <name> [--json] [--nats URL]'],
  details: '--json prints {"name", "version", "result": "killed"}: the version that was running.',
  options: [jsonOption, ...connectionOptions],
  positionals: { min: 1, max: 1, names: 'the name of a computation (see `topo status`)' },
  examples: ['topo kill hashtags', 'topo kill hashtags --json'],
  async run(args, io) {
    const name = nameArg(args.positionals[0], 'computation', 'kill');
    const killed = await withClient(args, (c) => namingDeployed(c, () => c.kill(name)));
    io.out(args.values.json === true ? toJson({ ...killed, result: 'killed' }) : `killed ${name}`);
    return 0;
  },
};

// ---- status / tap / logs -------------------------------------------------------

const status: Verb = {
  name: 'status',
  summary: 'show computations, the stream graph and workers',
  usage: ['topo status [--json] [--watch] [--nats URL]'],
  options: [jsonOption, { name: 'watch', short: 'w', type: 'boolean', description: 'refresh every second until Ctrl-C' }, ...connectionOptions],
  positionals: { min: 0, max: 0, names: '' },
  examples: ['topo status', 'topo status --watch', 'topo status --json | jq .computations'],
  async run(args, io) {
    const json = args.values.json === true;
    const watch = args.values.watch === true;
    // The supervisor's process table, when the topology shown is the one of .topo/run.json here.
    const withProcesses = (s: StatusView): StatusView => {
      const tdir = findTopologyDir();
      const run = tdir ? readSupervisedRun(tdir) : undefined;
      return run?.processes && (!s.natsUrl || s.natsUrl === run.natsUrl) ? { ...s, processes: run.processes } : s;
    };
    const show = (s: StatusView): void => io.out(json ? toJson(withProcesses(s)) : renderStatus(withProcesses(s)).trimEnd());
    return withClient(args, async (c) => {
      if (!watch) {
        let s: StatusView;
        try {
          s = await c.status();
        } catch (err) {
          // No controller answer: the supervisor's table still says what runs, restarts or cools down.
          const tdir = findTopologyDir();
          const procs = tdir ? readSupervisedRun(tdir)?.processes : undefined;
          if (procs?.length && !json) io.out(renderProcesses(procs).join('\n'));
          throw err;
        }
        show(s);
        return 0;
      }
      // A failed refresh (a timeout, a controller restarting) is shown with the
      // time of the last good one, and the watch keeps trying.
      let last: { s: StatusView; at: Date } | undefined;
      while (!io.signal.aborted) {
        let failure: string | undefined;
        try {
          last = { s: await c.status({ timeoutMs: 5_000 }), at: new Date() };
        } catch (err) {
          if (io.signal.aborted) break;
          failure = (err as Error)?.message ?? String(err);
        }
        const lastGood = last ? `last refresh ${clockTime(last.at)}` : 'no refresh yet';
        if (json) {
          if (failure === undefined && last) show(last.s);
        } else {
          const tty = process.stdout.isTTY === true;
          if (tty) process.stdout.write('\x1b[2J\x1b[H');
          // A TTY redraws the last good status under the error; a pipe gets only the error line.
          if (last && (failure === undefined || tty)) show(last.s);
        }
        if (failure !== undefined) io.err(`topo: status failed at ${clockTime(new Date())}: ${failure} (${lastGood}); retrying every second`);
        if (!json) io.out(`\n(${lastGood}; refreshing every second; Ctrl-C to stop)`);
        await sleep(1_000, io.signal);
      }
      return 0;
    });
  },
};

const tap: Verb = {
  name: 'tap',
  summary: 'print the records flowing on a stream, one trace across all streams, or the dead letters',
  usage: [
    'topo tap <stream> [--json] [--limit N] [--nats URL]', 'topo tap --trace <id> [--json] [--limit N] [--nats URL]',
    'topo tap --dead-letters [computation] [--follow] [--json] [--limit N]',
  ],
  details:
    'A tap sees records produced from now on, without slowing producers. Messages that are not\n' +
    'valid batches are reported on stderr. --trace follows one trace (PROTOCOL.md, Traces) across\n' +
    'every stream: the records carrying that trace id, with their stream names, in arrival order.\n' +
    'Sources start traces for a sampled share of their records (TOPO_TRACE_SAMPLE on the workers,\n' +
    'or hints.traceSample); `topo tap <stream> --json` shows the trace of each traced record.\n' +
    '--dead-letters prints the last stored dead letters (records a computation failed on) of one\n' +
    'computation or all, then exits unless --follow is given.',
  options: [
    jsonOption,
    { name: 'limit', short: 'n', type: 'string', value: 'N', description: 'stop after N records' },
    { name: 'trace', type: 'string', value: 'ID', description: 'follow the records of one trace (32 lowercase hex digits) on every stream' },
    { name: 'dead-letters', type: 'boolean', description: 'show dead letters instead of a stream' },
    { name: 'last', type: 'string', value: 'N', description: 'with --dead-letters: how many stored ones to show first (default 50)' },
    { name: 'follow', short: 'f', type: 'boolean', description: 'with --dead-letters: keep printing new ones until Ctrl-C' },
    ...connectionOptions,
  ],
  positionals: { min: 0, max: 1, names: 'a stream name, e.g. `topo tap hashtags`' },
  examples: [
    'topo tap hashtags', 'topo tap top-hashtags --limit 10 --json', 'topo tap --trace 4bf92f3577b34da6a3ce929d0e0e4736',
    'topo tap --dead-letters', 'topo tap --dead-letters counter --last 5 -f',
  ],
  async run(args, io) {
    const json = args.values.json === true;
    const limit = intOption(args.values, 'limit', 1, 'tap') ?? Infinity;
    const deadLetters = args.values['dead-letters'] === true;
    const raw = args.positionals[0];
    const trace = stringOption(args.values, 'trace');
    if (trace !== undefined) return tapTrace(args, io, trace, { json, limit, deadLetters, stream: raw });
    if (!deadLetters && raw === undefined) throw new UsageError('`topo tap` needs a stream name (or --dead-letters)', 'tap');
    const target = raw === undefined ? undefined : nameArg(raw, deadLetters ? 'computation' : 'stream', 'tap');
    if (!deadLetters && args.values.follow) throw new UsageError('--follow only applies to --dead-letters (a stream tap always follows)', 'tap');
    if (!deadLetters && args.values.last !== undefined) throw new UsageError('--last only applies to --dead-letters (a stream tap shows new records)', 'tap');
    const last = intOption(args.values, 'last', 0, 'tap') ?? 50;
    return withClient(args, async (c) => {
      let count = 0;
      if (deadLetters) {
        if (target !== undefined) await checkKnownComputation(c, target);
        for await (const d of c.deadLetters(target, { last, follow: args.values.follow === true, signal: io.signal })) {
          if (isMalformed(d)) {
            io.err(`undecodable dead letter #${d.seq} on ${d.subject}: ${d.malformed}`);
            continue;
          }
          io.out(json ? toJson(d) : renderDeadLetter(d));
          if (++count >= limit) break;
        }
        if (!json && count === 0 && !io.signal.aborted) io.err(`no dead letters${target ? ` for ${target}` : ''}`);
        return 0;
      }
      // Subscribed before the check, so nothing produced meanwhile is missed.
      const records = c.tap(target ?? '', { signal: io.signal });
      const first = records.next();
      first.catch(() => undefined); // awaited below; not unhandled meanwhile
      const unproduced = await unproducedStream(c, target ?? '');
      // On stderr even with --json: stdout carries only records.
      if (unproduced) io.err(`topo: ${unproduced}`);
      if (!json) io.err(`tapping ${target} (Ctrl-C to stop)`);
      for await (const item of prepend(first, records)) {
        if (isMalformed(item)) {
          io.err(`malformed message on ${item.subject}: ${item.malformed}`);
          continue;
        }
        io.out(json ? toJson(item) : renderTapRecord(item));
        if (++count >= limit) break;
      }
      return 0;
    });
  },
};

/** `topo tap --trace <id>`: the records of one trace, on every stream. */
async function tapTrace(args: Parameters<Verb['run']>[0], io: Io, trace: string, o: { json: boolean; limit: number; deadLetters: boolean; stream: string | undefined }): Promise<number> {
  if (o.deadLetters) throw new UsageError('--trace and --dead-letters do not go together', 'tap');
  if (o.stream !== undefined) throw new UsageError(`--trace follows a trace on every stream: leave out the stream name (${JSON.stringify(o.stream)})`, 'tap');
  for (const flag of ['follow', 'last'] as const) if (args.values[flag] !== undefined) throw new UsageError(`--${flag} only applies to --dead-letters`, 'tap');
  if (!isTraceId(trace)) throw new UsageError(badTraceId(trace), 'tap');
  return withClient(args, async (c) => {
    let count = 0;
    const records = c.tapTrace(trace, { signal: io.signal });
    if (!o.json) io.err(`following trace ${trace} on every stream (Ctrl-C to stop)`);
    for await (const item of records) {
      if (isMalformed(item)) {
        io.err(`malformed message on ${item.subject}: ${item.malformed}`);
        continue;
      }
      io.out(o.json ? toJson(item) : renderTapRecord(item));
      if (++count >= o.limit) break;
    }
    return 0;
  });
}

const logs: Verb = {
  name: 'logs',
  summary: "print a computation's log lines (all instances)",
  usage: ['topo logs <computation> [-f|--follow] [-n N] [--json] [--nats URL]'],
  details: 'Shows the last N stored lines as "time level computation[instance] message fields".',
  options: [
    { name: 'follow', short: 'f', type: 'boolean', description: 'keep printing new lines until Ctrl-C' },
    { name: 'lines', short: 'n', type: 'string', value: 'N', description: 'how many stored lines to show first (default 50)' },
    jsonOption,
    ...connectionOptions,
  ],
  positionals: { min: 1, max: 1, names: 'a computation name, e.g. `topo logs hashtags`' },
  examples: ['topo logs hashtags', 'topo logs counter -f', 'topo logs counter -n 200 --json'],
  async run(args, io) {
    const name = nameArg(args.positionals[0], 'computation', 'logs');
    const lines = intOption(args.values, 'lines', 0, 'logs') ?? 50;
    const json = args.values.json === true;
    return withClient(args, async (c) => {
      await checkKnownComputation(c, name);
      let count = 0;
      for await (const e of c.logs(name, { follow: args.values.follow === true, lines, signal: io.signal })) {
        count++;
        io.out(json ? toJson({ instance: e.index, ...e.line }) : renderLogEntry(e, name));
      }
      if (count === 0 && !json && !args.values.follow) io.err(`no log lines stored for ${name}`);
      return 0;
    });
  },
};

/** `rest` with its already requested first item in front (an async generator subscribes on its first next()). */
async function* prepend<T>(first: Promise<IteratorResult<T>>, rest: AsyncGenerator<T>): AsyncGenerator<T> {
  try {
    const r = await first;
    if (r.done) return;
    yield r.value;
    yield* rest;
  } finally {
    await rest.return(undefined);
  }
}

export const verbs: Verb[] = [up, down, deploy, kill, swap, rollback, promote, scale, fuse, split, history, status, tap, logs, ui, worker];
