/**
 * Keystone on the console's own origin, in `keystone` mode only: the console signs a user in with
 * a password by asking Keystone for a project-scoped token, and the browser may only talk to the
 * origin it came from (no CORS on Keystone, and the console's CSP is `'self'`). So the gateway
 * passes exactly two requests through to HANGAR_KEYSTONE_URL:
 *   GET  /identity/v3              Keystone's version document (the console's "is Keystone here?")
 *   POST /identity/v3/auth/tokens  password authentication; the answer's X-Subject-Token is the token
 * Nothing else of Keystone's API is reachable here, and no body is logged (it holds a password).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { httpTransport } from '#adapters/auth/keystone';
import { errorResult } from '#edge/http';
import { serviceConfig } from '#platform/config';
import { logger } from '#platform/logger';

export const IDENTITY_PREFIX = '/identity';
/** A password authentication request is a few hundred bytes. */
const MAX_BODY = 64 * 1024;

export function isIdentityPath(rawPath: string): boolean {
  return rawPath === IDENTITY_PREFIX || rawPath.startsWith(`${IDENTITY_PREFIX}/`);
}

function answer(res: ServerResponse, status: number, headers: Record<string, string>, body: string): void {
  res.writeHead(status, {
    ...headers,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  message: string,
  extra = {},
): void {
  const result = errorResult(status, message, req.headers.accept, extra);
  answer(res, status, (result.headers ?? {}) as Record<string, string>, result.body ?? '');
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function serveIdentity(
  req: IncomingMessage,
  res: ServerResponse,
  rawPath: string,
): Promise<void> {
  const config = serviceConfig();
  const keystone = config.authMode === 'keystone' ? config.keystone.url : undefined;
  const path = rawPath.replace(/\/+$/, '');
  const route =
    path === `${IDENTITY_PREFIX}/v3`
      ? 'GET'
      : path === `${IDENTITY_PREFIX}/v3/auth/tokens`
        ? 'POST'
        : undefined;
  // Outside keystone mode there is no Keystone to speak of: as if the path did not exist.
  if (!keystone || !route) {
    refuse(req, res, 404, 'The resource could not be found.');
    return;
  }
  const method = (req.method ?? 'GET').toUpperCase();
  if (method !== route) {
    refuse(req, res, 405, `The method ${method} is not allowed for this resource.`, { allow: route });
    return;
  }
  let body: string | undefined;
  if (route === 'POST') {
    const type = req.headers['content-type']?.split(';')[0]?.trim();
    if (type !== 'application/json') {
      refuse(req, res, 415, `The request media type ${type ?? 'None'} is not supported by this server.`);
      return;
    }
    body = await readBody(req);
    if (body === undefined) {
      refuse(req, res, 413, 'The authentication request is too large.');
      return;
    }
  }
  const base = keystone.replace(/\/+$/, '').replace(/\/v3$/, '');
  try {
    const upstream = await httpTransport(config.keystone.timeoutMs)({
      method: route,
      url: `${base}${path.slice(IDENTITY_PREFIX.length)}`,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body }),
    });
    const headers: Record<string, string> = {
      'content-type': upstream.headers['content-type'] ?? 'application/json',
    };
    const token = upstream.headers['x-subject-token'];
    if (token) headers['x-subject-token'] = token;
    logger.info('identity request', { method: route, path, status: upstream.status });
    answer(res, upstream.status, headers, upstream.body);
  } catch (error) {
    logger.warn('keystone unreachable', {
      path,
      reason: error instanceof Error ? error.message : String(error),
    });
    refuse(req, res, 503, 'Keystone cannot be reached; try again later.');
  }
}
