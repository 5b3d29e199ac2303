/**
 * Presigned multipart uploads (Hangar's own API; see docs/import-export.md): the client PUTs the
 * parts straight to images/<id> in the upload bucket, and completing the upload starts the import
 * there (s3-trigger.ts).
 */

import { sizeCapError } from '../data/pipeline.ts';
import type { ObjectRef } from '../data/ports.ts';
import { readable, writable } from '../images/access.ts';
import type { ImageRecord } from '../images/image.ts';
import { BadRequestError, ConflictError } from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import { assertImportable, IMPORT_LOCK, type ImportContext, isObject } from './import-model.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Part count cap for presigned uploads: keeps the answer (one URL a part) well under Lambda's 6 MB. */
const MAX_UPLOAD_PARTS = 1000;

/**
 * `granted`: the caller holds a job-scoped upload grant for this image (a snapshot job's, checked
 * by the edge with HostsService.authorizeUpload), so reading the image is enough.
 */
function uploadable(
  image: ImageRecord | null,
  id: string,
  principal: Principal,
  granted: boolean,
): ImageRecord {
  return granted ? readable(image, id, principal) : writable(image, id, principal);
}

export class PresignedMultipart {
  constructor(private readonly deps: ImportContext) {}

  async startMultipartUpload(principal: Principal, id: string, body: unknown, granted = false) {
    if (!isObject(body) || !Number.isSafeInteger(body.size) || (body.size as number) < 0)
      throw new BadRequestError('The request needs "size": the image size in bytes.');
    const size = body.size as number;
    if (size > this.deps.sizeCap) throw sizeCapError(this.deps.sizeCap);
    const image = uploadable(await this.deps.repo.get(id), id, principal, granted);
    assertImportable(image, 'web-download');
    if (image.properties[IMPORT_LOCK])
      throw new ConflictError(
        `Image ${id} has an import in progress: a prior operation is still in progress.`,
      );
    let partSize = Math.max(8 * MiB, Math.ceil(size / MAX_UPLOAD_PARTS / MiB) * MiB);
    if (body.part_size !== undefined) {
      if (!Number.isSafeInteger(body.part_size)) throw new BadRequestError('"part_size" must be an integer.');
      partSize = body.part_size as number;
    }
    const partCount = Math.max(1, Math.ceil(size / partSize));
    if (partSize < 5 * MiB || partSize > 5 * GiB)
      throw new BadRequestError('"part_size" must be between 5 MiB and 5 GiB.');
    if (partCount > MAX_UPLOAD_PARTS)
      throw new BadRequestError(
        `That makes ${partCount} parts; choose a "part_size" for at most ${MAX_UPLOAD_PARTS}.`,
      );
    const ref = this.uploadRef(id);
    const seconds = this.deps.uploadUrlSeconds;
    const { uploadId, partUrls } = await this.deps.multipart.start(ref, partCount, seconds);
    return {
      upload_id: uploadId,
      bucket: ref.bucket,
      key: ref.key,
      part_size: partSize,
      part_count: partCount,
      expires_at: new Date(this.deps.clock().getTime() + seconds * 1000).toISOString(),
      parts: partUrls.map((url, i) => ({ part_number: i + 1, url })),
      complete: `/v2/images/${id}/multipart-upload/complete`,
    };
  }

  async completeMultipartUpload(
    principal: Principal,
    id: string,
    body: unknown,
    granted = false,
  ): Promise<void> {
    uploadable(await this.deps.repo.get(id), id, principal, granted);
    const uploadId = isObject(body) ? body.upload_id : undefined;
    const parts = isObject(body) ? body.parts : undefined;
    if (typeof uploadId !== 'string' || !Array.isArray(parts) || parts.length === 0)
      throw new BadRequestError('The request needs "upload_id" and "parts": [{"part_number", "etag"}, ...].');
    const list = parts.map((part: unknown) => {
      if (!isObject(part) || !Number.isSafeInteger(part.part_number) || typeof part.etag !== 'string')
        throw new BadRequestError(
          'Each part needs an integer "part_number" and the "etag" S3 returned for it.',
        );
      return { partNumber: part.part_number as number, etag: part.etag };
    });
    await this.deps.multipart.complete(this.uploadRef(id), uploadId, list);
  }

  async abortMultipartUpload(
    principal: Principal,
    id: string,
    body: unknown,
    granted = false,
  ): Promise<void> {
    uploadable(await this.deps.repo.get(id), id, principal, granted);
    const uploadId = isObject(body) ? body.upload_id : undefined;
    if (typeof uploadId !== 'string') throw new BadRequestError('The request needs "upload_id".');
    await this.deps.multipart.abort(this.uploadRef(id), uploadId);
  }

  private uploadRef(id: string): ObjectRef {
    return { bucket: this.deps.uploadsBucket, key: `images/${id}` };
  }
}
