/**
 * The caller of an API request, in `context.principal`, resolved by the configured
 * authenticator (adapters/auth/authenticator.ts); a failure is an UnauthorizedError for the
 * error renderer. The caller's project and user join the log context from here on.
 */
import type { MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { resolvePrincipal } from '#adapters/auth/authenticator';
import type { Principal } from '#core/kernel/principal';
import { appendLogKeys } from '#platform/logger';
import { lowerHeaders } from './headers.ts';

export interface PrincipalContext extends Context {
  principal: Principal;
}

export interface PrincipalOptions {
  /** false for the unauthenticated endpoints (versions): the caller is anonymous. */
  required: boolean;
}

/** How a caller appears in log lines. */
export function callerOf(principal: Principal): { project: string; user: string } {
  return { project: principal.project, user: principal.user };
}

export function principal(
  options: PrincipalOptions,
): MiddlewareObj<APIGatewayProxyEventV2, unknown, Error, PrincipalContext> {
  const anonymous: Principal = { project: '', user: '', roles: [], isAdmin: false };
  return {
    name: 'principal',
    before: async (request) => {
      const resolved = options.required
        ? await resolvePrincipal(request.event, lowerHeaders(request.event.headers))
        : anonymous;
      request.context.principal = resolved;
      appendLogKeys({ caller: callerOf(resolved) });
    },
  };
}
