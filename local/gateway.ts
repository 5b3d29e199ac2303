/**
 * A stand-in for API Gateway's HTTP API: turns each HTTP request into a payload-2.0 event, calls
 * the Lambda handler of the matching route (functions/api/<fn>.ts) in-process, and writes the
 * result back. Unlike API Gateway it never buffers bodies: image data streams through the
 * side channels of functions/edge/streams.ts in both directions.
 */
import { randomUUID } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { FileBody } from '#adapters/fs/blob-store';
import { type HttpMethod, matchRoute, ROUTES, type RouteSpec, routeKey } from '#api/routes';
import { errorResult } from '#edge/http';
import { attachRequestBody, responseBodyStream } from '#edge/streams';
import { logger } from '#platform/logger';
import { type AgentSocketHub, serveAgentSockets } from './agent-sockets.ts';
import { type ConsoleSite, isConsolePath, serveConsole } from './console-static.ts';
import { isIdentityPath, serveIdentity } from './identity-proxy.ts';

type LambdaHandler = (event: APIGatewayProxyEventV2, context: Context) => Promise<unknown>;

export interface GatewayOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Resolves a function module name to its handler (tests may swap modules in). */
  loadHandler?: (fn: string) => Promise<LambdaHandler>;
  /** Serves the agents' notification socket (local/agent-sockets.ts) for this hub's notifications. */
  agentSockets?: AgentSocketHub;
  /** The built web console served at /console/ (default console/dist, local/console-static.ts). */
  consoleDir?: string;
  /** Origins the console may connect to besides its own (the embedded S3 of presigned part URLs). */
  consoleConnect?: readonly string[];
}

export interface Gateway {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Stops accepting, lets in-flight requests finish for up to graceMs, then cuts them. */
  close(graceMs?: number): Promise<void>;
}

const handlerCache = new Map<string, Promise<LambdaHandler>>();

/** Imports functions/api/<fn>.ts once; a failed import is not cached, so a fixed file loads next time. */
export function loadApiHandler(fn: string): Promise<LambdaHandler> {
  if (!/^[a-z0-9-]+$/.test(fn)) return Promise.reject(new Error(`bad function name ${fn}`));
  let loaded = handlerCache.get(fn);
  if (!loaded) {
    const url = new URL(`../functions/api/${fn}.ts`, import.meta.url).href;
    loaded = import(url).then((module: { handler?: unknown }) => {
      if (typeof module.handler !== 'function') throw new Error(`functions/api/${fn}.ts exports no handler`);
      return module.handler as LambdaHandler;
    });
    loaded.catch(() => handlerCache.delete(fn));
    handlerCache.set(fn, loaded);
  }
  return loaded;
}

const VERSIONS_ROUTE = ROUTES.find((r) => r.method === 'GET' && r.path === '/');
const METHODS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'];

/** Glance's version negotiation: an unversioned or unknown-version path gets the versions document. */
function isVersionedPath(path: string): boolean {
  return /^\/v[12](\/|$)/.test(path);
}

function allowedMethods(path: string): string[] {
  return METHODS.filter((method) => 'route' in matchRoute(method, path));
}

/** API Gateway joins repeated headers with commas and moves cookies into their own field. */
function eventHeaders(req: IncomingMessage): { headers: Record<string, string>; cookies?: string[] } {
  const headers: Record<string, string> = {};
  let cookies: string[] | undefined;
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (!values) continue;
    if (name === 'cookie') {
      cookies = values
        .flatMap((v) => v.split(';'))
        .map((c) => c.trim())
        .filter(Boolean);
      continue;
    }
    headers[name] = values.join(',');
  }
  return cookies ? { headers, cookies } : { headers };
}

function queryParameters(raw: string): Record<string, string> | undefined {
  if (!raw) return undefined;
  const out: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(raw)) out[key] = key in out ? `${out[key]},${value}` : value;
  return out;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * API Gateway's requestContext.time format: 12/Mar/2020:19:03:58 +0000. Not toLocaleString: that
 * consults ICU on every call and was 2.4% of the gateway's CPU under a show load.
 */
