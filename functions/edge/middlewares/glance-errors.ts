/**
 * Glance error rendering: the one place where a domain error becomes an HTTP status. Each
 * `ErrorKind` has its status here; anything else is a bare 500 that leaks nothing. Register it
 * last with `.use()`: middy runs `onError` innermost-out, so the last one registered renders first
 * and the middlewares registered before it (the request id) still see the rendered response.
 */
import type { MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import {
  type ErrorKind,
  HangarError,
  RangeNotSatisfiableError,
  UnsupportedMediaTypeError,
} from '#core/kernel/errors';
import { logger } from '#platform/logger';
import { lowerHeaders } from './headers.ts';

type ApiResult = APIGatewayProxyStructuredResultV2;

const STATUS: Record<ErrorKind, number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  gone: 410,
  too_large: 413,
  unsupported_media_type: 415,
  range_not_satisfiable: 416,
  unavailable: 503,
};

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  410: 'Gone',
  413: 'Request Entity Too Large',
  415: 'Unsupported Media Type',
  416: 'Requested Range Not Satisfiable',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Glance (webob) answers errors as JSON when the client accepts JSON, as HTML when it accepts
 * HTML or anything (or says nothing), and as plain text otherwise (`Accept: text/plain`).
 */
export function errorResult(
  status: number,
  message: string,
  accept: string | undefined,
  extra: Record<string, string> = {},
): ApiResult {
  const title = TITLES[status] ?? 'Error';
  const code = `${status} ${title}`;
  if (accept?.includes('application/json')) {
    return {
      statusCode: status,
      headers: { 'content-type': 'application/json', ...extra },
      body: JSON.stringify({ message: message, code, title }),
    };
  }
  if (accept !== undefined && !/\*\/\*|text\/\*|text\/html/.test(accept)) {
    return {
      statusCode: status,
      headers: { 'content-type': 'text/plain; charset=UTF-8', ...extra },
      body: `${code}\n\n${message}\n\n   `,
    };
  }
  const body = `<html>\n <head>\n  <title>${code}</title>\n </head>\n <body>\n  <h1>${code}</h1>\n  ${escapeHtml(message)}<br /><br />\n\n\n\n </body>\n</html>`;
  return { statusCode: status, headers: { 'content-type': 'text/html; charset=UTF-8', ...extra }, body };
}

export function errorToResult(error: unknown, accept: string | undefined, requestId: string): ApiResult {
  if (error instanceof HangarError) {
    const status = STATUS[error.kind];
    const extra: Record<string, string> = {};
    if (error instanceof UnsupportedMediaTypeError && error.acceptPatch)
      extra['accept-patch'] = error.acceptPatch.join(', ');
    if (error instanceof RangeNotSatisfiableError) extra['content-range'] = `bytes */${error.size}`;
    if (status >= 500) logger.error('request failed', { requestId, error });
    else logger.info('request refused', { requestId, status, reason: error.message });
    return errorResult(status, error.message, accept, extra);
  }
  // Never leak internals in a 500.
  logger.error('unhandled error', { requestId, error });
  return errorResult(
    500,
    'The server has either erred or is incapable of performing the requested operation.',
    accept,
  );
}

/** Renders whatever the handler or an earlier middleware threw as Glance's error answer. */
export function glanceErrors(): MiddlewareObj<APIGatewayProxyEventV2, ApiResult, Error, Context> {
  return {
    name: 'glanceErrors',
    onError: (request) => {
      // Set by httpRequestId, registered first (not imported: it renders its 431 with errorResult).
      const { requestId } = request.context as { requestId?: string };
      request.response = errorToResult(
        request.error,
        lowerHeaders(request.event.headers).accept,
        requestId ?? '',
      );
    },
  };
}
