/**
 * `hangar`: the command tree and the exit codes. Commands live in commands/, one module per
 * family; they print through output.ts and show transfers through progress.ts.
 */
import { Command, CommanderError, Option } from 'commander';
import { registerAuth } from './commands/auth.ts';
import { registerBuilds } from './commands/builds.ts';
import { registerCompletion } from './commands/completion.ts';
import { registerHosts } from './commands/hosts.ts';
import { registerImages } from './commands/images.ts';
import { registerImport } from './commands/import.ts';
import { registerInstances } from './commands/instances.ts';
import { registerLifecycle } from './commands/lifecycle.ts';
import { registerPublishing } from './commands/publishing.ts';
import { registerReferences } from './commands/references.ts';
import { registerSharing } from './commands/sharing.ts';
import { registerTransfer } from './commands/transfer.ts';
import { CliError, ExitCode } from './errors.ts';
import { FORMATS } from './output.ts';
import { PROGRESS_MODES } from './progress.ts';

export function buildProgram(): Command {
  const program = new Command('hangar')
    .description('Hangar images, name:tag references, sharing and instances from a terminal')
    .version('0.1.0')
    // Before any subcommand exists, so that every one inherits it: errors reach main() as values.
    .exitOverride()
    .showHelpAfterError('(hangar help COMMAND for its options)')
    .option(
      '--url <url>',
      'the Hangar endpoint (HANGAR_URL; default: the profile, else http://127.0.0.1:9292)',
    )
    .option('--token <token>', 'the auth token (HANGAR_TOKEN; default: the profile)')
    .option('--token-stdin', 'read the token from standard input')
    .option('--profile <name>', 'use this stored profile (HANGAR_PROFILE)')
    .addOption(
      new Option('-o, --output <format>', 'how to print resources').choices(FORMATS).default('table'),
    )
    .option('-q, --quiet', 'only the essential output: names or ids, no notices, no progress')
    .addOption(
      new Option('--progress <mode>', 'transfer progress on stderr').choices(PROGRESS_MODES).default('auto'),
    )
    .option('--no-input', 'never prompt');
  registerImages(program);
  registerTransfer(program);
  registerReferences(program);
  registerPublishing(program);
  registerImport(program);
  registerSharing(program);
  registerInstances(program);
  registerLifecycle(program);
  registerBuilds(program);
  registerHosts(program);
  registerAuth(program);
  registerCompletion(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<ExitCode> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has already printed its message (or the help, or the version).
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return ExitCode.ok;
      return ExitCode.usage;
    }
    if (error instanceof CliError) {
      process.stderr.write(`hangar: ${error.message}\n`);
      return error.exitCode;
    }
    process.stderr.write(
      `hangar: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    return ExitCode.error;
  }
}

process.exitCode = await main(process.argv.slice(2));
