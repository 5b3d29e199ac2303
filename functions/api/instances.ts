/** Hangar's instances API (docs/instances-api.md): create, list, show, and life-cycle actions. */

import { ACTIONS, type Action } from '#core/instances/records';
import { instancePath, renderInstance } from '#core/instances/views';
import { BadRequestError, NotFoundError } from '#core/kernel/errors';
import { services } from '#edge/compose';
import { type ApiRequest, type ApiResponse, routeTable } from '#edge/http';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

/** 202: the instance exists (stage Building, its host chosen); the host agent builds it later. */
async function create(request: ApiRequest): Promise<ApiResponse> {
  const instance = await services().instances.create(request.principal, await request.json());
  return {
    status: 202,
    headers: { location: `${request.origin}${instancePath(instance.id)}` },
    json: renderInstance(instance),
  };
}

function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_LIMIT;
  const limit = Number(raw);
  if (!/^\d+$/.test(raw) || limit < 1 || limit > MAX_LIMIT)
    throw new BadRequestError(`limit must be an integer from 1 to ${MAX_LIMIT}.`);
  return limit;
}

async function list(request: ApiRequest): Promise<ApiResponse> {
  const limit = parseLimit(request.query.get('limit'));
  const marker = request.query.get('marker');
  const project = request.query.get('project');
  const instances = await services().instances.list(request.principal, {
    limit,
    ...(marker !== undefined ? { marker } : {}),
    ...(project !== undefined ? { project } : {}),
  });
  const last = instances.length === limit ? instances[instances.length - 1]?.id : undefined;
  const next = new URLSearchParams(
    request.query.pairs
      .filter(([key]) => key !== 'marker')
      .map(([key, value]): [string, string] => [key, value]),
  );
  if (last) next.set('marker', last);
  return {
    status: 200,
    json: {
      instances: instances.map((instance) => renderInstance(instance)),
      ...(last ? { next: `/v1/instances?${next.toString()}` } : {}),
    },
  };
}

async function show(request: ApiRequest): Promise<ApiResponse> {
  const instance = await services().instances.show(request.principal, request.params.instance_id ?? '');
  return { status: 200, json: renderInstance(instance, { console: true }) };
}

/** 202: the action's job is queued; the stage changes when the host agent reports it done. */
async function action(request: ApiRequest): Promise<ApiResponse> {
  const name = request.params.action ?? '';
  if (name === 'snapshot') return snapshot(request);
  if (!(ACTIONS as readonly string[]).includes(name))
    throw new NotFoundError(`Unknown action ${name}; actions are ${[...ACTIONS, 'snapshot'].join(', ')}.`);
  // Only an upgrade takes a body ({"image"?}); an empty one means "where its reference points".
  const body = name === 'upgrade' ? await request.json() : undefined;
  const instance = await services().instances.act(
    request.principal,
    request.params.instance_id ?? '',
    name as Action,
    body,
  );
  // 202: a job was queued; 200: done at once (a destroy on a lost host).
  return { status: instance.pending_job ? 202 : 200, json: renderInstance(instance) };
}

/**
 * 202 with the new image's id (Nova 2.45's answer) and the instance with its snapshot job pending;
 * the image is queued now and becomes active once the host agent has uploaded the disk.
 */
async function snapshot(request: ApiRequest): Promise<ApiResponse> {
  const { instance, image } = await services().instances.snapshot(
    request.principal,
    request.params.instance_id ?? '',
    await request.json(),
  );
  return {
    status: 202,
    headers: { location: `${request.origin}/v2/images/${image.id}` },
    json: { image_id: image.id, instance: renderInstance(instance) },
  };
}

const routes = routeTable({
  'POST /v1/instances': create,
  'GET /v1/instances': list,
  'GET /v1/instances/{instance_id}': show,
  'POST /v1/instances/{instance_id}/actions/{action}': action,
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
