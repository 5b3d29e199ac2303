/**
 * The tasks API: POST/GET /v2/tasks and GET /v2/tasks/{id} (admin only, as Glance's default
 * tasks_api_access policy), and GET /v2/images/{id}/tasks for anyone who may read the image.
 * Task types: import (Glance's legacy web import) and export (Hangar's).
 */
import { BadRequestError } from '#core/kernel/errors';
import {
  renderImageTask,
  renderTask,
  renderTaskListItem,
  TASKS_SCHEMA_PATH,
  taskPath,
} from '#core/tasks/task';
import { assertTasksApiAccess, parseTaskListQuery } from '#core/tasks/tasks-service';
import { services } from '#edge/compose';
import { type ApiRequest, type ApiResponse, routeTable } from '#edge/http';

const CREATABLE_TYPES = ['import', 'export'];

async function create(request: ApiRequest): Promise<ApiResponse> {
  assertTasksApiAccess(request.principal);
  const body = await request.json();
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new BadRequestError("Provided object does not match schema 'task': the body must be an object");
  const { type, input } = body as Record<string, unknown>;
  if (typeof type !== 'string' || !CREATABLE_TYPES.includes(type))
    throw new BadRequestError(
      `Provided object does not match schema 'task': '${String(type)}' is not one of ['import', 'export']`,
    );
  const { exports, imports } = services();
  const task =
    type === 'export'
      ? await exports.create(request.principal, input, request.requestId)
      : await imports.legacyImport(request.principal, input, request.requestId);
  return {
    status: 201,
    headers: { location: `${request.origin}${taskPath(task.id)}` },
    json: renderTask(task),
  };
}

async function list(request: ApiRequest): Promise<ApiResponse> {
  const query = parseTaskListQuery(request.query.pairs);
  const tasks = await services().tasks.list(request.principal, query);
  const first = `/v2/tasks${request.rawQuery ? `?${request.rawQuery}` : ''}`;
  const body: Record<string, unknown> = {
    tasks: tasks.map(renderTaskListItem),
    first,
    schema: TASKS_SCHEMA_PATH,
  };
  const last = tasks.at(-1);
  if (last && tasks.length === query.limit) {
    const params = new URLSearchParams(
      request.query.pairs.filter(([key]) => key !== 'marker') as [string, string][],
    );
    params.set('marker', last.id);
    body.next = `/v2/tasks?${params}`;
  }
  return { status: 200, json: body };
}

async function show(request: ApiRequest): Promise<ApiResponse> {
  const task = await services().tasks.show(request.principal, request.params.task_id ?? '');
  return { status: 200, json: renderTask(task) };
}

async function imageTasks(request: ApiRequest): Promise<ApiResponse> {
  const tasks = await services().tasks.listForImage(request.principal, request.params.image_id ?? '');
  return { status: 200, json: { tasks: tasks.map(renderImageTask) } };
}

const routes = routeTable({
  'POST /v2/tasks': create,
  'GET /v2/tasks': list,
  'GET /v2/tasks/{task_id}': show,
  'GET /v2/images/{image_id}/tasks': imageTasks,
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
