/**
 * Hangar in `keystone` mode against a real Keystone (Debian's keystone package, started by
 * test/keystone/start-keystone.sh), registered in its catalog as the image service the way Glance
 * would be, and driven by the real `openstack` CLI: the image sharing scenario from both sides.
 * Also the Keystone adapter itself (mapping, 401, cache) and the Lambda authorizer built on it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIGatewayProxyEventV2, APIGatewayRequestAuthorizerEventV2, Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  httpTransport,
  KeystoneAuthenticator,
  type KeystoneTransport,
  keystoneSettings,
} from '#adapters/auth/keystone';
import { resetServiceConfig, setServiceEnvironment } from '#platform/config';
import { handler as keystoneAuthorizer } from '../../functions/auth/keystone-authorizer.ts';
import { type Backend, startBackend } from '../../local/backend.ts';
import { freshHome, runCli } from '../helpers/cli.ts';
import {
  ensureKeystone,
  type KeystoneInfo,
  keystoneToken,
  openstackEnv,
  registerImageEndpoint,
  serviceKeystoneEnv,
} from '../helpers/keystone.ts';

let keystone: KeystoneInfo;
let backend: Backend;
let home: string;
let work: string;
let unregisterImageEndpoint: (() => Promise<void>) | undefined;

/** `openstack <args> -f json` as a test account; the parsed output. */
async function openstack(
  user: 'alice' | 'bob',
  ...args: string[]
): Promise<{ code: number; json: unknown; stderr: string }> {
  const project = user === 'alice' ? 'projA' : 'projB';
  const result = await runCli('openstack', args, {
    home,
    env: openstackEnv(keystone, user, project),
    timeoutMs: 120_000,
  });
  let json: unknown;
  try {
    json = result.stdout.trim() ? JSON.parse(result.stdout) : undefined;
  } catch {
    json = result.stdout;
  }
  return { code: result.code, json, stderr: result.stderr };
}

beforeAll(async () => {
  keystone = await ensureKeystone();
  setServiceEnvironment(serviceKeystoneEnv(keystone));
  backend = await startBackend({ port: 0, storage: 'memory', authMode: 'keystone', logLevel: 'warn' });
  unregisterImageEndpoint = await registerImageEndpoint(keystone, backend.url);
  home = freshHome();
  work = mkdtempSync(join(tmpdir(), 'hangar-openstack-cli-'));
}, 300_000);

