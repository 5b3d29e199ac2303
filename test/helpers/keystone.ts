/**
 * The real Keystone the keystone-mode tests run against: test/keystone/start-keystone.sh starts it
 * (CI runs it in .ci/run; a test starts it too when it is not running) and makes the accounts.
 * Every request opens its own connection and says `Connection: close`: that uwsgi resets reused ones.
 */
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../keystone/start-keystone.sh', import.meta.url));

export interface KeystoneInfo {
  /** Identity v3 URL, e.g. http://127.0.0.1:5000/v3. */
  url: string;
  /** The password of every test account (admin, hangar, alice, bob). */
  password: string;
  projects: Record<'admin' | 'service' | 'projA' | 'projB', string>;
  users: Record<'admin' | 'hangar' | 'alice' | 'bob', string>;
  roles: Record<'admin' | 'member' | 'reader' | 'service', string>;
}

/** Starts Keystone unless it runs; fails loudly when the keystone package is missing. */
export function ensureKeystone(): Promise<KeystoneInfo> {
  return new Promise((resolve, reject) => {
    execFile('bash', [SCRIPT], { timeout: 300_000, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) {
        reject(
          new Error(
            `start-keystone.sh failed (.ci/run installs and starts Keystone): ${stderr.slice(-2000)}`,
          ),
        );
        return;
      }
      const last = stdout.trim().split('\n').at(-1) ?? '';
      resolve(JSON.parse(last) as KeystoneInfo);
    });
  });
}

/** The service's own Keystone account (`hangar` in `service`), as a keystone-mode deployment sets it. */
export function serviceKeystoneEnv(info: KeystoneInfo): Record<string, string> {
  return {
    HANGAR_KEYSTONE_URL: info.url,
    HANGAR_KEYSTONE_USER: 'hangar',
    HANGAR_KEYSTONE_PASSWORD: info.password,
    HANGAR_KEYSTONE_PROJECT: 'service',
  };
}

export interface KeystoneAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

export function keystoneCall(
  info: KeystoneInfo,
  method: string,
  path: string,
  options: { token?: string; body?: unknown } = {},
): Promise<KeystoneAnswer> {
  const base = info.url.replace(/\/v3$/, '');
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const headers: Record<string, string> = { connection: 'close', accept: 'application/json' };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    if (options.token) headers['x-auth-token'] = options.token;
    const req = request(`${base}${path}`, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: text ? JSON.parse(text) : undefined,
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** A project-scoped token for a test account. */
export async function keystoneToken(
  info: KeystoneInfo,
  user: keyof KeystoneInfo['users'],
  project: keyof KeystoneInfo['projects'],
): Promise<string> {
  const answer = await keystoneCall(info, 'POST', '/v3/auth/tokens', {
    body: {
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: user, domain: { id: 'default' }, password: info.password } },
        },
        scope: { project: { name: project, domain: { id: 'default' } } },
      },
    },
  });
  const token = answer.headers['x-subject-token'];
  if (answer.status !== 201 || typeof token !== 'string')
    throw new Error(`no token for ${user}: ${answer.status}`);
  return token;
}

/**
 * Points the catalog's image service in RegionOne at `url` (the Hangar under test), as a cloud would
 * point it at Glance: clients such as the openstack CLI find the image API there. Other regions are
 * left alone (test/tempest runs in one of its own). Resolves to the function that removes the
 * endpoints again: call it when the Hangar stops, or the catalog points at a dead port.
 */
export async function registerImageEndpoint(info: KeystoneInfo, url: string): Promise<() => Promise<void>> {
  const token = await keystoneToken(info, 'admin', 'admin');
  const call = async (method: string, path: string, body?: unknown) => {
    const answer = await keystoneCall(info, method, path, { token, body });
    if (answer.status >= 300 && !(method === 'DELETE' && answer.status === 404))
      throw new Error(`${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body as Record<string, unknown>;
  };
  const services = (await call('GET', '/v3/services?type=image')).services as Array<{ id: string }>;
  const serviceId =
    services[0]?.id ??
    (
      (await call('POST', '/v3/services', { service: { type: 'image', name: 'glance' } })).service as {
        id: string;
      }
    ).id;
  const endpoints = (await call('GET', `/v3/endpoints?service_id=${serviceId}&region_id=RegionOne`))
    .endpoints as Array<{ id: string }>;
  for (const endpoint of endpoints) await call('DELETE', `/v3/endpoints/${endpoint.id}`);
  const created: string[] = [];
  for (const iface of ['public', 'internal', 'admin']) {
    const body = await call('POST', '/v3/endpoints', {
      endpoint: { service_id: serviceId, interface: iface, url, region_id: 'RegionOne' },
    });
    created.push((body.endpoint as { id: string }).id);
  }
  return async () => {
    // A fresh token: the test may have outlived the first one.
    const later = await keystoneToken(info, 'admin', 'admin');
    for (const id of created) {
      const answer = await keystoneCall(info, 'DELETE', `/v3/endpoints/${id}`, { token: later });
      if (answer.status !== 204 && answer.status !== 404)
        throw new Error(`DELETE /v3/endpoints/${id}: ${answer.status}`);
    }
  };
}

/** The OS_* environment of the openstack CLI for a test account. */
export function openstackEnv(
  info: KeystoneInfo,
  user: keyof KeystoneInfo['users'],
  project: keyof KeystoneInfo['projects'],
): Record<string, string> {
  return {
    OS_AUTH_URL: info.url,
    OS_USERNAME: user,
    OS_PASSWORD: info.password,
    OS_PROJECT_NAME: project,
    OS_USER_DOMAIN_NAME: 'Default',
    OS_PROJECT_DOMAIN_NAME: 'Default',
    OS_IDENTITY_API_VERSION: '3',
    OS_IMAGE_API_VERSION: '2',
    OS_REGION_NAME: 'RegionOne',
    OS_INTERFACE: 'public',
  };
}
