/**
 * The `keystone` auth mode: X-Auth-Token is validated against an OpenStack Identity v3 service
 * (`GET /v3/auth/tokens` with `X-Subject-Token`) using Hangar's own service account, as Glance's
 * keystonemiddleware does, so Hangar can stand in for Glance in an OpenStack cloud. The token's
 * project id becomes the owner, its role names the roles.
 *
 * Valid tokens are cached (by digest, never the token itself) in a bounded LRU until Keystone says
 * they expire or for cacheSeconds, whichever is sooner (keystonemiddleware's token_cache_time, 300 s
 * by default as in Glance): a token revoked in Keystone is refused at most that long after.
 * Concurrent checks of one token share one call. Unknown tokens are not cached.
 * Every request goes on a fresh connection with `Connection: close`: a Keystone under uwsgi
 * resets reused connections.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { z } from 'zod';
import { UnavailableError } from '#core/kernel/errors';
import { type Authenticator, makePrincipal, type Principal } from '#core/kernel/principal';
import { type ServiceConfig, serviceConfig } from '#platform/config';
import { logger } from '#platform/logger';

export interface KeystoneSettings {
  /** Identity endpoint, with or without the trailing /v3. */
  url: string;
  user: string;
  password: string;
  project: string;
  userDomain: string;
  projectDomain: string;
  cacheSize: number;
  /** At most this long a validated token is trusted without asking Keystone again. Default 300. */
  cacheSeconds?: number;
  timeoutMs: number;
}

export interface KeystoneRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
}

export interface KeystoneResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: string;
}

export type KeystoneTransport = (request: KeystoneRequest) => Promise<KeystoneResponse>;

/** node:http(s) with no agent: one connection per request, closed after it. */
export function httpTransport(timeoutMs: number): KeystoneTransport {
  return (req) =>
    new Promise((resolve, reject) => {
      const url = new URL(req.url);
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const headers: Record<string, string> = {
        ...req.headers,
        connection: 'close',
        accept: 'application/json',
      };
      if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
      const outgoing = send(url, { method: req.method, headers, agent: false, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const flat: Record<string, string> = {};
          for (const [name, value] of Object.entries(res.headers))
            if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
          resolve({
            status: res.statusCode ?? 0,
            headers: flat,
            body: Buffer.concat(chunks).toString('utf8'),
          });
        });
      });
      outgoing.on('timeout', () =>
        outgoing.destroy(new Error(`no answer from ${url.origin} in ${timeoutMs} ms`)),
      );
      outgoing.on('error', reject);
      outgoing.end(req.body);
    });
}

const TokenBodySchema = z.object({
  token: z.object({
    expires_at: z.string(),
    user: z.object({ id: z.string(), name: z.string().optional() }).optional(),
    project: z.object({ id: z.string(), name: z.string().optional() }).optional(),
    roles: z.array(z.object({ name: z.string() })).optional(),
  }),
});

/** A service token is renewed this long before Keystone's expiry, so no request races it. */
const SERVICE_TOKEN_MARGIN_MS = 60_000;

function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function unavailable(reason: string): UnavailableError {
  return new UnavailableError(`The identity service is not available: ${reason}`);
}

export class KeystoneAuthenticator implements Authenticator {
  private readonly base: string;
  private readonly transport: KeystoneTransport;
  private readonly now: () => number;
  private readonly cache = new Map<string, { principal: Principal; expiresAt: number }>();
  private readonly pending = new Map<string, Promise<Principal | null>>();
  private service: { token: string; renewAt: number } | undefined;

  constructor(
    private readonly settings: KeystoneSettings,
    options: { transport?: KeystoneTransport; now?: () => number } = {},
  ) {
    this.base = settings.url.replace(/\/+$/, '').replace(/\/v3$/, '');
    this.transport = options.transport ?? httpTransport(settings.timeoutMs);
    this.now = options.now ?? Date.now;
  }

