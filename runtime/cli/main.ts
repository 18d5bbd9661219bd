/**
 * `topo` command line. Exit codes: 0 ok, 1 the command failed (message on
 * stderr, no stack unless TOPO_DEBUG=1), 2 bad usage.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../client/index.js';
import { UsageError, mainHelp, parseVerbArgs, verbHelp } from './args.js';
import { verbs, type Io } from './verbs.js';

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export async function main(argv: string[], io: Io): Promise<number> {
  const [first, ...rest] = argv;
  try {
    if (first === undefined) {
      io.err(mainHelp(verbs).trimEnd());
      return 2;
    }
    if (first === '--help' || first === '-h' || first === 'help') {
      const topic = first === 'help' ? rest[0] : undefined;
      const verb = topic ? verbs.find((v) => v.name === topic) : undefined;
      if (topic && !verb) throw new UsageError(`unknown command "${topic}"`);
      io.out((verb ? verbHelp(verb) : mainHelp(verbs)).trimEnd());
      return 0;
    }
    if (first === '--version' || first === '-V') {
      io.out(version());
      return 0;
    }
    const verb = verbs.find((v) => v.name === first);
    if (!verb) {
      if (first.startsWith('-')) throw new UsageError(`unknown option ${first}; options go after the command, e.g. \`topo status --json\``);
      throw new UsageError(`unknown command "${first}"; the commands are: ${verbs.map((v) => v.name).join(', ')}`);
    }
    const args = parseVerbArgs(verb, rest);
    if (args.values.help) {
      io.out(verbHelp(verb).trimEnd());
      return 0;
    }
    return await verb.run(args, io);
  } catch (err) {
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
