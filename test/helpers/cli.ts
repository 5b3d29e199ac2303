/**
 * Runs a real OpenStack CLI (Debian's glance / openstack) as a child process. Each run gets its
 * own HOME, because glanceclient caches the server's schemas under ~/.glanceclient.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function freshHome(): string {
  return mkdtempSync(join(tmpdir(), 'hangar-cli-home-'));
}

export function runCli(
  command: string,
  args: readonly string[],
  options: { home?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    // stdin closed, not a pipe: glanceclient uploads whatever stdin holds when it isn't a terminal.
    execFile(
      'sh',
      ['-c', 'exec "$0" "$@" <&-', command, ...args],
      {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: options.home ?? freshHome(),
          LANG: 'C.UTF-8',
          ...options.env,
        },
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        // A missing binary is a broken test machine, not a failed assertion: say so loudly.
        if (
          error &&
          ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as { code?: unknown }).code === 127)
        )
          reject(new Error(`${command} is not installed (CI installs it in .ci/run)`));
        else
          resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) || 1 : 0, stdout, stderr });
      },
    );
  });
}

/** Parses the `| Property | Value |` table glanceclient prints for one image. */
export function parsePropertyTable(output: string): Record<string, string> {
  const result: Record<string, string> = {};
  let last = '';
  for (const line of output.split('\n')) {
    const match = /^\|\s*(\S*)\s*\|\s(.*?)\s*\|$/.exec(line);
    if (!match) continue;
    const [, key = '', value = ''] = match;
    if (key === 'Property' || key === 'Field') continue;
    // Long values wrap onto continuation rows with an empty key.
    if (key === '' && last) result[last] = `${result[last]}${value}`;
    else if (key) {
      result[key] = value;
      last = key;
    }
  }
  return result;
}

/** Parses the `| ID | Name |` table of image-list into rows of cells. */
export function parseListTable(output: string): string[][] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .slice(1)
    .map((line) =>
      line
        .slice(1, -1)
        .split('|')
        .map((cell) => cell.trim()),
    );
}
