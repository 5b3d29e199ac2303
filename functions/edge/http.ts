/**
 * The HTTP edge shared by every API handler: a middy stack that gives each request an
 * X-Openstack-Request-Id, resolves the caller, and maps domain errors to Glance's error shapes.
 * Domain code never sees HTTP status codes; this file is where they are decided.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { resolvePrincipal } from '#adapters/auth/authenticator';
import {
  BadRequestError,
  type ErrorKind,
  HangarError,
  RangeNotSatisfiableError,
  TooLargeError,
  UnsupportedMediaTypeError,
} from '#core/kernel/errors';
import type { Principal } from '#core/kernel/principal';
import { logger } from '../platform/logger.ts';
import { attachResponseBody, requestBodyBuffer, requestBodyStream } from './streams.ts';

export class QueryParams {
  readonly pairs: ReadonlyArray<readonly [string, string]>;
  constructor(raw: string) {
    this.pairs = [...new URLSearchParams(raw)];
  }
  get(key: string): string | undefined {
    return this.pairs.find(([k]) => k === key)?.[1];
  }
  getAll(key: string): string[] {
    return this.pairs.filter(([k]) => k === key).map(([, v]) => v);
  }
  has(key: string): boolean {
    return this.pairs.some(([k]) => k === key);
  }
  keys(): string[] {
    return [...new Set(this.pairs.map(([k]) => k))];
  }
}

export interface ApiRequest {
  readonly method: string;
  readonly path: string;
  readonly params: Readonly<Record<string, string>>;
  readonly query: QueryParams;
  readonly rawQuery: string;
  /** Header names in lower case. */
  readonly headers: Readonly<Record<string, string>>;
  readonly principal: Principal;
  readonly requestId: string;
  /** Scheme and host the client used, for Location headers. */
  readonly origin: string;
  readonly event: APIGatewayProxyEventV2;
  json(): Promise<unknown>;
  stream(): Readable;
}

export interface ApiResponse {
  status: number;
  headers?: Record<string, string>;
  json?: unknown;
  text?: string;
  stream?: Readable;
}

type ApiResult = APIGatewayProxyStructuredResultV2;
type Handler = (event: APIGatewayProxyEventV2, context: Context) => Promise<ApiResult>;

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

/** JSON documents (create, PATCH) are small; image data never goes through json(). */
const MAX_JSON_BODY = 1024 * 1024;

/**
 * No Glance document nests deeper than a few levels. A deeper body is refused before it is
 * parsed, so nothing that walks it (validation, error messages) can run out of stack.
 */
const MAX_JSON_DEPTH = 100;

/** The deepest nesting of arrays and objects in JSON text, counted without recursion. */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

/** Like Python's unquote, which Glance's router uses: a malformed escape stays as it is. */
function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function lowerHeaders(headers: APIGatewayProxyEventV2['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers ?? {}))
    if (value !== undefined) out[key.toLowerCase()] = value;
  return out;
}

function toResult(response: ApiResponse): ApiResult {
  const headers: Record<string, string> = { ...(response.headers ?? {}) };
  if (response.json !== undefined) {
    headers['content-type'] ??= 'application/json';
    return { statusCode: response.status, headers, body: JSON.stringify(response.json) };
  }
  if (response.stream) {
    return attachResponseBody({ statusCode: response.status, headers }, response.stream);
  }
  if (response.text !== undefined) {
    headers['content-type'] ??= 'text/plain; charset=UTF-8';
    return { statusCode: response.status, headers, body: response.text };
  }
  return { statusCode: response.status, headers };
}

/** Glance's max_request_id_length. */
const MAX_REQUEST_ID_LENGTH = 64;

export interface HandlerOptions {
  /** false for the unauthenticated endpoints (versions). */
  auth?: boolean;
}

/** Wraps a use-case function as a Lambda handler for API Gateway HTTP API (payload 2.0). */
export function httpHandler(
  fn: (request: ApiRequest) => Promise<ApiResponse>,
  options: HandlerOptions = {},
): Handler {
  const needsAuth = options.auth ?? true;
  const anonymous: Principal = { project: '', user: '', roles: [], isAdmin: false };

  const core = async (event: APIGatewayProxyEventV2): Promise<ApiResult> => {
    const headers = lowerHeaders(event.headers);
    // Like Glance, a caller's request id is kept (tracing across services), within a length cap.
    const given = headers['x-openstack-request-id'];
    if (given !== undefined && given.length > MAX_REQUEST_ID_LENGTH) {
      const requestId = `req-${randomUUID()}`;
      const result = errorResult(
        431,
        `X-Openstack-Request-Id is longer than ${MAX_REQUEST_ID_LENGTH} characters.`,
        headers.accept,
      );
      result.headers = { ...(result.headers ?? {}), 'x-openstack-request-id': requestId };
      return result;
    }
    const requestId = given || `req-${randomUUID()}`;
    let result: ApiResult;
    try {
      const principal = needsAuth ? await resolvePrincipal(event, headers) : anonymous;
      const host =
        headers['x-forwarded-host'] ?? headers.host ?? event.requestContext?.domainName ?? 'localhost';
      const proto = headers['x-forwarded-proto'] ?? 'http';
      const request: ApiRequest = {
        method: event.requestContext?.http?.method ?? 'GET',
        path: event.rawPath,
        params: Object.fromEntries(
          Object.entries(event.pathParameters ?? {}).map(([k, v]) => [k, decodePathSegment(v ?? '')]),
        ),
        query: new QueryParams(event.rawQueryString ?? ''),
        rawQuery: event.rawQueryString ?? '',
        headers,
        principal,
        requestId,
        origin: `${proto}://${host}`,
        event,
        json: async () => {
          const buffer = await requestBodyBuffer(event, MAX_JSON_BODY).catch((error: unknown) => {
            // requestBodyBuffer's RangeError means the body passed the limit: the client's fault.
            if (error instanceof RangeError)
              throw new TooLargeError(`The request body is larger than ${MAX_JSON_BODY} bytes.`);
            // The body's stream failed: the client went away or sent a malformed (chunked) body.
            throw new BadRequestError('The request body was interrupted or malformed before it ended.');
          });
          const text = buffer.toString('utf8');
          if (jsonDepth(text) > MAX_JSON_DEPTH)
            throw new BadRequestError(
              `Malformed JSON in request body: nested deeper than ${MAX_JSON_DEPTH} levels.`,
            );
          try {
            return JSON.parse(text || 'null');
          } catch {
            throw new BadRequestError('Malformed JSON in request body.');
          }
        },
        stream: () => requestBodyStream(event),
      };
      result = toResult(await fn(request));
    } catch (error) {
      result = errorToResult(error, headers.accept, requestId);
    }
    result.headers = { ...(result.headers ?? {}), 'x-openstack-request-id': requestId };
    return result;
  };

  // middy gives the same wiring on Lambda and locally; timeoutEarlyInMillis 0 because the
  // local gateway passes no real Lambda context.
  return middy<APIGatewayProxyEventV2, ApiResult>({ timeoutEarlyInMillis: 0 }).handler(
    core,
  ) as unknown as Handler;
}
