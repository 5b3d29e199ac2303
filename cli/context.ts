/**
 * What every command needs, made from the global options: the API client (url and token from
 * flags, then HANGAR_URL/HANGAR_TOKEN, then the profile), the output and the progress mode.
 */
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { ApiClient, type TokenSource } from './client.ts';
import { currentProfile, loadConfig } from './config.ts';
import { issueToken, keystoneCredentials } from './keystone.ts';
import { Output } from './output.ts';
import { type ProgressMode, parseProgressMode } from './progress.ts';

export const DEFAULT_URL = 'http://127.0.0.1:9292';

export interface GlobalOptions {
  url?: string;
  token?: string;
  tokenStdin?: boolean;
  profile?: string;
  output: string;
  quiet?: boolean;
  progress: string;
  input: boolean;
}

export interface Context {
  readonly client: ApiClient;
  readonly out: Output;
  readonly progress: ProgressMode;
  /** False with --no-input: never wait for a person. */
  readonly interactive: boolean;
}

let stdinToken: string | undefined;
/** The token piped on stdin (read once: a second read would find stdin at its end). */
export function readTokenFromStdin(): string {
  stdinToken ??= readFileSync(0, 'utf8').trim();
  return stdinToken;
}

export function globals(command: Command): GlobalOptions {
  return command.optsWithGlobals() as GlobalOptions;
}

export function outputOf(command: Command): Output {
  const options = globals(command);
  return new Output(Output.parseFormat(options.output), Boolean(options.quiet));
}

export function contextOf(command: Command): Context {
  const options = globals(command);
  const out = outputOf(command);
  const profile = currentProfile(loadConfig(), options.profile ?? process.env.HANGAR_PROFILE);
  const url = options.url ?? process.env.HANGAR_URL ?? profile?.url ?? DEFAULT_URL;
  // A token given for this run (flag, stdin, HANGAR_TOKEN, then OpenStack's OS_TOKEN or OS_*
  // password credentials, as a sourced openrc sets them) before the profile's stored one.
  const given =
    options.token ??
    (options.tokenStdin ? readTokenFromStdin() : undefined) ??
    process.env.HANGAR_TOKEN ??
    process.env.OS_TOKEN;
  const keystone = given === undefined ? keystoneCredentials() : undefined;
  const token: TokenSource = given ?? (keystone ? () => issueToken(keystone) : profile?.token);
  const progress = options.quiet ? 'none' : parseProgressMode(options.progress);
  return {
    client: new ApiClient(url, token),
    out,
    progress,
    interactive: options.input && Boolean(process.stdin.isTTY),
  };
}

/** Collects a repeatable `k=v` option into an object. */
export function collectPairs(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf('=');
  if (at < 1) throw new InvalidArgumentError(`expected KEY=VALUE, got ${value}`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}
