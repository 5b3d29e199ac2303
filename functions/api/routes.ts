/**
 * Every HTTP route and the Lambda function module that serves it. The embedded gateway
 * (local/gateway.ts) and the CDK app (infra/) are both built from this one table.
 * A module `functions/api/<fn>.ts` exports `handler`, which dispatches on `event.routeKey`.
 */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD';

export interface RouteSpec {
  readonly method: HttpMethod;
  /** API Gateway path syntax: `{name}` for one segment. */
  readonly path: string;
  /** Module under functions/api/ (one Lambda function each). */
  readonly fn: string;
  /** false for the unauthenticated version documents. */
  readonly auth?: boolean;
}

export const ROUTES: readonly RouteSpec[] = [
  { method: 'GET', path: '/', fn: 'versions', auth: false },
  { method: 'GET', path: '/versions', fn: 'versions', auth: false },
  { method: 'GET', path: '/v2/schemas/{schema}', fn: 'schemas' },
  { method: 'POST', path: '/v2/images', fn: 'images' },
  { method: 'GET', path: '/v2/images', fn: 'images' },
  { method: 'GET', path: '/v2/images/{image_id}', fn: 'images' },
  { method: 'PATCH', path: '/v2/images/{image_id}', fn: 'images' },
  { method: 'DELETE', path: '/v2/images/{image_id}', fn: 'images' },
  { method: 'POST', path: '/v2/images/{image_id}/actions/{action}', fn: 'images' },
  { method: 'PUT', path: '/v2/images/{image_id}/tags/{tag}', fn: 'images' },
  { method: 'DELETE', path: '/v2/images/{image_id}/tags/{tag}', fn: 'images' },
  { method: 'PUT', path: '/v2/images/{image_id}/file', fn: 'image-data' },
  { method: 'GET', path: '/v2/images/{image_id}/file', fn: 'image-data' },
];

export function routeKey(route: Pick<RouteSpec, 'method' | 'path'>): string {
  return `${route.method} ${route.path}`;
}

export interface RouteMatch {
  route: RouteSpec;
  pathParameters: Record<string, string>;
}

const compiled = new Map<RouteSpec, RegExp>();

function patternOf(route: RouteSpec): RegExp {
  let re = compiled.get(route);
  if (!re) {
    const source = route.path
      .split('/')
      .map((segment) =>
        segment.startsWith('{')
          ? `(?<${segment.slice(1, -1)}>[^/]+)`
          : segment.replace(/[.*+?^$()|[\]\\]/g, '\\$&'),
      )
      .join('/');
    re = new RegExp(`^${source}$`);
    compiled.set(route, re);
  }
  return re;
}

/** Finds the route for a method and raw path; `methodMismatch` tells a 405 from a 404. */
export function matchRoute(method: string, rawPath: string): RouteMatch | { methodMismatch: boolean } {
  let pathMatched = false;
  for (const route of ROUTES) {
    const match = patternOf(route).exec(rawPath);
    if (!match) continue;
    pathMatched = true;
    if (route.method !== method) continue;
    return { route, pathParameters: { ...(match.groups ?? {}) } };
  }
  return { methodMismatch: pathMatched };
}
