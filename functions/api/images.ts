/** The images resource: create, list, show, update (JSON-patch), delete, actions and tags. */

import { buildLinks, parseListQuery } from '#core/images/list-query';
import { freeImageData } from '#core/images/recovery';
import { imagePath, renderImage, renderImageList } from '#core/images/view';
import { NotFoundError } from '#core/kernel/errors';
import { parseReference } from '#core/references/references';
import { stagingKey } from '#core/transfer/import-model';
import { services } from '#edge/compose';
import { type ApiRequest, type ApiResponse, routeTable } from '#edge/http';
import { serviceConfig } from '#platform/config';
import { logger } from '#platform/logger';

const IMPORT_METHODS = 'glance-direct,web-download';

async function create(request: ApiRequest): Promise<ApiResponse> {
  const { images } = services();
  const image = await images.create(request.principal, await request.json());
  return {
    status: 201,
    headers: {
      location: `${request.origin}${imagePath(image.id)}`,
      'openstack-image-import-methods': IMPORT_METHODS,
    },
    json: renderImage(image, images.readableBy(request.principal)),
  };
}

async function list(request: ApiRequest): Promise<ApiResponse> {
  const query = parseListQuery(await withReferenceResolved(request));
  const { images } = services();
  const page = await images.list(request.principal, query);
  // Glance offers `next` whenever the page is full, so the last page may be empty.
  const last = page.length === query.limit && query.limit > 0 ? page[page.length - 1]?.id : undefined;
  return {
    status: 200,
    json: renderImageList(page, buildLinks(request.query.pairs, last), images.readableBy(request.principal)),
  };
}

/**
 * Hangar's `reference=name:tag` filter: the reference is resolved for the caller and becomes an
 * `id` filter, so an unresolvable (or invisible) reference simply lists nothing.
 */
async function withReferenceResolved(request: ApiRequest): Promise<ReadonlyArray<readonly [string, string]>> {
  const reference = request.query.get('reference');
  if (reference === undefined) return request.query.pairs;
  parseReference(reference);
  const resolved = await services()
    .references.resolve(request.principal, reference)
    .then((r) => r.image.id)
    .catch((error: unknown) => {
      // No image id has this form, so the filter matches nothing.
      if (error instanceof NotFoundError) return 'unresolved-reference';
      throw error;
    });
  return [...request.query.pairs.filter(([key]) => key !== 'reference'), ['id', resolved]];
}

async function show(request: ApiRequest): Promise<ApiResponse> {
  const { images } = services();
  const image = await images.show(request.principal, imageId(request));
  return { status: 200, json: renderImage(image, images.readableBy(request.principal)) };
}

async function update(request: ApiRequest): Promise<ApiResponse> {
  const mediaType = request.headers['content-type']?.split(';')[0]?.trim();
  const { images } = services();
  const image = await images.patch(
    request.principal,
    imageId(request),
    mediaType,
    await patchBody(request, mediaType),
  );
  return { status: 200, json: renderImage(image, images.readableBy(request.principal)) };
}

/** The media type is checked (415) before the body, as Glance does. */
async function patchBody(request: ApiRequest, mediaType: string | undefined): Promise<unknown> {
  if (
    mediaType !== 'application/openstack-images-v2.1-json-patch' &&
    mediaType !== 'application/openstack-images-v2.0-json-patch'
  )
    return undefined;
  return request.json();
}

async function remove(request: ApiRequest): Promise<ApiResponse> {
  const { images, blobs, objects } = services();
  const id = imageId(request);
  const { image, lease } = await images.delete(request.principal, id);
  // The record is already a tombstone, so nobody can read its data any more: a removal that fails
  // leaves an unreachable object (logged), never a visible inconsistency. Mid-upload, the lease
  // names the partial blob and its multipart upload; the upload itself then fails (410).
  const config = serviceConfig();
  await freeImageData(
    { blobs, objects, stagingBucket: config.buckets.staging, stagingKey: stagingKey(id) },
    image,
    lease,
  ).catch((error: unknown) => logger.warn('data of a deleted image not fully removed', { image: id, error }));
  return { status: 204 };
}

async function action(request: ApiRequest): Promise<ApiResponse> {
  const { images } = services();
  const id = imageId(request);
  if (request.params.action === 'deactivate') await images.deactivate(request.principal, id);
  else if (request.params.action === 'reactivate') await images.reactivate(request.principal, id);
  else throw new NotFoundError('The resource could not be found.');
  return { status: 204 };
}

async function putTag(request: ApiRequest): Promise<ApiResponse> {
  await services().images.addTag(request.principal, imageId(request), request.params.tag ?? '');
  return { status: 204 };
}

async function deleteTag(request: ApiRequest): Promise<ApiResponse> {
  await services().images.removeTag(request.principal, imageId(request), request.params.tag ?? '');
  return { status: 204 };
}

function imageId(request: ApiRequest): string {
  return request.params.image_id ?? '';
}

const routes = routeTable({
  'POST /v2/images': create,
  'GET /v2/images': list,
  'GET /v2/images/{image_id}': show,
  'PATCH /v2/images/{image_id}': update,
  'DELETE /v2/images/{image_id}': remove,
  'POST /v2/images/{image_id}/actions/{action}': action,
  'PUT /v2/images/{image_id}/tags/{tag}': putTag,
  'DELETE /v2/images/{image_id}/tags/{tag}': deleteTag,
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
