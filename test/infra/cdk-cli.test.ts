/**
 * `npm run synth` (cdk synth --quiet) as a fresh machine would run it: its own process, no AWS
 * credentials, account or region, nothing but the repository and node_modules.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/paths.ts';

const scratch = mkdtempSync(join(tmpdir(), 'hangar-cdk-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('npm run synth', () => {
  it('synthesizes both stacks offline and exits 0', () => {
    // Prepare: only what a shell on a new machine has; no AWS_* settings at all.
    const outdir = join(scratch, 'cdk.out');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: join(scratch, 'home'),
      // No instance-metadata lookups for credentials, no version check against the registry.
      AWS_EC2_METADATA_DISABLED: 'true',
      CDK_DISABLE_VERSION_CHECK: 'true',
      CI: 'true',
      // The console is built by Vite (console/dist), not here: its stand-in.
      HANGAR_DEPLOY_CONSOLE_DIR: 'test/fixtures/infra/console',
    };

    // Act
    const result = spawnSync('npm', ['run', '--silent', 'synth', '--', '--no-notices', '-o', outdir], {
      cwd: REPO_ROOT,
      env,
      encoding: 'utf8',
      timeout: 280_000,
    });

    // Assess
    expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(existsSync(join(outdir, 'Hangar-Stateful.template.json'))).toBe(true);
    expect(existsSync(join(outdir, 'Hangar-App.template.json'))).toBe(true);
    // cdk-nag's reports: written, and the synth would have failed on any unsuppressed error.
    expect(readdirSync(outdir).filter((f) => f.startsWith('AwsSolutions-'))).toHaveLength(2);
    expect(result.stderr).not.toMatch(/\[Error at|AwsSolutions-[A-Z0-9]+:/);
  });
});
