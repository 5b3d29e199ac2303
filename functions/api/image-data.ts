/**
 * PUT/GET /v2/images/{id}/file. On the embedded gateway bodies stream both ways; on Lambda an
 * event carries at most 6 MB, so large uploads use the presigned import path and downloads are
 * redirected to a short-lived presigned S3 URL (HANGAR_BLOB_DELIVERY=redirect).
 */

import { parseByteRange } from '#core/data/image-data';
import {
  BadRequestError,
  HangarError,
  RangeNotSatisfiableError,
  UnsupportedMediaTypeError,
} from '#core/kernel/errors';
import { services } from '#edge/compose';
import { type ApiRequest, type ApiResponse, routeTable } from '#edge/http';
import { serviceConfig } from '#platform/config';

async function upload(request: ApiRequest): Promise<ApiResponse> {
  const contentType = request.headers['content-type']?.split(';')[0]?.trim();
  if (contentType !== 'application/octet-stream')
    throw new UnsupportedMediaTypeError(
      `The request media type ${contentType ?? 'None'} is not supported by this server.`,
    );
  const imageId = request.params.image_id ?? '';
  // A host agent uploading a snapshot presents the grant its snapshot job came with: it permits
  // this one image's data, nothing else (core/instances/snapshots.ts).
  const grant = request.headers['x-hangar-upload-grant'];
  if (grant !== undefined) await services().hosts.authorizeUpload(request.principal, imageId, grant);
  const body = request.stream();
  try {
    await services().imageData.upload(request.principal, imageId, body, {
      granted: grant !== undefined,
      declaredSize: request.headers['x-openstack-image-size'],
      contentLength: request.headers['content-length'],
      sizeCap: serviceConfig().imageSizeCap,
      requireFormatMatch: serviceConfig().imageFormats.requireMatch,
    });
  } catch (error) {
    // The client went away mid-body: the service already rolled back; this is not a server fault.
    if (body.destroyed && !(error instanceof HangarError))
      throw new BadRequestError('The upload was interrupted before the body ended.');
    throw error;
  }
  return { status: 204 };
}

async function download(request: ApiRequest): Promise<ApiResponse> {
  const { imageData, blobs } = services();
  const { image, key } = await imageData.locate(request.principal, request.params.image_id ?? '');
  if (!key) return { status: 204 };
  const size = image.size ?? 0;
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  if (image.checksum) headers['content-md5'] = image.checksum;

  const range = parseByteRange(request.headers.range ?? request.headers['content-range'], size);
  if (range === 'unsatisfiable') throw new RangeNotSatisfiableError('Requested range not satisfiable', size);

  if (serviceConfig().blobDelivery === 'redirect') {
    if (range)
      throw new BadRequestError('Ranged downloads go to the presigned URL; request the whole image first.');
    return { status: 303, headers: { ...headers, location: await blobs.presignedGet(key, 900) } };
  }
  if (range) {
    headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`;
    headers['content-length'] = String(range.end - range.start + 1);
    return { status: 206, headers, stream: await blobs.get(key, range) };
  }
  headers['content-length'] = String(size);
  if (size === 0) return { status: 200, headers, text: '' };
  return { status: 200, headers, stream: await blobs.get(key) };
}

const routes = routeTable({
  'PUT /v2/images/{image_id}/file': upload,
  'GET /v2/images/{image_id}/file': download,
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
