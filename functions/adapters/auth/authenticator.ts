/**
 * Chooses how a request's caller is resolved, by HANGAR_AUTH_MODE, behind one interface:
 * - tokens: X-Auth-Token looked up in the token file (the embedded default);
 * - keystone: X-Auth-Token validated by an OpenStack Keystone (keystone-auth.ts);
 * - claims: an API Gateway authorizer already checked the caller; its claims (JWT authorizer)
 *   or context (Lambda authorizer) name project, user and roles (core/kernel/claims.ts).
 */
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { principalFromClaims } from '#core/kernel/claims';
import { UnauthorizedError } from '#core/kernel/errors';
import type { Authenticator, Principal } from '#core/kernel/principal';
import { type ServiceConfig, serviceConfig } from '#platform/config';
import { KeystoneAuthenticator, keystoneSettings } from './keystone.ts';
import { TokenFileAuthenticator } from './token-file.ts';

let authenticator: Authenticator | undefined;
let authenticatorKey = '';

/** What the authenticator is built from: a new key (e.g. a test changed the mode) builds anew. */
function keyOf(config: ServiceConfig): string {
  const k = config.keystone;
  return JSON.stringify([
    config.authMode,
    config.tokensFile,
    k.url,
    k.user,
    k.project,
    k.userDomain,
    k.projectDomain,
  ]);
}

function tokenAuthenticator(): Authenticator {
  const config = serviceConfig();
  const key = keyOf(config);
  if (authenticator && authenticatorKey === key) return authenticator;
  if (config.authMode === 'tokens') {
    if (!config.tokensFile) throw new Error('HANGAR_TOKENS must name a token file in tokens mode');
    authenticator = new TokenFileAuthenticator(config.tokensFile);
  } else if (config.authMode === 'keystone') {
    authenticator = new KeystoneAuthenticator(keystoneSettings(config));
  } else {
    throw new Error(`auth mode ${config.authMode} takes no tokens`);
  }
  authenticatorKey = key;
  return authenticator;
}

/** Tests may swap the authenticator (e.g. a Keystone one) in. */
export function setAuthenticator(next: Authenticator | undefined): void {
  authenticator = next;
  authenticatorKey = next ? keyOf(serviceConfig()) : '';
}

/** The authorizer's output in a payload-2.0 event: JWT claims, or a Lambda authorizer's context. */
function authorizerClaims(event: APIGatewayProxyEventV2): Record<string, unknown> | undefined {
  const authorizer = (
    event.requestContext as {
      authorizer?: { jwt?: { claims?: Record<string, unknown> }; lambda?: Record<string, unknown> };
    }
  ).authorizer;
  return authorizer?.jwt?.claims ?? authorizer?.lambda;
}

export async function resolvePrincipal(
  event: APIGatewayProxyEventV2,
  headers: Readonly<Record<string, string>>,
): Promise<Principal> {
  const config = serviceConfig();
  if (config.authMode === 'claims') {
    const principal = principalFromClaims(authorizerClaims(event), config.claims);
    if (!principal) throw new UnauthorizedError();
    return principal;
  }
  const token = headers['x-auth-token'];
  if (!token) throw new UnauthorizedError();
  const principal = await tokenAuthenticator().authenticate(token);
  if (!principal) throw new UnauthorizedError();
  return principal;
}
