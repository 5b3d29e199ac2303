/** Hangar's builds API (docs/builds-api.md): build an image from a base and a recipe, test it, publish it. */
import { buildPath, renderBuild } from '#core/builds/build';
import { services } from '#edge/compose';
import { routeTable } from '#edge/http';

const routes = routeTable({
  /** 202: the build is recorded and its state machine started; GET it to follow its stage. */
  'POST /v1/builds': async (request) => {
    const build = await services().builds.start(request.principal, await request.json(), request.requestId);
    return {
      status: 202,
      headers: { location: `${request.origin}${buildPath(build.id)}` },
      json: renderBuild(build),
    };
  },
  'GET /v1/builds': async (request) => {
    const builds = await services().builds.list(
      request.principal,
      request.query.get('target'),
      request.query.get('namespace'),
    );
    return { status: 200, json: { builds: builds.map(renderBuild) } };
  },
  'GET /v1/builds/{build_id}': async (request) => {
    const build = await services().builds.show(request.principal, request.params.build_id ?? '');
    return { status: 200, json: renderBuild(build) };
  },
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
