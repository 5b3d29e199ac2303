/** The metadata definitions API (/v2/metadefs): namespaces and what they hold. Rules in core/metadefs/metadefs.ts. */
import type { ChildKind, ListParams, MetadefsService } from '#core/metadefs/metadefs';
import { services } from '#edge/compose';
import { type ApiRequest, type ApiResponse, type Route, routeTable } from '#edge/http';

const ns = (request: ApiRequest) => request.params.namespace ?? '';

function listParams(request: ApiRequest): ListParams {
  const params: ListParams = {};
  for (const key of ['limit', 'marker', 'sort_key', 'sort_dir', 'visibility', 'resource_types'] as const) {
    const value = request.query.get(key);
    if (value !== undefined) params[key] = value;
  }
  return params;
}

/** Glance's `first` and `next` links keep the request's query, without `marker`. */
function namespaceLinks(request: ApiRequest, next: string | undefined): Record<string, string> {
  const kept = request.query.pairs.filter(([key]) => key !== 'marker');
  const query = new URLSearchParams(kept.map(([k, v]): [string, string] => [k, v])).toString();
  const links: Record<string, string> = {
    first: `/v2/metadefs/namespaces${query ? `?${query}` : ''}`,
    schema: '/v2/schemas/metadefs/namespaces',
  };
  if (next !== undefined) {
    const withMarker = new URLSearchParams([
      ...kept.map(([k, v]): [string, string] => [k, v]),
      ['marker', next],
    ]);
    links.next = `/v2/metadefs/namespaces?${withMarker.toString()}`;
  }
  return links;
}

const ok = (json: unknown): ApiResponse => ({ status: 200, json });
const created = (json: unknown): ApiResponse => ({ status: 201, json });
const noContent: ApiResponse = { status: 204 };

/** One object's, property's or tag's call, given the namespace and the name from the path. */
type ChildCall = (
  metadefs: MetadefsService,
  request: ApiRequest,
  namespace: string,
  name: string,
) => Promise<unknown>;

/**
 * What objects, properties and tags answer alike under /v2/metadefs/namespaces/{namespace}/{plural}:
 * DELETE of them all, and GET, PUT and DELETE of one named by `{<kind>_name}`.
 */
function childRoutes(
  kind: ChildKind,
  plural: string,
  show: ChildCall,
  update: ChildCall,
): Record<string, Route> {
  const path = `/v2/metadefs/namespaces/{namespace}/${plural}`;
  const param = `${kind}_name`;
  const name = (request: ApiRequest) => request.params[param] ?? '';
  return {
    [`DELETE ${path}`]: async (request) => {
      await services().metadefs.deleteAllChildren(request.principal, ns(request), kind);
      return noContent;
    },
    [`GET ${path}/{${param}}`]: async (request) =>
      ok(await show(services().metadefs, request, ns(request), name(request))),
    [`PUT ${path}/{${param}}`]: async (request) =>
      ok(await update(services().metadefs, request, ns(request), name(request))),
    [`DELETE ${path}/{${param}}`]: async (request) => {
      await services().metadefs.deleteChild(request.principal, ns(request), kind, name(request));
      return noContent;
    },
  };
}

const routes = routeTable({
  'GET /v2/metadefs/namespaces': async (request) => {
    const page = await services().metadefs.listNamespaces(request.principal, listParams(request));
    return ok({ namespaces: page.namespaces, ...namespaceLinks(request, page.next) });
  },
  'POST /v2/metadefs/namespaces': async (request) => {
    const body = await services().metadefs.createNamespace(request.principal, await request.json());
    return {
      status: 201,
      json: body,
      headers: { location: `${request.origin}/v2/metadefs/namespaces/${String(body.namespace)}` },
    };
  },
  'GET /v2/metadefs/namespaces/{namespace}': async (request) =>
    ok(
      await services().metadefs.showNamespace(
        request.principal,
        ns(request),
        request.query.get('resource_type'),
      ),
    ),
  'PUT /v2/metadefs/namespaces/{namespace}': async (request) =>
    ok(await services().metadefs.updateNamespace(request.principal, ns(request), await request.json())),
  'DELETE /v2/metadefs/namespaces/{namespace}': async (request) => {
    await services().metadefs.deleteNamespace(request.principal, ns(request));
    return noContent;
  },

  'GET /v2/metadefs/namespaces/{namespace}/objects': async (request) =>
    ok(await services().metadefs.listObjects(request.principal, ns(request), listParams(request))),
  'POST /v2/metadefs/namespaces/{namespace}/objects': async (request) =>
    created(await services().metadefs.createObject(request.principal, ns(request), await request.json())),
  ...childRoutes(
    'object',
    'objects',
    (metadefs, request, namespace, name) => metadefs.showObject(request.principal, namespace, name),
    async (metadefs, request, namespace, name) =>
      metadefs.updateObject(request.principal, namespace, name, await request.json()),
  ),

  'GET /v2/metadefs/namespaces/{namespace}/properties': async (request) =>
    ok(await services().metadefs.listProperties(request.principal, ns(request))),
  'POST /v2/metadefs/namespaces/{namespace}/properties': async (request) =>
    created(await services().metadefs.createProperty(request.principal, ns(request), await request.json())),
  ...childRoutes(
    'property',
    'properties',
    (metadefs, request, namespace, name) =>
      metadefs.showProperty(request.principal, namespace, name, request.query.get('resource_type')),
    async (metadefs, request, namespace, name) =>
      metadefs.updateProperty(request.principal, namespace, name, await request.json()),
  ),

  'GET /v2/metadefs/namespaces/{namespace}/tags': async (request) =>
    ok(await services().metadefs.listTags(request.principal, ns(request), listParams(request))),
  'POST /v2/metadefs/namespaces/{namespace}/tags': async (request) =>
    created(
      await services().metadefs.createTags(
        request.principal,
        ns(request),
        await request.json(),
        /^(1|t|true|on|y|yes)$/i.test(request.headers['x-openstack-append'] ?? ''),
      ),
    ),
  'POST /v2/metadefs/namespaces/{namespace}/tags/{tag_name}': async (request) =>
    created(
      await services().metadefs.createTag(request.principal, ns(request), request.params.tag_name ?? ''),
    ),
  ...childRoutes(
    'tag',
    'tags',
    (metadefs, request, namespace, name) => metadefs.showTag(request.principal, namespace, name),
    async (metadefs, request, namespace, name) =>
      metadefs.updateTag(request.principal, namespace, name, await request.json()),
  ),

  'GET /v2/metadefs/resource_types': async () => ok(await services().metadefs.listResourceTypes()),
  'GET /v2/metadefs/namespaces/{namespace}/resource_types': async (request) =>
    ok(await services().metadefs.listAssociations(request.principal, ns(request))),
  'POST /v2/metadefs/namespaces/{namespace}/resource_types': async (request) =>
    created(
      await services().metadefs.createAssociation(request.principal, ns(request), await request.json()),
    ),
  'DELETE /v2/metadefs/namespaces/{namespace}/resource_types/{resource_type}': async (request) => {
    await services().metadefs.deleteAssociation(
      request.principal,
      ns(request),
      request.params.resource_type ?? '',
    );
    return noContent;
  },
});
/** The route table entries this function serves (routes.ts lists them for the gateway and CDK). */
export const METADEF_ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const ROUTE_KEYS: readonly string[] = METADEF_ROUTE_KEYS;
export const handler = routes.handler;
