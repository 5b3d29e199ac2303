/**
 * The request id of an invocation, in `context.requestId`, for the log context and the answer.
 * - HTTP (`httpRequestId`): like Glance, a caller's X-Openstack-Request-Id is kept (tracing
 *   across services) up to Glance's max_request_id_length; a longer one is answered 431 at once,
 *   under a fresh id. Every answer, error or not, carries the id in X-Openstack-Request-Id.
 * - Tasks and triggers (`invocationId`): the Lambda invocation's id, or a fresh one where there
 *   is no Lambda context (the local runner calls these handlers with their event alone).
 */
import { randomUUID } from 'node:crypto';
import type { MiddlewareObj, Request } from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { errorResult } from './glance-errors.ts';
import { lowerHeaders } from './headers.ts';

type ApiResult = APIGatewayProxyStructuredResultV2;

export interface RequestIdContext extends Context {
  requestId: string;
}

export const REQUEST_ID_HEADER = 'x-openstack-request-id';

/** Glance's max_request_id_length. */
export const MAX_REQUEST_ID_LENGTH = 64;

export function newRequestId(): string {
  return `req-${randomUUID()}`;
}

function stamp(request: Request<APIGatewayProxyEventV2, ApiResult, Error, RequestIdContext>): void {
  if (!request.response) return;
  request.response.headers = {
    ...(request.response.headers ?? {}),
    [REQUEST_ID_HEADER]: request.context.requestId,
  };
}

export function httpRequestId(): MiddlewareObj<APIGatewayProxyEventV2, ApiResult, Error, RequestIdContext> {
  return {
    name: 'httpRequestId',
    before: (request) => {
      const headers = lowerHeaders(request.event.headers);
      const given = headers[REQUEST_ID_HEADER];
      if (given !== undefined && given.length > MAX_REQUEST_ID_LENGTH) {
        request.context.requestId = newRequestId();
        // An early response: nothing after this middleware runs, so it carries its id itself.
        const result = errorResult(
          431,
          `X-Openstack-Request-Id is longer than ${MAX_REQUEST_ID_LENGTH} characters.`,
          headers.accept,
        );
        result.headers = { ...(result.headers ?? {}), [REQUEST_ID_HEADER]: request.context.requestId };
        return result;
      }
      request.context.requestId = given || newRequestId();
      return undefined;
    },
    after: stamp,
    // Registered before the error renderer, so this runs after it and stamps its answer.
    onError: stamp,
  };
}

export function invocationId(): MiddlewareObj<unknown, unknown, Error, RequestIdContext> {
  return {
    name: 'invocationId',
    before: (request) => {
      request.context.requestId = request.context.awsRequestId || newRequestId();
    },
  };
}
