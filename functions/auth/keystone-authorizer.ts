/**
 * API Gateway (HTTP API) Lambda authorizer for Keystone tokens, with simple responses: it
 * validates X-Auth-Token through the same adapter as the `keystone` auth mode and hands the
 * token's project, user and roles to the API functions, which run in `claims` mode and read them
 * under the HANGAR_CLAIM_* names. Roles travel as one comma-separated string (context values
 * must be scalars); core/kernel/claims.ts splits them again.
 */
import type {
  APIGatewayRequestAuthorizerEventV2,
  APIGatewaySimpleAuthorizerWithContextResult,
} from 'aws-lambda';
import { KeystoneAuthenticator, keystoneSettings } from '#adapters/auth/keystone';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { serviceConfig } from '#platform/config';

type Context = Record<string, string>;

// One per container: its token cache outlives single invocations.
let authenticator: { config: object; instance: KeystoneAuthenticator } | undefined;

function keystone(): KeystoneAuthenticator {
  const config = serviceConfig();
  if (!authenticator || authenticator.config !== config)
    authenticator = { config, instance: new KeystoneAuthenticator(keystoneSettings(config)) };
  return authenticator.instance;
}

function tokenOf(event: APIGatewayRequestAuthorizerEventV2): string | undefined {
  for (const [name, value] of Object.entries(event.headers ?? {}))
    if (name.toLowerCase() === 'x-auth-token' && value) return value;
  return event.identitySource?.[0] || undefined;
}

async function authorize(
  event: APIGatewayRequestAuthorizerEventV2,
): Promise<APIGatewaySimpleAuthorizerWithContextResult<Context>> {
  const token = tokenOf(event);
  // An unavailable Keystone throws: API Gateway then answers 500, never lets the request through.
  const principal = token ? await keystone().authenticate(token) : null;
  if (!principal) return { isAuthorized: false, context: {} };
  const names = serviceConfig().claims;
  return {
    isAuthorized: true,
    context: {
      [names.project]: principal.project,
      [names.user]: principal.user,
      [names.roles]: principal.roles.join(','),
    },
  };
}

/** The Keystone adapter's log lines (unreachable, refused) carry the invocation's id. */
export const handler = serviceHandler({ service: 'apigateway' }, [], authorize);
