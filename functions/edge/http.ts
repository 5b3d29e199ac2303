/**
 * The HTTP edge shared by every API handler: a middy stack (middlewares/) that gives each
 * request an X-Openstack-Request-Id, a log context naming it and its caller, the caller's
 * principal, a JSON body parser, and Glance's error shapes for domain errors. Domain code never
 * sees HTTP status codes; middlewares/glance-errors.ts is where they are decided.
 */
import type { Readable } from 'node:stream';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { NotFoundError } from '#core/kernel/errors';
import type { Principal } from '#core/kernel/principal';
import { glanceErrors } from './middlewares/glance-errors.ts';
import { lowerHeaders } from './middlewares/headers.ts';
import { type JsonBodyContext, jsonBody } from './middlewares/json-body.ts';
import { type PrincipalContext, principal } from './middlewares/principal.ts';
import { httpRequestId, type RequestIdContext } from './middlewares/request-id.ts';
import { inLogContext, requestLogging } from './middlewares/request-logging.ts';
import { attachResponseBody, requestBodyStream } from './streams.ts';

// Kept importable from here: the local gateway renders its own errors, the fuzz tests the depth.
export { errorResult, errorToResult } from './middlewares/glance-errors.ts';
export { jsonDepth } from './middlewares/json-body.ts';

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

/** What the middlewares put in the context before the handler runs. */
type HttpContext = RequestIdContext & PrincipalContext & JsonBodyContext;

/** Like Python's unquote, which Glance's router uses: a malformed escape stays as it is. */
function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
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

export interface HandlerOptions {
  /** false for the unauthenticated endpoints (versions). */
  auth?: boolean;
}

function apiRequest(event: APIGatewayProxyEventV2, context: HttpContext): ApiRequest {
  const headers = lowerHeaders(event.headers);
  const host = headers['x-forwarded-host'] ?? headers.host ?? event.requestContext?.domainName ?? 'localhost';
  const proto = headers['x-forwarded-proto'] ?? 'http';
  return {
    method: event.requestContext?.http?.method ?? 'GET',
    path: event.rawPath,
    params: Object.fromEntries(
      Object.entries(event.pathParameters ?? {}).map(([k, v]) => [k, decodePathSegment(v ?? '')]),
    ),
    query: new QueryParams(event.rawQueryString ?? ''),
    rawQuery: event.rawQueryString ?? '',
    headers,
    principal: context.principal,
    requestId: context.requestId,
    origin: `${proto}://${host}`,
    event,
    json: context.json,
    stream: () => requestBodyStream(event),
  };
}

/** Wraps a use-case function as a Lambda handler for API Gateway HTTP API (payload 2.0). */
export function httpHandler(
  fn: (request: ApiRequest) => Promise<ApiResponse>,
  options: HandlerOptions = {},
): Handler {
  // middy gives the same wiring on Lambda and locally; timeoutEarlyInMillis 0 because the
  // local gateway passes no real Lambda context. The error renderer goes last (see its file).
  const handler = middy<APIGatewayProxyEventV2, ApiResult, Error, HttpContext>({ timeoutEarlyInMillis: 0 })
    .use(httpRequestId())
    .use(requestLogging())
    .use(principal({ required: options.auth ?? true }))
    .use(jsonBody())
    .use(glanceErrors())
    .handler(async (event, context) => toResult(await fn(apiRequest(event, context))));
  return inLogContext(handler) as Handler;
}

/** One route's use case. */
export type Route = (request: ApiRequest) => Promise<ApiResponse>;

export interface RouteTable {
  /** The route keys the module serves: it exports them as ROUTE_KEYS (test/unit/routes.test.ts). */
  readonly routeKeys: readonly string[];
  /** The module's Lambda handler: dispatches on `event.routeKey`, 404 for a key not in the table. */
  readonly handler: Handler;
}

/** An api module's routes by key ('GET /v2/images/{image_id}'), as one handler and its keys. */
export function routeTable(
  routes: Readonly<Record<string, Route>>,
  options: HandlerOptions = {},
): RouteTable {
  return {
    routeKeys: Object.keys(routes),
    handler: httpHandler(async (request) => {
      const key = request.event.routeKey;
      const route = Object.hasOwn(routes, key) ? routes[key] : undefined;
      if (!route) throw new NotFoundError('The resource could not be found.');
      return route(request);
    }, options),
  };
}
