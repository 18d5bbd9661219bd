/**
 * Argument parsing for the CLI: node:util parseArgs plus help text generated
 * from the same option list, so a verb's --help never drifts from what it accepts.
 */
import { parseArgs } from 'node:util';
import { NAME_PATTERN } from '../../protocol/subjects.js';

/** Bad command line: the CLI prints it and exits with code 2. */
export class UsageError extends Error {
  constructor(message: string, readonly verb?: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface OptionSpec {
  name: string;
  short?: string;
  type: 'string' | 'boolean';
  /** Placeholder in help, e.g. "N" or "URL". */
  value?: string;
  description: string;
}

export interface VerbSpec {
  name: string;
  summary: string;
  /** Usage lines after "Usage: ". */
  usage: string[];
  /** Extra paragraphs shown in --help. */
  details?: string;
  options: OptionSpec[];
  /** Allowed number of positional arguments. */
  positionals: { min: number; max: number; names: string };
  examples: string[];
}

export const natsOption: OptionSpec = {
  name: 'nats',
  type: 'string',
  value: 'URL',
  description: 'NATS server of the topology (default: $TOPO_NATS_URL, else .topo/run.json here or in a parent folder)',
};
export const credsOption: OptionSpec = {
  name: 'creds',
  type: 'string',
  value: 'FILE',
  description: 'NATS credentials (.creds) to connect with (default: $TOPO_NATS_CREDS, else the admin creds in .topo/run.json)',
};
export const tlsOptions: OptionSpec[] = [
  { name: 'tls-ca', type: 'string', value: 'FILE', description: 'CA certificate (PEM) of a TLS server (default: $TOPO_NATS_TLS_CA)' },
  { name: 'tls-cert', type: 'string', value: 'FILE', description: 'client certificate (PEM) for mutual TLS (default: $TOPO_NATS_TLS_CERT)' },
  { name: 'tls-key', type: 'string', value: 'FILE', description: 'key of --tls-cert (default: $TOPO_NATS_TLS_KEY)' },
];
/** What every verb that connects accepts: server, credentials, TLS. */
export const connectionOptions: OptionSpec[] = [natsOption, credsOption, ...tlsOptions];
export const jsonOption: OptionSpec = { name: 'json', type: 'boolean', description: 'machine-readable output: JSON, one object per line' };
const helpOption: OptionSpec = { name: 'help', short: 'h', type: 'boolean', description: 'show this help' };

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** "--canary needs a value: PCT, run the new version on ..." */
function needsValue(spec: VerbSpec, o: OptionSpec): UsageError {
  return new UsageError(`--${o.name} needs a value${o.value ? ` (${o.value})` : ''}: ${o.description}`, spec.name);
}

/**
 * node's parseArgs refuses a value that starts with "-" (`--canary -5`, `-n -1`)
 * as "ambiguous": it cannot tell a value from a forgotten one. An option that
 * follows is taken as a forgotten value (a clear "needs a value" error); any
 * other dash word is the value, written as `--name=value` so that the verb's
 * own check says what is wrong with it ("--canary must be a percentage ...").
 */
function joinDashValues(spec: VerbSpec, argv: string[]): string[] {
  const all = [...spec.options, helpOption];
  const byToken = new Map<string, OptionSpec>();
  for (const o of all) {
    byToken.set(`--${o.name}`, o);
    if (o.short) byToken.set(`-${o.short}`, o);
  }
  const isOption = (t: string): boolean => t.startsWith('--') || byToken.has(t) || (t.length > 1 && all.some((o) => o.short && t.startsWith(`-${o.short}`)) && !/^-\d/.test(t));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i] ?? '';
    if (t === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const o = byToken.get(t);
    if (o?.type !== 'string') {
      out.push(t);
      continue;
    }
    const next = argv[i + 1];
    if (next === undefined || isOption(next)) throw needsValue(spec, o);
    if (next.startsWith('-')) {
      out.push(`--${o.name}=${next}`);
      i++;
      continue;
    }
    out.push(t);
  }
  return out;
}

export function parseVerbArgs(spec: VerbSpec, argv: string[]): ParsedArgs {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const o of [...spec.options, helpOption]) options[o.name] = o.short ? { type: o.type, short: o.short } : { type: o.type };
  let parsed;
  try {
    parsed = parseArgs({ args: joinDashValues(spec, argv), options, allowPositionals: true, strict: true });
  } catch (err) {
    const e = err as { code?: string; message: string };
    const quoted = /'([^']+)'/.exec(e.message)?.[1];
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${quoted ?? ''} for \`topo ${spec.name}\``.replace('  ', ' '), spec.name);
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const flag = quoted?.split(' ')[0] ?? '';
      const o = spec.options.find((x) => flag === `--${x.name}` || (x.short !== undefined && flag === `-${x.short}`));
      if (o?.type === 'boolean') throw new UsageError(`--${o.name} takes no value: ${o.description} (write \`--${o.name}\` alone)`, spec.name);
      if (o) throw needsValue(spec, o);
      throw new UsageError(`${e.message.split('.')[0]} (topo ${spec.name})`, spec.name);
    }
    throw new UsageError(e.message, spec.name);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return { values, positionals: parsed.positionals };
  const n = parsed.positionals.length;
  if (n < spec.positionals.min) throw new UsageError(`\`topo ${spec.name}\` needs ${spec.positionals.names}`, spec.name);
  if (n > spec.positionals.max) {
    const extra = parsed.positionals.slice(spec.positionals.max).join(' ');
    throw new UsageError(`unexpected argument${n - spec.positionals.max > 1 ? 's' : ''} for \`topo ${spec.name}\`: ${extra}`, spec.name);
  }
  return { values, positionals: parsed.positionals };
}

