/**
 * Every HTTP route and the Lambda function module that serves it. The embedded gateway
 * (local/gateway.ts) and the CDK app (infra/) are both built from this one table.
 * A module `functions/api/<fn>.ts` exports `handler`, which dispatches on `event.routeKey`, and
 * `ROUTE_KEYS`, the keys it serves: test/unit/routes.test.ts proves this table lists exactly those.
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
  // oslo.middleware's healthcheck, which Glance's pipeline serves (load balancers probe it).
  { method: 'GET', path: '/healthcheck', fn: 'versions', auth: false },
  { method: 'GET', path: '/v2/schemas/{schema}', fn: 'schemas' },
  { method: 'GET', path: '/v2/schemas/metadefs/{schema}', fn: 'schemas' },
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
  { method: 'POST', path: '/v2/images/{image_id}/members', fn: 'members' },
  { method: 'GET', path: '/v2/images/{image_id}/members', fn: 'members' },
  { method: 'GET', path: '/v2/images/{image_id}/members/{member_id}', fn: 'members' },
  { method: 'PUT', path: '/v2/images/{image_id}/members/{member_id}', fn: 'members' },
  { method: 'DELETE', path: '/v2/images/{image_id}/members/{member_id}', fn: 'members' },
  { method: 'GET', path: '/v2/info/import', fn: 'image-import' },
  { method: 'GET', path: '/v2/info/usage', fn: 'image-import' },
  // Hangar's own: how to send image bytes here (put, or multipart where the API cannot stream).
  { method: 'GET', path: '/v2/info/upload', fn: 'image-import' },
  { method: 'PUT', path: '/v2/images/{image_id}/stage', fn: 'image-import' },
  { method: 'POST', path: '/v2/images/{image_id}/import', fn: 'image-import' },
  // Hangar's own: presigned S3 multipart uploads for bodies API Gateway cannot carry.
  { method: 'POST', path: '/v2/images/{image_id}/multipart-upload', fn: 'image-import' },
  { method: 'POST', path: '/v2/images/{image_id}/multipart-upload/complete', fn: 'image-import' },
  { method: 'POST', path: '/v2/images/{image_id}/multipart-upload/abort', fn: 'image-import' },
  { method: 'POST', path: '/v2/tasks', fn: 'tasks' },
  { method: 'GET', path: '/v2/tasks', fn: 'tasks' },
  { method: 'GET', path: '/v2/tasks/{task_id}', fn: 'tasks' },
  { method: 'GET', path: '/v2/images/{image_id}/tasks', fn: 'tasks' },
  // Glance's metadata definitions catalogue (core/metadefs/metadefs.ts).
  { method: 'GET', path: '/v2/metadefs/namespaces', fn: 'metadefs' },
  { method: 'POST', path: '/v2/metadefs/namespaces', fn: 'metadefs' },
  { method: 'GET', path: '/v2/metadefs/namespaces/{namespace}', fn: 'metadefs' },
  { method: 'PUT', path: '/v2/metadefs/namespaces/{namespace}', fn: 'metadefs' },
  { method: 'DELETE', path: '/v2/metadefs/namespaces/{namespace}', fn: 'metadefs' },
  { method: 'GET', path: '/v2/metadefs/namespaces/{namespace}/objects', fn: 'metadefs' },
  { method: 'POST', path: '/v2/metadefs/namespaces/{namespace}/objects', fn: 'metadefs' },
  { method: 'DELETE', path: '/v2/metadefs/namespaces/{namespace}/objects', fn: 'metadefs' },
  { method: 'GET', path: '/v2/metadefs/namespaces/{namespace}/objects/{object_name}', fn: 'metadefs' },
  { method: 'PUT', path: '/v2/metadefs/namespaces/{namespace}/objects/{object_name}', fn: 'metadefs' },
  { method: 'DELETE', path: '/v2/metadefs/namespaces/{namespace}/objects/{object_name}', fn: 'metadefs' },
  { method: 'GET', path: '/v2/metadefs/namespaces/{namespace}/properties', fn: 'metadefs' },
  { method: 'POST', path: '/v2/metadefs/namespaces/{namespace}/properties', fn: 'metadefs' },
  { method: 'DELETE', path: '/v2/metadefs/namespaces/{namespace}/properties', fn: 'metadefs' },
  { method: 'GET', path: '/v2/metadefs/namespaces/{namespace}/properties/{property_name}', fn: 'metadefs' },
  { method: 'PUT', path: '/v2/metadefs/namespaces/{namespace}/properties/{property_name}', fn: 'metadefs' },
  {
    method: 'DELETE',
    path: '/v2/metadefs/namespaces/{namespace}/properties/{property_name}',
    fn: 'metadefs',
  },
  { method: 'GET', path: '/v2/metadefs/namespaces/{namespace}/tags', fn: 'metadefs' },
  { method: 'POST', path: '/v2/metadefs/namespaces/{namespace}/tags', fn: 'metadefs' },
  { method: 'DELETE', path: '/v2/metadefs/namespaces/{namespace}/tags', fn: 'metadefs' },
  { method: 'GET', path: '/v2/metadefs/namespaces/{namespace}/tags/{tag_name}', fn: 'metadefs' },
  { method: 'POST', path: '/v2/metadefs/namespaces/{namespace}/tags/{tag_name}', fn: 'metadefs' },
  { method: 'PUT', path: '/v2/metadefs/namespaces/{namespace}/tags/{tag_name}', fn: 'metadefs' },
  { method: 'DELETE', path: '/v2/metadefs/namespaces/{namespace}/tags/{tag_name}', fn: 'metadefs' },
  { method: 'GET', path: '/v2/metadefs/resource_types', fn: 'metadefs' },
  { method: 'GET', path: '/v2/metadefs/namespaces/{namespace}/resource_types', fn: 'metadefs' },
  { method: 'POST', path: '/v2/metadefs/namespaces/{namespace}/resource_types', fn: 'metadefs' },
  {
    method: 'DELETE',
    path: '/v2/metadefs/namespaces/{namespace}/resource_types/{resource_type}',
    fn: 'metadefs',
  },
  // Hangar's own name:tag references (docs/references-api.md).
  { method: 'POST', path: '/v1/references', fn: 'references' },
  { method: 'GET', path: '/v1/references', fn: 'references' },
  { method: 'GET', path: '/v1/references/{ref}', fn: 'references' },
  { method: 'DELETE', path: '/v1/references/{ref}', fn: 'references' },
  { method: 'POST', path: '/v1/references/{ref}/move', fn: 'references' },
  { method: 'POST', path: '/v1/references/{ref}/rollback', fn: 'references' },
  { method: 'POST', path: '/v1/references/{ref}/publish', fn: 'references' },
  { method: 'GET', path: '/v1/publications/{id}', fn: 'references' },
  { method: 'GET', path: '/v1/references/{ref}/history', fn: 'references' },
  { method: 'GET', path: '/v1/names/{name}/retention', fn: 'references' },
  { method: 'PUT', path: '/v1/names/{name}/retention', fn: 'references' },
  { method: 'POST', path: '/v1/names/{name}/retention/apply', fn: 'references' },
  // Hangar's own builds: base + recipe -> image, tested and published (docs/builds-api.md).
  { method: 'POST', path: '/v1/builds', fn: 'builds' },
  { method: 'GET', path: '/v1/builds', fn: 'builds' },
  { method: 'GET', path: '/v1/builds/{build_id}', fn: 'builds' },
  // Hangar's own instances, and the host agents' hosts/jobs API (docs/instances-api.md).
  { method: 'POST', path: '/v1/instances', fn: 'instances' },
  { method: 'GET', path: '/v1/instances', fn: 'instances' },
  { method: 'GET', path: '/v1/instances/{instance_id}', fn: 'instances' },
  { method: 'POST', path: '/v1/instances/{instance_id}/actions/{action}', fn: 'instances' },
  { method: 'GET', path: '/v1/hosts', fn: 'hosts' },
  { method: 'GET', path: '/v1/hosts/{host_id}', fn: 'hosts' },
  { method: 'PUT', path: '/v1/hosts/{host_id}', fn: 'hosts' },
  { method: 'POST', path: '/v1/hosts/{host_id}/heartbeat', fn: 'hosts' },
  { method: 'POST', path: '/v1/hosts/{host_id}/jobs/claim', fn: 'hosts' },
  { method: 'GET', path: '/v1/hosts/{host_id}/instances', fn: 'hosts' },
  { method: 'POST', path: '/v1/hosts/{host_id}/instances/{instance_id}/observed', fn: 'hosts' },
  { method: 'POST', path: '/v1/jobs/{job_id}/heartbeat', fn: 'hosts' },
  { method: 'POST', path: '/v1/jobs/{job_id}/complete', fn: 'hosts' },
  { method: 'POST', path: '/v1/jobs/{job_id}/fail', fn: 'hosts' },
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
