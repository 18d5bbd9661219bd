/**
 * `topo` command line. Exit codes: 0 ok, 1 the command failed (message on
 * stderr, no stack unless TOPO_DEBUG=1), 2 bad usage.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../client/index.js';
import { UsageError, closestName, hoistGlobalOptions, mainHelp, parseVerbArgs, verbHelp } from './args.js';
import { completionVerb } from './completion.js';
import { verbs as runtimeVerbs, type Io, type Verb } from './verbs.js';

/** Every command: the runtime's verbs, then `completion` (which lists them all). */
const verbs: Verb[] = [...runtimeVerbs];
verbs.push(completionVerb(() => verbs));

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export async function main(argv: string[], io: Io): Promise<number> {
  try {
    const [head] = argv;
    if (head === undefined) {
      io.err(mainHelp(verbs).trimEnd());
      return 2;
    }
    if (['--help', '-h', '--version', '-V'].includes(head)) return await command(head, argv.slice(1), io);
    // Global options (--json, --nats URL, --creds FILE, --tls-*) may come before the command.
    const { command: first, rest } = hoistGlobalOptions(argv);
    if (first === undefined) throw new UsageError(`${argv.join(' ')} needs a command after it, e.g. \`topo ${argv.join(' ')} status\``);
    return await command(first, rest, io);
  } catch (err) {
    return failed(err, io);
  }
}

/** One command (or --help / --version) with its arguments. */
async function command(first: string, rest: string[], io: Io): Promise<number> {
  if (first === '--help' || first === '-h' || first === 'help') {
    const topic = first === 'help' ? rest[0] : undefined;
    const verb = topic ? verbs.find((v) => v.name === topic) : undefined;
    if (topic && !verb) throw unknownCommand(topic);
    io.out((verb ? verbHelp(verb) : mainHelp(verbs)).trimEnd());
    return 0;
  }
  if (first === '--version' || first === '-V') {
    io.out(version());
    return 0;
  }
  const verb = verbs.find((v) => v.name === first);
  if (!verb) throw unknownCommand(first);
  const args = parseVerbArgs(verb, rest);
  if (args.values.help) {
    io.out(verbHelp(verb).trimEnd());
    return 0;
  }
  return await verb.run(args, io);
}

/** "unknown command "stauts"; did you mean `topo status`?" (the list of commands when nothing is close). */
function unknownCommand(word: string): UsageError {
  const near = closestName(word, verbs.map((v) => v.name));
  return new UsageError(near
    ? `unknown command "${word}"; did you mean \`topo ${near}\`?`
    : `unknown command "${word}"; the commands are: ${verbs.map((v) => v.name).join(', ')}`);
}

/** Prints a failure: usage errors exit 2, the rest 1 (with stacks under TOPO_DEBUG=1). */
function failed(err: unknown, io: Io): number {
  if (err instanceof UsageError) {
    io.err(`topo: ${err.message}`);
    io.err(err.verb ? `run \`topo ${err.verb} --help\` for usage` : 'run `topo --help` for usage');
    return 2;
  }
  const e = err as Error;
  io.err(`topo: ${e?.message ?? String(err)}`);
  if (process.env.TOPO_DEBUG === '1') {
    for (let c: unknown = err; c instanceof Error; c = c.cause) io.err(c === err ? (c.stack ?? c.message) : `caused by: ${c.stack ?? c.message}`);
  }
  return 1;
}

function runCli(): void {
  const ac = new AbortController();
  // First Ctrl-C stops streaming verbs cleanly; a second one exits at once.
  process.on('SIGINT', () => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort();
  });
  process.on('SIGTERM', () => ac.abort());
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    // `topo tap x | head` closes the pipe: that is a normal way to stop.
    if (err.code === 'EPIPE') process.exit(0);
  });
  const io: Io = {
    out: (line) => void process.stdout.write(line + '\n'),
    err: (line) => void process.stderr.write(line + '\n'),
    signal: ac.signal,
  };
  main(process.argv.slice(2), io).then(
    (code) => {
      // Let buffered output reach pipes before leaving; open handles
      // (a detached child, a user module's timer) must not keep us alive.
      process.exitCode = code;
      process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
    },
    (err: unknown) => {
      process.stderr.write(`topo: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}

runCli();
