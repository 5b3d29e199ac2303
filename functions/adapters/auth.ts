/** Chooses how a request's caller is resolved, by HANGAR_AUTH_MODE. */
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { UnauthorizedError } from '#core/errors';
import type { Authenticator, Principal } from '#core/principal';
import { serviceConfig } from '#shared/config';
import { TokenFileAuthenticator } from './token-file.ts';

let authenticator: Authenticator | undefined;
let authenticatorKey = '';

function tokenAuthenticator(): Authenticator {
  const config = serviceConfig();
  const key = `${config.authMode}:${config.tokensFile ?? ''}`;
  if (authenticator && authenticatorKey === key) return authenticator;
  if (config.authMode === 'tokens') {
    if (!config.tokensFile) throw new Error('HANGAR_TOKENS must name a token file in tokens mode');
    authenticator = new TokenFileAuthenticator(config.tokensFile);
  } else {
    throw new Error(`auth mode ${config.authMode} is not available in this build`);
  }
  authenticatorKey = key;
  return authenticator;
}

/** Tests may swap the authenticator (e.g. a Keystone one) in. */
export function setAuthenticator(next: Authenticator | undefined): void {
  authenticator = next;
  authenticatorKey = next ? `${serviceConfig().authMode}:${serviceConfig().tokensFile ?? ''}` : '';
}

export async function resolvePrincipal(
  _event: APIGatewayProxyEventV2,
  headers: Readonly<Record<string, string>>,
): Promise<Principal> {
  const token = headers['x-auth-token'];
  if (!token) throw new UnauthorizedError();
  const principal = await tokenAuthenticator().authenticate(token);
  if (!principal) throw new UnauthorizedError();
  return principal;
}
