/**
 * Runs the real `hangar` binary (cli/bin/hangar.js, as `npx hangar` would) as a child process,
 * with its own config dir, so that profile files of one test never reach another.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect } from 'vitest';
import type { Persona, TestBackend } from './backend.ts';

export const HANGAR_BIN = resolve(import.meta.dirname, '../../cli/bin/hangar.js');

export interface HangarResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface HangarOptions {
  env?: Record<string, string | undefined>;
  /** Written to stdin, then closed (stdin is closed at once without it). */
  input?: string;
  timeoutMs?: number;
}

export function freshConfigDir(): string {
  return mkdtempSync(join(tmpdir(), 'hangar-cli-config-'));
}

/** The environment a run starts from: no colour, nothing of the developer's own hangar setup. */
export function baseEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C.UTF-8',
    NO_COLOR: '1',
  };
  // undefined takes a variable away (NO_COLOR, for a test of colour).
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

export function startHangar(args: readonly string[], options: HangarOptions = {}): ChildProcess {
  const child = spawn(process.execPath, [HANGAR_BIN, ...args], {
    env: baseEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin?.end(options.input ?? '');
  return child;
}

export function hangar(args: readonly string[], options: HangarOptions = {}): Promise<HangarResult> {
  return new Promise((resolvePromise, reject) => {
    const child = startHangar(args, options);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** `hangar ARGS` as `persona` of backend `t`, with the url and token from the environment. */
export function hangarAs(
  t: TestBackend,
  persona: Persona,
  args: string[],
  options: HangarOptions = {},
): Promise<HangarResult> {
  return hangar(args, {
    ...options,
    env: {
      HANGAR_URL: t.url,
      HANGAR_TOKEN: t.tokens[persona],
      HANGAR_CONFIG_DIR: freshConfigDir(),
      ...options.env,
    },
  });
}

/** `hangar ARGS -o json` as `persona`, which must succeed; its output parsed. */
export async function hangarJson<T = Record<string, unknown>>(
  t: TestBackend,
  persona: Persona,
  args: string[],
): Promise<T> {
  const result = await hangarAs(t, persona, [...args, '-o', 'json']);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as T;
}
