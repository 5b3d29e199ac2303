/**
 * `hangar completion bash|zsh|fish`: a completion script made from the command tree itself, so it
 * never lists a command that does not exist.
 */
import { Argument, type Command } from 'commander';

function words(program: Command): { commands: string[]; options: string[] } {
  const commands = program.commands.flatMap((command) => [command.name(), ...command.aliases()]);
  const options = program.options.flatMap((option) =>
    [option.long, option.short].filter((o): o is string => Boolean(o)),
  );
  return { commands, options };
}

function script(shell: string, program: Command): string {
  const { commands, options } = words(program);
  const perCommand = program.commands.map((command) => ({
    name: command.name(),
    words: [
      ...command.commands.map((sub) => sub.name()),
      ...command.options.flatMap((option) => [option.long].filter((o): o is string => Boolean(o))),
    ],
  }));
  if (shell === 'bash')
    return `# hangar bash completion: source <(hangar completion bash)
_hangar() {
  local cur=\${COMP_WORDS[COMP_CWORD]} cmd=\${COMP_WORDS[1]}
  if [ "$COMP_CWORD" -eq 1 ]; then COMPREPLY=($(compgen -W "${commands.join(' ')} ${options.join(' ')}" -- "$cur")); return; fi
  case "$cmd" in
${perCommand.map((c) => `    ${c.name}) COMPREPLY=($(compgen -W "${[...c.words, ...options].join(' ')}" -f -- "$cur"));;`).join('\n')}
  esac
}
complete -o default -F _hangar hangar
`;
  if (shell === 'zsh')
    return `#compdef hangar
# hangar zsh completion: source <(hangar completion zsh)
_hangar() {
  if (( CURRENT == 2 )); then compadd -- ${commands.join(' ')} ${options.join(' ')}; return; fi
  case $words[2] in
${perCommand.map((c) => `    ${c.name}) compadd -- ${[...c.words, ...options].join(' ')}; _files;;`).join('\n')}
  esac
}
compdef _hangar hangar
`;
  return `# hangar fish completion: hangar completion fish | source
${program.commands.map((c) => `complete -c hangar -n __fish_use_subcommand -a ${c.name()} -d ${JSON.stringify(c.description())}`).join('\n')}
${perCommand
  .flatMap((c) =>
    c.words
      .filter((w) => w.startsWith('--'))
      .map((w) => `complete -c hangar -n '__fish_seen_subcommand_from ${c.name}' -l ${w.slice(2)}`),
  )
  .join('\n')}
`;
}

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh', 'fish']))
    .action((shell: string) => {
      process.stdout.write(script(shell, program));
    });
}
