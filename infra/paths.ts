/** Paths the CDK app reads, resolved from this file so synth works from any working directory. */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function repoPath(relative: string): string {
  return resolve(REPO_ROOT, relative);
}

export const STATE_MACHINES_DIR = repoPath('state-machines');
