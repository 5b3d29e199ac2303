/**
 * `hangar` against Hangar in keystone mode and the real Keystone (test/keystone/start-keystone.sh):
 * a token from `openstack token issue` works as HANGAR_TOKEN, and OS_AUTH_URL/OS_USERNAME/
 * OS_PASSWORD/OS_PROJECT_NAME (as an openrc sets them) are exchanged for a token by the CLI itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setServiceEnvironment } from '#platform/config';
import { type Backend, startBackend } from '../../local/backend.ts';
import { runCli } from '../helpers/cli.ts';
import { freshConfigDir, hangar } from '../helpers/hangar.ts';
import { ensureKeystone, type KeystoneInfo, openstackEnv, serviceKeystoneEnv } from '../helpers/keystone.ts';

describe('hangar with Keystone', () => {
  let keystone: KeystoneInfo;
  let backend: Backend;
  let dir: string;

  beforeAll(async () => {
    keystone = await ensureKeystone();
    setServiceEnvironment(serviceKeystoneEnv(keystone));
    backend = await startBackend({ port: 0, storage: 'memory', authMode: 'keystone', logLevel: 'warn' });
    dir = mkdtempSync(join(tmpdir(), 'hangar-cli-keystone-'));
  }, 300_000);
  afterAll(async () => {
    await backend?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** `hangar ARGS` with only the url and what `env` adds: no token of any other kind. */
  const run = (args: string[], env: Record<string, string | undefined>) =>
    hangar(args, { env: { HANGAR_URL: backend.url, HANGAR_CONFIG_DIR: freshConfigDir(), ...env } });

  const passwordEnv = (user: 'alice' | 'bob', project: 'projA' | 'projB') => ({
    OS_AUTH_URL: keystone.url,
    OS_USERNAME: user,
    OS_PASSWORD: keystone.password,
    OS_PROJECT_NAME: project,
  });

  it('takes a token from `openstack token issue` as HANGAR_TOKEN', async () => {
    const issued = await runCli('openstack', ['token', 'issue', '-f', 'value', '-c', 'id'], {
      env: openstackEnv(keystone, 'alice', 'projA'),
    });
    expect(issued.code, issued.stderr).toBe(0);
    const token = issued.stdout.trim();
    expect(token.length).toBeGreaterThan(20);
    const path = join(dir, 'tok.raw');
    writeFileSync(path, randomBytes(5000));
    const pushed = await run(['push', path, 'kstok:1', '-o', 'json'], { HANGAR_TOKEN: token });
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(JSON.parse(pushed.stdout)).toMatchObject({
      reference: 'kstok:1',
      namespace: keystone.projects.projA,
    });
    expect((await run(['images', '-o', 'name'], { HANGAR_TOKEN: 'not-a-keystone-token' })).code).toBe(1);
  });

  it('logs in with OS_* password credentials (domains default to Default), scoped to the project', async () => {
    const path = join(dir, 'pw.raw');
    writeFileSync(path, randomBytes(6000));
    const pushed = await run(['push', path, 'kspw:1', '-o', 'json'], passwordEnv('alice', 'projA'));
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(JSON.parse(pushed.stdout)).toMatchObject({ namespace: keystone.projects.projA });
    const id = (JSON.parse(pushed.stdout) as { image_id: string }).image_id;

    // OS_AUTH_URL without /v3 (as some openrc files have it) and explicit domain names work too.
    const shown = await run(['inspect', 'kspw:1', '-o', 'name'], {
      ...passwordEnv('alice', 'projA'),
      OS_AUTH_URL: keystone.url.replace(/\/v3$/, ''),
      OS_USER_DOMAIN_NAME: 'Default',
      OS_PROJECT_DOMAIN_NAME: 'Default',
    });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout.trim()).toBe(id);

    // bob's projB token does not see projA's reference.
    expect((await run(['inspect', 'kspw:1'], passwordEnv('bob', 'projB'))).code).toBe(3);

    const refused = await run(['images'], { ...passwordEnv('alice', 'projA'), OS_PASSWORD: 'wrong' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/Keystone refused the OS_\* credentials of alice: .*401/);
    const noProject = await run(['images'], { ...passwordEnv('alice', 'projA'), OS_PROJECT_NAME: undefined });
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toMatch(/OS_PROJECT_NAME/);

    // A token given for the run wins over OS_* credentials.
    expect(
      (await run(['images'], { ...passwordEnv('alice', 'projA'), HANGAR_TOKEN: 'not-a-keystone-token' }))
        .code,
    ).toBe(1);
  });
});
