/**
 * Who may open an agent's notification socket: the same host token, with the same rule, as the
 * host's HTTPS calls (a token acts for its own host only). The socket is opened with
 * `?host_id=<id>` and `X-Auth-Token`, the shape API Gateway's WebSocket API hands its $connect
 * route, so the embedded gateway and AWS speak one protocol.
 */
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { resolvePrincipal } from '#adapters/auth/authenticator';
import { assertActsForHost } from '#core/instances/access';
import { BadRequestError } from '#core/kernel/errors';
import type { Principal } from '#core/kernel/principal';
import { lowerHeaders } from './middlewares/headers.ts';

/** The path the embedded gateway serves the socket on (on AWS: the WebSocket API's own URL). */
export const AGENT_SOCKET_PATH = '/v1/agent-socket';

/** What the server sends when the host's queue gained a job (defined once, for AWS's notifier too). */
export { JOBS_MESSAGE } from '#core/instances/agent-connections';

/**
 * The host the socket is for, once its caller is known to act for it; domain errors otherwise.
 * `claims`: a JWT's claims already verified by the caller (AWS's $connect authorizer in jwt mode,
 * which API Gateway's JWT authorizer cannot serve: WebSocket APIs take only Lambda authorizers).
 */
export async function authorizeAgentSocket(
  headers: Readonly<Record<string, string | undefined>>,
  query: URLSearchParams,
  claims?: Readonly<Record<string, unknown>>,
): Promise<{ hostId: string; principal: Principal }> {
  const hostId = query.get('host_id');
  if (!hostId) throw new BadRequestError('The query parameter host_id is required.');
  const lower = lowerHeaders(headers);
  // Without verified claims a connect carries no authorizer output: claims mode then refuses.
  const requestContext = claims ? { authorizer: { jwt: { claims } } } : {};
  const event = { headers: lower, requestContext } as unknown as APIGatewayProxyEventV2;
  const principal = await resolvePrincipal(event, lower);
  assertActsForHost(principal, hostId);
  return { hostId, principal };
}
