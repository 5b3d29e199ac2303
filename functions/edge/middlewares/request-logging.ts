/**
 * Request-scoped logging: every line logged while an invocation runs, by the edge, core or an
 * adapter, carries the invocation's `requestId` and `caller` (platform/logger.ts).
 *
 * Two parts, because a middleware's `before` cannot wrap the rest of the chain:
 * - `inLogContext(handler)` runs the whole middy handler in a fresh log context
 *   (AsyncLocalStorage.run). Entering one from inside a middleware (`enterWith`) would leak it
 *   into the caller: the local gateway's or state machine runner's next invocations.
 * - `requestLogging()` fills it: the request id (from `httpRequestId`/`invocationId`, registered
 *   before it) and the caller, fixed for tasks and triggers; for the API `caller` is null until
 *   the principal middleware names it.
 */
import type { MiddlewareObj } from '@middy/core';
import { appendLogKeys, withLogContext } from '#platform/logger';
import type { RequestIdContext } from './request-id.ts';

/** Who invoked an entry point that has no authenticated caller (a service of the platform). */
export interface ServiceCaller {
  service: string;
}

export interface RequestLoggingOptions {
  /** Tasks and triggers: the service that invokes them. */
  caller?: ServiceCaller;
}

export function requestLogging(
  options: RequestLoggingOptions = {},
): MiddlewareObj<unknown, unknown, Error, RequestIdContext> {
  return {
    name: 'requestLogging',
    before: (request) => {
      appendLogKeys({ requestId: request.context.requestId, caller: options.caller ?? null });
    },
  };
}

/** Runs each invocation of `handler` in its own log context. */
export function inLogContext<E, C, R>(
  handler: (event: E, context: C) => Promise<R>,
): (event: E, context?: C) => Promise<R> {
  return (event, context) => withLogContext({}, () => handler(event, context as C));
}