afterAll(async () => {
  await unregisterImageEndpoint?.();
  await backend?.stop();
  if (home) rmSync(home, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the Keystone authenticator', () => {
  function counting(): { transport: KeystoneTransport; calls: () => number } {
    const inner = httpTransport(10_000);
    let calls = 0;
    return {
      transport: (request) => {
        calls++;
        return inner(request);
      },
      calls: () => calls,
    };
  }

  it('maps a token to its project, user and roles, and caches it until it expires', async () => {
    const { transport, calls } = counting();
    const auth = new KeystoneAuthenticator(keystoneSettings(), { transport });
    const token = await keystoneToken(keystone, 'alice', 'projA');
    const principal = await auth.authenticate(token);
    expect(principal).toMatchObject({
      project: keystone.projects.projA,
      user: keystone.users.alice,
      isAdmin: false,
    });
    expect(principal?.roles).toContain('member');
    // One service login and one validation; then the cache answers.
    expect(calls()).toBe(2);
    expect(await auth.authenticate(token)).toEqual(principal);
    expect(await Promise.all([auth.authenticate(token), auth.authenticate(token)])).toEqual([
      principal,
      principal,
    ]);
    expect(calls()).toBe(2);

    const admin = await auth.authenticate(await keystoneToken(keystone, 'admin', 'admin'));
    expect(admin).toMatchObject({ project: keystone.projects.admin, isAdmin: true });
    // The service token is reused: one more call for the new token only.
    expect(calls()).toBe(3);
  });

  it('refuses unknown tokens without caching them', async () => {
    const { transport, calls } = counting();
    const auth = new KeystoneAuthenticator(keystoneSettings(), { transport });
    expect(await auth.authenticate('not-a-token')).toBeNull();
    expect(await auth.authenticate('not-a-token')).toBeNull();
    expect(calls()).toBe(3);
  });

  it('expires cached tokens at their expiry', async () => {
    const { transport, calls } = counting();
    let now = Date.now();
    const auth = new KeystoneAuthenticator(keystoneSettings(), { transport, now: () => now });
    const token = await keystoneToken(keystone, 'bob', 'projB');
    expect((await auth.authenticate(token))?.project).toBe(keystone.projects.projB);
    expect(calls()).toBe(2);
    now += 2 * 3600_000; // past the token's one hour (and the service token's)
    expect(await auth.authenticate(token)).toBeNull();
    expect(calls()).toBe(4);
  });

  it('answers 401 through the API for a missing or unknown token, 200 for a valid one', async () => {
    expect((await fetch(`${backend.url}/v2/images`)).status).toBe(401);
    expect((await fetch(`${backend.url}/v2/images`, { headers: { 'x-auth-token': 'bogus' } })).status).toBe(
      401,
    );
    const token = await keystoneToken(keystone, 'alice', 'projA');
    expect((await fetch(`${backend.url}/v2/images`, { headers: { 'x-auth-token': token } })).status).toBe(
      200,
    );
  });

  it('backs the Lambda authorizer, whose context drives the API in claims mode', async () => {
    const token = await keystoneToken(keystone, 'bob', 'projB');
    const authorizerEvent = (headers: Record<string, string>) =>
      ({
        headers,
        identitySource: Object.values(headers),
        routeKey: 'GET /v2/images',
      }) as unknown as APIGatewayRequestAuthorizerEventV2;
    expect(await keystoneAuthorizer(authorizerEvent({ 'x-auth-token': 'bogus' }))).toEqual({
      isAuthorized: false,
      context: {},
    });
    const allowed = await keystoneAuthorizer(authorizerEvent({ 'X-Auth-Token': token }));
    expect(allowed.isAuthorized).toBe(true);
    expect(allowed.context).toMatchObject({ project: keystone.projects.projB, sub: keystone.users.bob });
    expect(allowed.context.roles?.split(',')).toContain('member');

    const { handler } = await import('../../functions/api/images.ts');
    setServiceEnvironment({ HANGAR_AUTH_MODE: 'claims' });
    try {
      const event = {
        version: '2.0',
        routeKey: 'POST /v2/images',
        rawPath: '/v2/images',
        rawQueryString: '',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'via-authorizer' }),
        isBase64Encoded: false,
        requestContext: {
          http: { method: 'POST', path: '/v2/images' },
          authorizer: { lambda: allowed.context },
        },
      } as unknown as APIGatewayProxyEventV2;
      const created = (await handler(event, {} as Context)) as { statusCode: number; body: string };
      expect(created.statusCode).toBe(201);
      expect(JSON.parse(created.body)).toMatchObject({
        name: 'via-authorizer',
        owner: keystone.projects.projB,
      });
      const refused = (await handler(
        {
          ...event,
          requestContext: { http: { method: 'POST', path: '/v2/images' } },
        } as unknown as APIGatewayProxyEventV2,
        {} as Context,
      )) as { statusCode: number };
      expect(refused.statusCode).toBe(401);
    } finally {
      setServiceEnvironment({ HANGAR_AUTH_MODE: 'keystone' });
      resetServiceConfig();
    }
  });
});

