/**
 * The $connect authorizer of the agents' WebSocket API (AWS): the same rule as the embedded
 * gateway's socket (edge/agent-socket.ts) and the host endpoints, a host token acting for its own
 * host (`?host_id=`) only. The token is checked as the deployment's auth mode checks it:
 * - jwt: verified here against the issuer (the HTTP API's JWT authorizer cannot serve a WebSocket
 *   API), then read through the same claim names as every function;
 * - keystone: validated with Keystone; tokens: looked up in the token file (its layer).
 * Allowed: an IAM policy for this connect only, with the host id as context for $connect.
 * Refused: 401 for a missing, malformed or invalid token, 403 for a token of another host or
 * without the host role. Keystone or the issuer unreachable: an error, so API Gateway answers
 * 500 and lets nobody in.
 */
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { JwtVerifier } from '#adapters/auth/jwt-verifier';
import { HangarError } from '#core/kernel/errors';
import { authorizeAgentSocket } from '#edge/agent-socket';
import { lowerHeaders } from '#edge/middlewares/headers';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { serviceConfig } from '#platform/config';
import { logger } from '#platform/logger';

let verifier: { key: string; instance: JwtVerifier } | undefined;

/** The verified claims of the request's JWT (claims mode), or undefined (no token, or not valid). */
async function verifiedClaims(
  headers: Readonly<Record<string, string>>,
): Promise<Record<string, unknown> | undefined> {
  const { jwt } = serviceConfig();
  if (!jwt.issuer || jwt.audience.length === 0)
    throw new Error('claims mode needs HANGAR_JWT_ISSUER and HANGAR_JWT_AUDIENCE to verify agent tokens');
  const key = JSON.stringify([jwt.issuer, jwt.audience]);
  if (verifier?.key !== key)
    verifier = { key, instance: new JwtVerifier({ issuer: jwt.issuer, audience: jwt.audience }) };
  // `Authorization: Bearer <jwt>` as well as a bare token, as API Gateway's JWT authorizer reads it.
  const token = headers[jwt.tokenHeader.toLowerCase()]?.replace(/^Bearer\s+/i, '');
  return token ? ((await verifier.instance.verify(token)) ?? undefined) : undefined;
}

function policy(effect: 'Allow' | 'Deny', resource: string, principalId: string): APIGatewayAuthorizerResult {
  return {
    principalId,
    policyDocument: {
      Version: '2012-10-17',
      Statement: [{ Action: 'execute-api:Invoke', Effect: effect, Resource: resource }],
    },
  };
}

async function authorize(event: APIGatewayRequestAuthorizerEvent): Promise<APIGatewayAuthorizerResult> {
  const headers = lowerHeaders(event.headers ?? {});
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(event.queryStringParameters ?? {}))
    if (value !== undefined) query.set(name, value);
  try {
    const claims = serviceConfig().authMode === 'claims' ? await verifiedClaims(headers) : undefined;
    const { hostId } = await authorizeAgentSocket(headers, query, claims);
    return { ...policy('Allow', event.methodArn, hostId), context: { hostId } };
  } catch (error) {
    // Keystone down (unavailable) or anything unexpected: 500, nobody in.
    if (!(error instanceof HangarError) || error.kind === 'unavailable') throw error;
    logger.info('agent socket refused', { reason: error.message, host: query.get('host_id') ?? '' });
    // API Gateway's spelling for 401; a Deny policy is its 403.
    if (error.kind === 'forbidden') return policy('Deny', event.methodArn, query.get('host_id') ?? 'unknown');
    throw new Error('Unauthorized');
  }
}

export const handler = serviceHandler({ service: 'apigateway' }, [], authorize);