export function clfTime(date: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${p(date.getUTCHours())}:${p(date.getUTCMinutes())}:${p(date.getUTCSeconds())} +0000`;
}

function buildEvent(
  req: IncomingMessage,
  route: RouteSpec,
  pathParameters: Record<string, string>,
  rawPath: string,
  rawQueryString: string,
): APIGatewayProxyEventV2 {
  const { headers, cookies } = eventHeaders(req);
  const now = new Date();
  const key = routeKey(route);
  const domainName = headers.host ?? 'localhost';
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey: key,
    rawPath,
    rawQueryString,
    headers,
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      domainName,
      domainPrefix: domainName.split('.')[0] ?? domainName,
      http: {
        method: req.method ?? 'GET',
        path: rawPath,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey: key,
      stage: '$default',
      time: clfTime(now),
      timeEpoch: now.getTime(),
    },
    // The body stays on the socket (attachRequestBody below); API Gateway would have base64'd it.
    isBase64Encoded: false,
  };
  if (cookies) event.cookies = cookies;
  const query = queryParameters(rawQueryString);
  if (query) event.queryStringParameters = query;
  if (Object.keys(pathParameters).length > 0) event.pathParameters = pathParameters;
  attachRequestBody(event, req);
  return event;
}

/** Enough of a Lambda context for middy and for handlers that check their remaining time. */
function fakeContext(fn: string, requestId: string): Context {
  // Local requests are not cut off; API Gateway's 30 s limit would break large uploads here.
  const deadline = Date.now() + 15 * 60 * 1000;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: `hangar-${fn}`,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:000000000000:function:hangar-${fn}`,
    memoryLimitInMB: '1024',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/hangar-${fn}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

function asStructured(result: unknown): APIGatewayProxyStructuredResultV2 {
  // Payload 2.0 lets a handler return a bare string (or any JSON) to mean a 200 JSON body.
  if (result && typeof result === 'object' && 'statusCode' in result)
    return result as APIGatewayProxyStructuredResultV2;
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: typeof result === 'string' ? result : JSON.stringify(result),
  };
}

async function writeResult(
  req: IncomingMessage,
  res: ServerResponse,
  result: APIGatewayProxyStructuredResultV2,
): Promise<void> {
  const stream = responseBodyStream(result);
  res.statusCode = result.statusCode ?? 200;
  for (const [name, value] of Object.entries(result.headers ?? {})) res.setHeader(name, String(value));
  if (result.cookies?.length) res.setHeader('set-cookie', result.cookies);
  // An unread upload (e.g. refused with 4xx) is not drained byte by byte: close the connection instead.
  if (hasBody(req) && !req.complete) res.setHeader('connection', 'close');

  if (stream) {
    if (req.method === 'HEAD') {
      stream.destroy();
      res.end();
      return;
    }
    // A stored file writes itself (fs blob store); anything else is piped, which gives
    // backpressure and destroys the source if the client goes away.
    const sending = stream instanceof FileBody ? stream.sendTo(res) : pipeline(stream, res);
    await sending.catch((error: unknown) => {
      if (!res.destroyed && !res.writableEnded) res.destroy(error as Error);
      logger.info('response stream ended early', { error });
    });
    return;
  }
  // 204 and 304 must carry neither a body nor a Content-Length.
  const bodyless = res.statusCode === 204 || res.statusCode === 304;
  const body =
    result.body === undefined || bodyless
      ? undefined
      : Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8');
  if (body && !res.hasHeader('content-length')) res.setHeader('content-length', body.length);
  res.end(body);
}

function requestIdHeaders(): Record<string, string> {
  return { 'x-openstack-request-id': `req-${randomUUID()}` };
}

/**
 * The origin-form target (path and query) of a request line. An absolute-form target
 * (`GET http://host/v2/images`, which servers must accept, RFC 9112 §3.2.2) is routed by its
 * path, as API Gateway does; any other form (`*`, garbage) is not a resource: null.
 */
