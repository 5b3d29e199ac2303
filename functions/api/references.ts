/**
 * Hangar's own name:tag references (docs/references-api.md): create, resolve, list, move with
 * compare-and-swap, roll back, history, delete, and a per-name retention policy.
 */
import { z } from 'zod';
import { renderImage } from '#core/images/view';
import { BadRequestError, NotFoundError } from '#core/kernel/errors';
import { PublishRequestSchema } from '#core/references/publish';
import type { HistoryEntry, ReferenceRecord } from '#core/references/references';
import { renderTask } from '#core/tasks/task';
import { services } from '#edge/compose';
import { type ApiRequest, routeTable } from '#edge/http';

const CreateBody = z
  .object({ reference: z.string(), image_id: z.string(), namespace: z.string().optional() })
  .strict();
const MoveBody = z.object({ image_id: z.string(), expect: z.string().optional() }).strict();
const RollbackBody = z.object({ to: z.string().optional(), expect: z.string().optional() }).strict();
const PolicyBody = z.object({ keep: z.number().int(), grace_seconds: z.number().int() }).strict();

async function parseBody<T>(request: ApiRequest, schema: z.ZodType<T>): Promise<T> {
  const parsed = schema.safeParse(await request.json());
  if (!parsed.success)
    throw new BadRequestError(
      `Invalid request body: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`,
    );
  return parsed.data;
}

function render(ref: ReferenceRecord): Record<string, unknown> {
  return {
    reference: `${ref.name}:${ref.tag}`,
    namespace: ref.namespace,
    name: ref.name,
    tag: ref.tag,
    image_id: ref.image_id,
    created_at: ref.created_at,
    updated_at: ref.updated_at,
    updated_by: ref.updated_by,
    version: ref.version,
    self: `/v1/references/${ref.name}:${ref.tag}`,
  };
}

const renderHistory = (entry: HistoryEntry) => ({
  seq: entry.seq,
  action: entry.action,
  from: entry.from,
  to: entry.to,
  by: entry.by,
  at: entry.at,
  ...(entry.build_id ? { build_id: entry.build_id } : {}),
});

const namespaceOf = (request: ApiRequest) => request.query.get('namespace');
const refOf = (request: ApiRequest) => request.params.ref ?? '';

const routes = routeTable({
  'POST /v1/references': async (request) => {
    const body = await parseBody(request, CreateBody);
    const ref = await services().references.create(request.principal, body);
    return {
      status: 201,
      headers: { location: `${request.origin}/v1/references/${ref.name}:${ref.tag}` },
      json: render(ref),
    };
  },
  'GET /v1/references': async (request) => {
    const refs = await services().references.list(
      request.principal,
      namespaceOf(request),
      request.query.get('name'),
    );
    return { status: 200, json: { references: refs.map(render) } };
  },
  'GET /v1/references/{ref}': async (request) => {
    const { references, images } = services();
    const namespace = namespaceOf(request);
    if (namespace !== undefined)
      return {
        status: 200,
        json: render(await references.show(request.principal, refOf(request), namespace)),
      };
    const { reference, image } = await references.resolve(request.principal, refOf(request));
    return {
      status: 200,
      json: { ...render(reference), image: renderImage(image, images.readableBy(request.principal)) },
    };
  },
  'DELETE /v1/references/{ref}': async (request) => {
    await services().references.delete(request.principal, refOf(request), namespaceOf(request));
    return { status: 204 };
  },
  'POST /v1/references/{ref}/move': async (request) => {
    const body = await parseBody(request, MoveBody);
    const ref = await services().references.move(request.principal, refOf(request), {
      ...body,
      namespace: namespaceOf(request),
    });
    return { status: 200, json: render(ref) };
  },
  'POST /v1/references/{ref}/rollback': async (request) => {
    const body = await parseBody(request, RollbackBody);
    const ref = await services().references.rollback(request.principal, refOf(request), {
      ...body,
      namespace: namespaceOf(request),
    });
    return { status: 200, json: render(ref) };
  },
  'POST /v1/references/{ref}/publish': async (request) => {
    const body = await parseBody(request, PublishRequestSchema);
    const task = await services().publishing.start(
      request.principal,
      refOf(request),
      body,
      namespaceOf(request),
      request.requestId,
    );
    return {
      status: 202,
      headers: { location: `${request.origin}/v1/publications/${task.id}` },
      json: renderTask(task),
    };
  },
  'GET /v1/publications/{id}': async (request) => {
    const task = await services().publishing.show(request.principal, request.params.id ?? '');
    return { status: 200, json: renderTask(task) };
  },
  'GET /v1/references/{ref}/history': async (request) => {
    const entries = await services().references.history(
      request.principal,
      refOf(request),
      namespaceOf(request),
    );
    return { status: 200, json: { history: entries.map(renderHistory) } };
  },
  'GET /v1/names/{name}/retention': async (request) => {
    const policy = await services().references.getPolicy(
      request.principal,
      request.params.name ?? '',
      namespaceOf(request),
    );
    if (!policy) throw new NotFoundError(`No retention policy for ${request.params.name}.`);
    return { status: 200, json: policy };
  },
  'PUT /v1/names/{name}/retention': async (request) => {
    const body = await parseBody(request, PolicyBody);
    const policy = await services().references.setPolicy(
      request.principal,
      request.params.name ?? '',
      body,
      namespaceOf(request),
    );
    return { status: 200, json: policy };
  },
  'POST /v1/names/{name}/retention/apply': async (request) => {
    const plan = await services().references.applyRetention(
      request.principal,
      request.params.name ?? '',
      namespaceOf(request),
    );
    return { status: 200, json: { hidden: plan.hide, deactivated: plan.deactivate, restored: plan.restore } };
  },
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
