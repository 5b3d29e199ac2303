/** Image members (sharing): add, list, show, update the status, remove. Rules in core/sharing/members.ts. */
import { renderMember, renderMembers } from '#core/sharing/members';
import { services } from '#edge/compose';
import { type ApiRequest, type ApiResponse, routeTable } from '#edge/http';

function imageId(request: ApiRequest): string {
  return request.params.image_id ?? '';
}

function memberId(request: ApiRequest): string {
  return request.params.member_id ?? '';
}

async function create(request: ApiRequest): Promise<ApiResponse> {
  const member = await services().members.add(request.principal, imageId(request), await request.json());
  // Glance answers 200, not 201, with the new member.
  return { status: 200, json: renderMember(member) };
}

async function list(request: ApiRequest): Promise<ApiResponse> {
  return {
    status: 200,
    json: renderMembers(await services().members.list(request.principal, imageId(request))),
  };
}

async function show(request: ApiRequest): Promise<ApiResponse> {
  const member = await services().members.show(request.principal, imageId(request), memberId(request));
  return { status: 200, json: renderMember(member) };
}

async function update(request: ApiRequest): Promise<ApiResponse> {
  const member = await services().members.updateStatus(
    request.principal,
    imageId(request),
    memberId(request),
    await request.json(),
  );
  return { status: 200, json: renderMember(member) };
}

async function remove(request: ApiRequest): Promise<ApiResponse> {
  await services().members.remove(request.principal, imageId(request), memberId(request));
  return { status: 204 };
}

const routes = routeTable({
  'POST /v2/images/{image_id}/members': create,
  'GET /v2/images/{image_id}/members': list,
  'GET /v2/images/{image_id}/members/{member_id}': show,
  'PUT /v2/images/{image_id}/members/{member_id}': update,
  'DELETE /v2/images/{image_id}/members/{member_id}': remove,
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