export function originForm(target: string): string | null {
  if (target.startsWith('/')) return target;
  const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(target);
  if (!absolute) return null;
  const rest = target.slice(absolute[0].length).replace(/#.*$/s, '');
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** A raw HTTP/1.1 error answer for a socket that has no ServerResponse (CONNECT, parse errors). */
function rawErrorResponse(
  status: number,
  message: string,
  accept: string | undefined,
  extra: Record<string, string> = {},
): string {
  const result = errorResult(status, message, accept, { ...requestIdHeaders(), ...extra });
  const body = Buffer.from(result.body ?? '', 'utf8');
  const reason = STATUS_CODES[status] ?? 'Error';
  const headers = { ...(result.headers ?? {}), 'content-length': String(body.length), connection: 'close' };
  const head = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return `HTTP/1.1 ${status} ${reason}\r\n${head}\r\n${body.toString('utf8')}`;
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  loadHandler: (fn: string) => Promise<LambdaHandler>,
  site: ConsoleSite,
): Promise<void> {
  const method = (req.method ?? 'GET').toUpperCase();
  const accept = req.headers.accept;
  const rawUrl = originForm(req.url ?? '/');
  if (rawUrl === null) {
    await writeResult(req, res, errorResult(400, 'Bad request target.', accept, requestIdHeaders()));
    return;
  }
  const q = rawUrl.indexOf('?');
  const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
  const rawQueryString = q === -1 ? '' : rawUrl.slice(q + 1);
  // The console's static files, as CloudFront serves them beside the API on AWS (same origin).
  if (isConsolePath(rawPath)) {
    await serveConsole(req, res, rawPath, site);
    return;
  }
  // Keystone's password sign-in for the console, on the same origin (keystone mode only).
  if (isIdentityPath(rawPath)) {
    await serveIdentity(req, res, rawPath);
    return;
  }

  let match = matchRoute(method, rawPath);
  if (!('route' in match) && !match.methodMismatch && !isVersionedPath(rawPath) && VERSIONS_ROUTE) {
    match = { route: VERSIONS_ROUTE, pathParameters: {} };
  }
  if (!('route' in match)) {
    const result = match.methodMismatch
      ? errorResult(405, `The method ${method} is not allowed for this resource.`, accept, {
          ...requestIdHeaders(),
          allow: allowedMethods(rawPath).join(', '),
        })
      : errorResult(404, 'The resource could not be found.', accept, requestIdHeaders());
    await writeResult(req, res, result);
    return;
  }

  const { route, pathParameters } = match;
  const event = buildEvent(req, route, pathParameters, rawPath, rawQueryString);
  const started = Date.now();
  let result: APIGatewayProxyStructuredResultV2;
  try {
    const handler = await loadHandler(route.fn);
    result = asStructured(await handler(event, fakeContext(route.fn, event.requestContext.requestId)));
  } catch (error) {
    // httpHandler maps every error itself; reaching here means a module failed to load or is not wrapped.
    logger.error('handler failed', {
      requestId: event.requestContext.requestId,
      fn: route.fn,
      routeKey: event.routeKey,
      error,
    });
    result = errorResult(
      500,
      'The server has either erred or is incapable of performing the requested operation.',
      accept,
      requestIdHeaders(),
    );
  }
  await writeResult(req, res, result);
  // Outside the handler's log context: name the request by the id its answer carries.
  const answered = Object.entries(result.headers ?? {}).find(
    ([name]) => name.toLowerCase() === 'x-openstack-request-id',
  );
  logger.debug('request', {
    requestId: answered?.[1] ?? event.requestContext.requestId,
    method,
    path: rawPath,
    routeKey: event.routeKey,
    status: res.statusCode,
    ms: Date.now() - started,
  });
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const loadHandler = options.loadHandler ?? loadApiHandler;
  const site: ConsoleSite = {
    ...(options.consoleDir ? { directory: options.consoleDir } : {}),
    ...(options.consoleConnect ? { connect: options.consoleConnect } : {}),
  };
  const server: Server = createServer((req, res) => {
    handle(req, res, loadHandler, site).catch((error: unknown) => {
      logger.error('gateway failure', { error });
      if (!res.headersSent) {
        res.statusCode = 500;
        res.end();
      } else res.destroy();
    });
  });
  // Node drops a CONNECT without a word unless someone listens; no route takes it (API Gateway
  // has none either).
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    logger.info('request refused', { method: req.method, status: 405 });
    socket.end(
      rawErrorResponse(
        405,
        `The method ${req.method ?? 'CONNECT'} is not allowed for this resource.`,
        req.headers.accept,
        { allow: METHODS.join(', ') },
      ),
    );
  });
  // A request the HTTP parser refuses (a malformed chunked body, a bad header) is the client's
  // fault: a warning, and Glance's error shape instead of Node's bare 400.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    logger.warn('malformed request', { code: error.code, reason: error.message });
    // Node's own rule: only answer if no response has started on this socket.
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const status =
      error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    socket.end(rawErrorResponse(status, `Malformed request: ${error.code ?? 'parse error'}.`, undefined));
  });
  const sockets = options.agentSockets ? serveAgentSockets(server, options.agentSockets) : undefined;
  // Uploads of many GiB take longer than Node's 5-minute default request timeout.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  // A wildcard bind is reached through loopback; the URL is for humans and tests to use.
  const reachable =
    address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address;
  const hostForUrl = reachable.includes(':') ? `[${reachable}]` : reachable;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostForUrl}:${address.port}`,
    host: address.address,
    port: address.port,
    close(graceMs = 2000) {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
        // Upgraded sockets are no longer the HTTP server's to close, but close() waits for them.
        sockets?.close();
      });
      return closing;
    },
  };
}