// Each CLI run logs in to a one-thread Keystone first: seconds per command.
describe('image sharing with the openstack CLI', { timeout: 180_000 }, () => {
  let imageId = '';
  const data = randomBytes(64 * 1024 + 7);

  it('alice creates an image (shared by default) that bob cannot see', async () => {
    const file = join(work, 'disk.raw');
    writeFileSync(file, data);
    const created = await openstack(
      'alice',
      'image',
      'create',
      '--disk-format',
      'raw',
      '--container-format',
      'bare',
      '--file',
      file,
      'cli-shared',
      '-f',
      'json',
    );
    expect(created.code, created.stderr).toBe(0);
    const image = created.json as { id: string; visibility: string; owner: string };
    expect(image).toMatchObject({ visibility: 'shared', owner: keystone.projects.projA });
    imageId = image.id;
    // The CLI prints the image as created, before its upload: the data is there now.
    const shown = await openstack('alice', 'image', 'show', imageId, '-f', 'json');
    expect(shown.json).toMatchObject({ status: 'active', size: data.length });
    const hidden = await openstack('bob', 'image', 'show', imageId, '-f', 'json');
    expect(hidden.code).not.toBe(0);
  });

  it('`openstack image add project` makes bob a pending member', async () => {
    const added = await openstack(
      'alice',
      'image',
      'add',
      'project',
      imageId,
      keystone.projects.projB,
      '-f',
      'json',
    );
    expect(added.code, added.stderr).toBe(0);
    expect(added.json).toMatchObject({
      image_id: imageId,
      member_id: keystone.projects.projB,
      status: 'pending',
    });
    const shown = await openstack('bob', 'image', 'show', imageId, '-f', 'json');
    expect(shown.code, shown.stderr).toBe(0);
    const listed = await openstack('bob', 'image', 'list', '-f', 'json');
    expect(listed.code, listed.stderr).toBe(0);
    expect((listed.json as Array<{ ID: string }>).map((row) => row.ID)).not.toContain(imageId);
    const pending = await openstack(
      'bob',
      'image',
      'list',
      '--shared',
      '--member-status',
      'pending',
      '-f',
      'json',
    );
    expect((pending.json as Array<{ ID: string }>).map((row) => row.ID)).toContain(imageId);
  });

  it('`openstack image set --accept` as bob puts it in his image list', async () => {
    const accepted = await openstack('bob', 'image', 'set', '--accept', imageId);
    expect(accepted.code, accepted.stderr).toBe(0);
    const listed = await openstack('bob', 'image', 'list', '-f', 'json');
    expect((listed.json as Array<{ ID: string; Name: string }>).find((row) => row.ID === imageId)?.Name).toBe(
      'cli-shared',
    );
  });

  it('`openstack image member list` shows the owner every member and bob only himself', async () => {
    const owner = await openstack('alice', 'image', 'member', 'list', imageId, '-f', 'json');
    expect(owner.code, owner.stderr).toBe(0);
    expect(owner.json).toEqual([
      { 'Image ID': imageId, 'Member ID': keystone.projects.projB, Status: 'accepted' },
    ]);
    const consumer = await openstack('bob', 'image', 'member', 'list', imageId, '-f', 'json');
    expect(consumer.json).toEqual([
      { 'Image ID': imageId, 'Member ID': keystone.projects.projB, Status: 'accepted' },
    ]);
  });

  it('bob may download the image but not change it', async () => {
    const out = join(work, 'saved.raw');
    const saved = await openstack('bob', 'image', 'save', '--file', out, imageId);
    expect(saved.code, saved.stderr).toBe(0);
    expect(readFileSync(out).equals(data)).toBe(true);
    const renamed = await openstack('bob', 'image', 'set', '--name', 'taken', imageId);
    expect(renamed.code).not.toBe(0);
    const shown = await openstack('alice', 'image', 'show', imageId, '-f', 'json');
    expect((shown.json as { name: string }).name).toBe('cli-shared');
  });

  it('`openstack image remove project` takes it away again', async () => {
    const removed = await openstack('alice', 'image', 'remove', 'project', imageId, keystone.projects.projB);
    expect(removed.code, removed.stderr).toBe(0);
    const hidden = await openstack('bob', 'image', 'show', imageId, '-f', 'json');
    expect(hidden.code).not.toBe(0);
    const listed = await openstack('bob', 'image', 'list', '-f', 'json');
    expect((listed.json as Array<{ ID: string }>).map((row) => row.ID)).not.toContain(imageId);
  });
});
