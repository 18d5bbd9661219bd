/**
 * `topo completion bash`: a bash completion script generated from the verbs' own option lists, so
 * it offers what the parser accepts (and nothing it would refuse). Commands are completed first,
 * then the options of the command given (global options before it are skipped, with their values);
 * anything else falls back to file names (`complete -o default`), for deploy and swap files.
 */
import { UsageError, globalOptions, type VerbSpec } from './args.js';
import type { Verb } from './common.js';

const SHELLS = ['bash'];

/** The script for bash: `source <(topo completion bash)`. */
export function bashCompletion(verbs: readonly VerbSpec[]): string {
  const flags = (v: VerbSpec): string => [...v.options.map((o) => `--${o.name}`), '--help'].join(' ');
  const valued = globalOptions.filter((o) => o.type === 'string').map((o) => `--${o.name}`);
  return [
    '# bash completion for topo; load it with: source <(topo completion bash)',
    '_topo() {',
    '  local cur=${COMP_WORDS[COMP_CWORD]} verb="" i=1',
    '  # The command is the first word that is neither an option nor the value of one given before it.',
    '  while [ "$i" -lt "$COMP_CWORD" ]; do',
    '    case ${COMP_WORDS[i]} in',
    `      ${valued.join('|')}) i=$((i + 2)); continue ;;`,
    '      -*) ;;',
    '      *) verb=${COMP_WORDS[i]}; break ;;',
    '    esac',
    '    i=$((i + 1))',
    '  done',
    '  local words',
    '  case $verb in',
    `    "") words="${verbs.map((v) => v.name).join(' ')} --help --version ${globalOptions.map((o) => `--${o.name}`).join(' ')}" ;;`,
    ...verbs.map((v) => `    ${v.name}) words="${v.name === 'completion' ? `${SHELLS.join(' ')} ` : ''}${flags(v)}" ;;`),
    '    *) return 0 ;;',
    '  esac',
    '  if [ -z "$verb" ] || [ "$verb" = completion ] || [[ $cur == -* ]]; then',
    '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
    '  fi',
    '}',
    'complete -o default -F _topo topo',
    '',
  ].join('\n');
}

/** The `completion` verb; `commands` gives every verb, itself included (it is listed in the script too). */
export function completionVerb(commands: () => readonly VerbSpec[]): Verb {
  return {
    name: 'completion',
    summary: 'print a shell completion script (bash)',
    usage: ['topo completion bash'],
    details: 'Completes commands and each command\'s options. Load it in the current shell with\n`source <(topo completion bash)`, or for every shell: `topo completion bash > ~/.local/share/bash-completion/completions/topo`.',
    options: [],
    positionals: { min: 1, max: 1, names: `a shell (${SHELLS.join(', ')}), e.g. \`topo completion bash\`` },
    examples: ['topo completion bash', 'source <(topo completion bash)'],
    async run(args, io) {
      const shell = args.positionals[0] ?? '';
      if (!SHELLS.includes(shell)) throw new UsageError(`no completion for ${JSON.stringify(shell)}: topo completes ${SHELLS.join(', ')}`, 'completion');
      io.out(bashCompletion(commands()).trimEnd());
      return 0;
    },
  };
}
