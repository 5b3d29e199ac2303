/** `hangar login` and `hangar profile ls|use`: where the url and token come from between runs. */
import type { Command } from 'commander';
import { ApiClient } from '../client.ts';
import { loadConfig, saveConfig } from '../config.ts';
import { globals, outputOf, readTokenFromStdin } from '../context.ts';
import { CliError, ExitCode, usageError } from '../errors.ts';

interface ProfileRow {
  current: boolean;
  name: string;
  url: string;
}

export function registerAuth(program: Command): void {
  program
    .command('login')
    .description('check a token against URL and store both as a profile (made current)')
    .argument('<url>', 'the Hangar endpoint, e.g. http://127.0.0.1:9292')
    .option('--name <profile>', 'the profile name (default: the host and port)')
    .action(async (url: string, options: { name?: string }, command: Command) => {
      const global = globals(command);
      const token = global.token ?? (global.tokenStdin ? readTokenFromStdin() : process.env.HANGAR_TOKEN);
      if (!token) throw usageError('login needs a token: --token-stdin (or --token, HANGAR_TOKEN)');
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw usageError(`not a URL: ${url}`);
      }
      // A token the service refuses is not stored.
      await new ApiClient(url, token).listImages(new URLSearchParams({ limit: '1' }));
      const name = options.name ?? parsed.host;
      const config = loadConfig();
      config.profiles[name] = { url: parsed.toString().replace(/\/$/, ''), token };
      config.current = name;
      saveConfig(config);
      outputOf(command).notice(`logged in to ${url} as profile ${name}`);
    });

  const profile = program.command('profile').description('stored endpoints and tokens');
  profile
    .command('ls')
    .description('list profiles (* = current)')
    .action((_options: object, command: Command) => {
      const config = loadConfig();
      const rows: ProfileRow[] = Object.entries(config.profiles).map(([name, p]) => ({
        current: name === config.current,
        name,
        url: p.url,
      }));
      outputOf(command).list(rows, {
        columns: [
          { header: 'CURRENT', value: (row) => (row.current ? '*' : '') },
          { header: 'NAME', value: (row) => row.name },
          { header: 'URL', value: (row) => row.url },
        ],
        name: (row) => row.name,
      });
    });
  profile
    .command('use')
    .description('make a profile current')
    .argument('<name>', 'profile name')
    .action((name: string, _options: object, command: Command) => {
      const config = loadConfig();
      if (!config.profiles[name]) throw new CliError(`No profile named ${name}.`, ExitCode.notFound);
      config.current = name;
      saveConfig(config);
      outputOf(command).notice(`using profile ${name}`);
    });
}