/** A --flag N value as an integer >= min; UsageError otherwise. */
export function intOption(values: ParsedArgs['values'], name: string, min: number, verb: string): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`, verb);
  return n;
}

/**
 * A positional that names a computation or a stream: a name that cannot be one
 * (NAME_PATTERN: a subject-safe token) is a usage error, before anything is asked.
 */
export function nameArg(value: string | undefined, what: 'computation' | 'stream', verb: string): string {
  const name = value ?? '';
  if (!NAME_PATTERN.test(name)) {
    throw new UsageError(
      `${JSON.stringify(name)} cannot be a ${what} name: names start with a letter and have at most 64 letters, digits, "_" or "-"`,
      verb,
    );
  }
  return name;
}

export function stringOption(values: ParsedArgs['values'], name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function verbHelp(spec: VerbSpec): string {
  const lines = [`topo ${spec.name} - ${spec.summary}`, '', ...spec.usage.map((u, i) => `${i === 0 ? 'Usage: ' : '       '}${u}`)];
  if (spec.details) lines.push('', spec.details);
  const opts = [...spec.options, helpOption];
  const labels = opts.map((o) => `${o.short ? `-${o.short}, ` : '    '}--${o.name}${o.value ? ` ${o.value}` : ''}`);
  const width = Math.max(...labels.map((l) => l.length));
  lines.push('', 'Options:');
  opts.forEach((o, i) => lines.push(`  ${(labels[i] ?? '').padEnd(width)}  ${o.description}`));
  lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  return lines.join('\n') + '\n';
}

export function mainHelp(verbs: VerbSpec[]): string {
  const width = Math.max(...verbs.map((v) => v.name.length));
  return [
    'topo - run a streaming topology and change it one computation at a time',
    '',
    'Usage: topo [--json] [--nats URL] [--creds FILE] <command> [options]',
    '',
    'Commands:',
    ...verbs.map((v) => `  ${v.name.padEnd(width)}  ${v.summary}`),
    '',
    'Run `topo <command> --help` for the options and examples of a command.',
    '',
    'Quick start:',
    '  topo up --demo          start nats-server, a controller and 2 workers, deploy the tweets demo',
    '  topo status             see computations, the stream graph and workers',
    '  topo swap counter examples/tweets/counter_v2.ts',
    '                          replace the demo\'s counter live (`topo rollback counter` undoes it)',
    '  topo down               stop everything `topo up` started',
    '',
    'Shell completion (bash): source <(topo completion bash)',
    '',
    'Environment: TOPO_NATS_URL (NATS server to use), TOPO_NATS_CREDS (its credentials),',
    '  TOPO_NATS_TLS_CA / TOPO_NATS_TLS_CERT / TOPO_NATS_TLS_KEY (TLS files), TOPO_DEBUG=1 (print stack traces).',
    '',
  ].join('\n');
}

/** Options that may come before the command (`topo --json status`, `topo --nats URL status`): they are moved after it. */
export const globalOptions: OptionSpec[] = [...connectionOptions, jsonOption];

/**
 * Splits `topo [global options] <command> [...]` into the command and its arguments, the global
 * options that came before it put after it, so the command's own parser (and its errors: a
 * command that does not take --json says so) handles them. Returns command undefined when
 * nothing but options was given.
 */
export function hoistGlobalOptions(argv: string[]): { command: string | undefined; rest: string[] } {
  const hoisted: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const token = argv[i] ?? '';
    if (!token.startsWith('-') || token === '-') break;
    const [flag, inline] = token.split(/=(.*)/s, 2) as [string, string | undefined];
    const o = globalOptions.find((g) => flag === `--${g.name}`);
    if (!o) {
      throw new UsageError(`unknown option ${flag} before the command; the options that may come first are ${globalOptions.map((g) => `--${g.name}`).join(', ')} (others go after it, e.g. \`topo status --json\`)`);
    }
    if (o.type === 'boolean') {
      if (inline !== undefined) throw new UsageError(`--${o.name} takes no value: ${o.description} (write \`--${o.name}\` alone)`);
      hoisted.push(token);
      continue;
    }
    if (inline !== undefined) {
      hoisted.push(`--${o.name}=${inline}`);
      continue;
    }
    const value = argv[i + 1];
    if (value === undefined || value.startsWith('--')) throw new UsageError(`--${o.name} needs a value${o.value ? ` (${o.value})` : ''}: ${o.description}`);
    hoisted.push(`--${o.name}=${value}`);
    i++;
  }
  const command = argv[i];
  if (command === undefined) return { command: undefined, rest: hoisted };
  return { command, rest: [...hoisted, ...argv.slice(i + 1)] };
}

/**
 * The name in `names` closest to a mistyped `word` (edit distance, a swap of two neighbouring
 * letters counting as one edit), if it is close enough to be what was meant: at most 1 edit for
 * short words, 2 from 5 letters; a word that begins a single name suggests it too (`stat`).
 * Hand-written: a dozen lines against a dependency for one message.
 */
export function closestName(word: string, names: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  const prefixed = names.filter((n) => w.length >= 2 && n.startsWith(w));
  if (prefixed.length === 1) return prefixed[0];
  let best: { name: string; d: number } | undefined;
  for (const name of names) {
    const d = editDistance(w, name);
    if (!best || d < best.d) best = { name, d };
  }
  const allowed = w.length >= 5 ? 2 : 1;
  return best && best.d <= allowed ? best.name : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
