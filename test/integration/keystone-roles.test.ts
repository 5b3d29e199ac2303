/**
 * Roles through the Keystone path: Hangar in `keystone` mode against the real Keystone
 * (test/keystone/start-keystone.sh), with a user holding only `reader` on projA (made here, so
 * the shared start script stays as it is). Keystone lists the implied roles in the token (a
 * member's token also says reader); Hangar maps them exactly as the token file's: the reader
 * reads and every write is a 403, the member writes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeystoneAuthenticator, keystoneSettings } from '#adapters/auth/keystone';
import { setServiceEnvironment } from '#platform/config';
import { type Backend, startBackend } from '../../local/backend.ts';
import {
  ensureKeystone,
  type KeystoneInfo,
  keystoneCall,
  keystoneToken,
  serviceKeystoneEnv,
} from '../helpers/keystone.ts';

const READER = 'rbac-reader';

let keystone: KeystoneInfo;
let backend: Backend;

/** A projA-scoped token of the reader account, made (with only the reader role) when missing. */
async function readerToken(info: KeystoneInfo): Promise<string> {
  const admin = await keystoneToken(info, 'admin', 'admin');
  const call = async (method: string, path: string, body?: unknown) => {
    const answer = await keystoneCall(info, method, path, { token: admin, body });
    if (answer.status >= 300)
      throw new Error(`${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body as Record<string, unknown>;
  };
  const found = (await call('GET', `/v3/users?name=${READER}`)).users as Array<{ id: string }>;
  const id =
    found[0]?.id ??
    (
      (
        await call('POST', '/v3/users', {
          user: { name: READER, domain_id: 'default', password: info.password },
        })
      ).user as { id: string }
    ).id;
  await call('PUT', `/v3/projects/${info.projects.projA}/users/${id}/roles/${info.roles.reader}`);
  const answer = await keystoneCall(info, 'POST', '/v3/auth/tokens', {
    body: {
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: READER, domain: { id: 'default' }, password: info.password } },
        },
        scope: { project: { id: info.projects.projA } },
      },
    },
  });
  const token = answer.headers['x-subject-token'];
  if (answer.status !== 201 || typeof token !== 'string')
    throw new Error(`no reader token: ${answer.status}`);
  return token;
}

beforeAll(async () => {
  keystone = await ensureKeystone();
  setServiceEnvironment(serviceKeystoneEnv(keystone));
  backend = await startBackend({ port: 0, storage: 'memory', authMode: 'keystone', logLevel: 'warn' });
}, 300_000);

afterAll(async () => {
  await backend?.stop();
});

async function call(token: string, method: string, path: string, body?: unknown): Promise<number> {
  const response = await fetch(`${backend.url}${path}`, {
    method,
    headers: {
      'x-auth-token': token,
      accept: 'application/json',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  await response.arrayBuffer();
  return response.status;
}

describe('Keystone roles', () => {
  it("maps a Keystone token's roles as the token file's: a reader reads, a member writes", async () => {
    const reader = await readerToken(keystone);
    const member = await keystoneToken(keystone, 'alice', 'projA');
    const auth = new KeystoneAuthenticator(keystoneSettings());
    const memberPrincipal = await auth.authenticate(member);
    // Keystone lists implied roles: member implies reader.
    expect(memberPrincipal?.roles).toEqual(expect.arrayContaining(['member', 'reader']));
    const readerPrincipal = await auth.authenticate(reader);
    expect(readerPrincipal).toMatchObject({ project: keystone.projects.projA, isAdmin: false });
    expect(readerPrincipal?.roles).toEqual(['reader']);

    // Act
    const created = await fetch(`${backend.url}/v2/images`, {
      method: 'POST',
      headers: { 'x-auth-token': member, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'keystone-rbac', disk_format: 'raw', container_format: 'bare' }),
    });
    expect(created.status).toBe(201);
    const image = ((await created.json()) as { id: string }).id;

    // Assess
    expect(await call(reader, 'GET', '/v2/images')).toBe(200);
    expect(await call(reader, 'GET', `/v2/images/${image}`)).toBe(200);
    expect(await call(reader, 'POST', '/v2/images', { name: 'nope' })).toBe(403);
    expect(await call(reader, 'PUT', `/v2/images/${image}/tags/x`)).toBe(403);
    expect(await call(reader, 'DELETE', `/v2/images/${image}`)).toBe(403);
    expect(await call(reader, 'POST', '/v1/references', { reference: 'k:v1', image_id: image })).toBe(403);
    expect(await call(member, 'PUT', `/v2/images/${image}/tags/x`)).toBe(204);
    expect(await call(member, 'DELETE', `/v2/images/${image}`)).toBe(204);
  });
});
