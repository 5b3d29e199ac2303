/**
 * Profiles: named (url, token) pairs in the user's config dir, one file of mode 0600 because it
 * holds tokens. HANGAR_CONFIG_DIR moves it (tests, several setups side by side).
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { CliError, ExitCode } from './errors.ts';

const ProfileSchema = z.object({ url: z.string(), token: z.string().optional() });
export type Profile = z.infer<typeof ProfileSchema>;

const ConfigSchema = z.object({
  current: z.string().optional(),
  profiles: z.record(z.string(), ProfileSchema).default({}),
});
export type Config = z.infer<typeof ConfigSchema>;

export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HANGAR_CONFIG_DIR) return env.HANGAR_CONFIG_DIR;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'hangar');
}

const configFile = () => join(configDir(), 'config.json');

export function loadConfig(): Config {
  let text: string;
  try {
    text = readFileSync(configFile(), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { profiles: {} };
    throw error;
  }
  const parsed = ConfigSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new CliError(`${configFile()} is not a hangar config: ${parsed.error.message}`);
  return parsed.data;
}

/** Written to a temporary file and renamed, so a crash never leaves half a config. */
export function saveConfig(config: Config): void {
  mkdirSync(configDir(), { recursive: true, mode: 0o700 });
  const temporary = `${configFile()}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, configFile());
}

export function currentProfile(config: Config, name?: string): Profile | undefined {
  const chosen = name ?? config.current;
  if (chosen === undefined) return undefined;
  const profile = config.profiles[chosen];
  if (!profile) throw new CliError(`No profile named ${chosen} (hangar profile ls).`, ExitCode.notFound);
  return profile;
}