  async authenticate(token: string): Promise<Principal | null> {
    const key = digest(token);
    const cached = this.cache.get(key);
    if (cached) {
      this.cache.delete(key);
      if (cached.expiresAt > this.now()) {
        // Re-inserted: a Map iterates in insertion order, so the first key is the least recent.
        this.cache.set(key, cached);
        return cached.principal;
      }
    }
    let validation = this.pending.get(key);
    if (!validation) {
      validation = this.validate(token, key).finally(() => this.pending.delete(key));
      this.pending.set(key, validation);
    }
    return validation;
  }

  private async validate(token: string, key: string): Promise<Principal | null> {
    let response = await this.check(token, await this.serviceToken());
    if (response.status === 401) {
      // Our own token was revoked or expired early: get a new one, once.
      this.service = undefined;
      response = await this.check(token, await this.serviceToken());
    }
    if (response.status === 404 || response.status === 401) return null;
    if (response.status !== 200) {
      logger.error('keystone refused to validate a token', {
        status: response.status,
        body: response.body.slice(0, 300),
      });
      throw unavailable(`token validation answered ${response.status}`);
    }
    const parsed = TokenBodySchema.safeParse(safeJson(response.body));
    if (!parsed.success) throw unavailable('token validation answered an unexpected body');
    const body = parsed.data.token;
    // Images belong to projects: a token scoped to no project (unscoped, domain, system) is refused.
    if (!body.project) return null;
    const expiresAt = Date.parse(body.expires_at);
    if (!(expiresAt > this.now())) return null;
    const trustedUntil = Math.min(expiresAt, this.now() + (this.settings.cacheSeconds ?? 300) * 1000);
    const principal = makePrincipal(
      body.project.id,
      body.user?.id ?? '',
      (body.roles ?? []).map((role) => role.name),
    );
    this.cache.set(key, { principal, expiresAt: trustedUntil });
    while (this.cache.size > this.settings.cacheSize) {
      const oldest = this.cache.keys().next().value;
      if (oldest === undefined) break;
      this.cache.delete(oldest);
    }
    return principal;
  }

  private async check(subject: string, serviceToken: string): Promise<KeystoneResponse> {
    try {
      return await this.transport({
        method: 'GET',
        url: `${this.base}/v3/auth/tokens?nocatalog`,
        headers: { 'x-auth-token': serviceToken, 'x-subject-token': subject },
      });
    } catch (error) {
      logger.error('keystone unreachable', { error });
      throw unavailable('no answer');
    }
  }

  private async serviceToken(): Promise<string> {
    if (this.service && this.service.renewAt > this.now()) return this.service.token;
    const { user, password, project, userDomain, projectDomain } = this.settings;
    let response: KeystoneResponse;
    try {
      response = await this.transport({
        method: 'POST',
        url: `${this.base}/v3/auth/tokens?nocatalog`,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          auth: {
            identity: {
              methods: ['password'],
              password: { user: { name: user, domain: { name: userDomain }, password } },
            },
            scope: { project: { name: project, domain: { name: projectDomain } } },
          },
        }),
      });
    } catch (error) {
      logger.error('keystone unreachable', { error });
      throw unavailable('no answer');
    }
    const token = response.headers['x-subject-token'];
    if (response.status !== 201 || !token) {
      logger.error("keystone refused Hangar's service credentials", { status: response.status });
      throw unavailable(`service login answered ${response.status}`);
    }
    const parsed = TokenBodySchema.safeParse(safeJson(response.body));
    const expiresAt = parsed.success ? Date.parse(parsed.data.token.expires_at) : this.now();
    this.service = { token, renewAt: expiresAt - SERVICE_TOKEN_MARGIN_MS };
    return token;
  }
}

/** The settings from HANGAR_KEYSTONE_*; every one without a default must be set. */
export function keystoneSettings(config: ServiceConfig = serviceConfig()): KeystoneSettings {
  const { url, user, password, project, ...rest } = config.keystone;
  if (!url || !user || !password || !project)
    throw new Error(
      'keystone mode needs HANGAR_KEYSTONE_URL, HANGAR_KEYSTONE_USER, HANGAR_KEYSTONE_PASSWORD and HANGAR_KEYSTONE_PROJECT',
    );
  return { url, user, password, project, ...rest };
}
