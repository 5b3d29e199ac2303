/**
 * Interoperable image import (Glance's GET /v2/info/import, PUT /stage, POST /import) and
 * Hangar's presigned multipart uploads (POST /multipart-upload, /complete, /abort), which take
 * image bodies straight to S3 because API Gateway and Lambda cannot carry more than 6-10 MB.
 * All of them end in the import state machine.
 */
import { UnsupportedMediaTypeError } from '#core/kernel/errors';
import { IMPORT_METHODS } from '#core/transfer/import-model';
import { services } from '#edge/compose';
import { type ApiRequest, type ApiResponse, routeTable } from '#edge/http';
import { serviceConfig } from '#platform/config';

async function info(): Promise<ApiResponse> {
  return {
    status: 200,
    json: {
      'import-methods': {
        description: 'Import methods available.',
        type: 'array',
        value: [...IMPORT_METHODS],
      },
    },
  };
}

/**
 * Hangar's own discovery document (Glance has none for this): the ways this service takes an
 * image's bytes, the preferred first. `put` is PUT /v2/images/{id}/file (streamed); `multipart`
 * the presigned multipart upload. Where the API cannot carry a large body (AWS) only multipart.
 */
async function uploadInfo(): Promise<ApiResponse> {
  const preferred = serviceConfig().uploadMethod;
  return {
    status: 200,
    json: {
      'upload-methods': {
        description: 'Upload methods available, the preferred first.',
        type: 'array',
        value: preferred === 'multipart' ? ['multipart'] : ['put', 'multipart'],
      },
    },
  };
}

async function stage(request: ApiRequest): Promise<ApiResponse> {
  const contentType = request.headers['content-type']?.split(';')[0]?.trim();
  if (contentType !== 'application/octet-stream')
    throw new UnsupportedMediaTypeError(
      `The request media type ${contentType ?? 'None'} is not supported by this server.`,
    );
  await services().imports.stage(request.principal, imageId(request), request.stream(), {
    declaredSize: request.headers['x-openstack-image-size'],
    contentLength: request.headers['content-length'],
  });
  return { status: 204 };
}

async function importImage(request: ApiRequest): Promise<ApiResponse> {
  await services().imports.requestImport(
    request.principal,
    imageId(request),
    await request.json(),
    request.requestId,
  );
  return { status: 202 };
}

/**
 * A host agent uploading a snapshot presents its job's grant (X-Hangar-Upload-Grant): it permits
 * this one image's upload, nothing else (core/instances/snapshots.ts). true when one was checked.
 */
async function granted(request: ApiRequest): Promise<boolean> {
  const grant = request.headers['x-hangar-upload-grant'];
  if (grant === undefined) return false;
  await services().hosts.authorizeUpload(request.principal, imageId(request), grant);
  return true;
}

async function startUpload(request: ApiRequest): Promise<ApiResponse> {
  const session = await services().imports.startMultipartUpload(
    request.principal,
    imageId(request),
    await request.json(),
    await granted(request),
  );
  return { status: 201, json: session };
}

async function completeUpload(request: ApiRequest): Promise<ApiResponse> {
  const id = imageId(request);
  await services().imports.completeMultipartUpload(
    request.principal,
    id,
    await request.json(),
    await granted(request),
  );
  // The object's creation event starts the import; the image's tasks show how it goes.
  return { status: 202, json: { image_id: id, tasks: `/v2/images/${id}/tasks` } };
}

async function abortUpload(request: ApiRequest): Promise<ApiResponse> {
  await services().imports.abortMultipartUpload(
    request.principal,
    imageId(request),
    await request.json(),
    await granted(request),
  );
  return { status: 204 };
}

function imageId(request: ApiRequest): string {
  return request.params.image_id ?? '';
}

const routes = routeTable({
  'GET /v2/info/import': info,
  'GET /v2/info/upload': uploadInfo,
  // Glance without unified limits reports no usage; Hangar's quotas are per image (README).
  'GET /v2/info/usage': async () => ({ status: 200, json: { usage: {} } }),
  'PUT /v2/images/{image_id}/stage': stage,
  'POST /v2/images/{image_id}/import': importImage,
  'POST /v2/images/{image_id}/multipart-upload': startUpload,
  'POST /v2/images/{image_id}/multipart-upload/complete': completeUpload,
  'POST /v2/images/{image_id}/multipart-upload/abort': abortUpload,
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
