/**
 * The middy stack of the entry points a platform service invokes rather than an API caller:
 * task steps (Step Functions), triggers (S3 notifications, EventBridge schedules) and the
 * API Gateway authorizer. Each invocation gets an id and a log context naming it and the
 * service; errors pass through untouched, for the invoking service to see (a state's Catch, an
 * S3/Lambda retry, API Gateway's 500). `middlewares` run after those two, in order.
 */
import middy, { type MiddlewareObj } from '@middy/core';
import type { Context } from 'aws-lambda';
import { invocationId, type RequestIdContext } from './request-id.ts';
import { inLogContext, requestLogging, type ServiceCaller } from './request-logging.ts';

export function serviceHandler<E, R>(
  caller: ServiceCaller,
  middlewares: MiddlewareObj<unknown, unknown, Error, Context>[],
  fn: (event: E, context: RequestIdContext) => Promise<R>,
): (event?: E, context?: Context) => Promise<R> {
  // timeoutEarlyInMillis 0: an invocation runs to Lambda's own timeout, which its service sees.
  const handler = middy<E, R, Error, RequestIdContext>({ timeoutEarlyInMillis: 0 })
    .use(invocationId())
    .use(requestLogging({ caller }))
    .use(middlewares)
    .handler(fn);
  // The event is optional as middy makes it ({}): the local runner calls the sweeps with none.
  return inLogContext(handler) as (event?: E, context?: Context) => Promise<R>;
}
