/**
 * Objects in the upload and staging buckets: copied server-side into the images bucket (the bytes
 * never pass through the function on their way there) and read from there once, and presigned
 * multipart uploads for clients whose images are too large for API Gateway and Lambda.
 */
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { ObjectPin, ObjectRef, ObjectStore, OpenedObject } from '#core/data/ports';
import { BadRequestError } from '#core/kernel/errors';
import type { MultipartUploads } from '#core/transfer/ports';
import { awsErrorName } from '../errors.ts';
import { abortOrWarn, type MultipartSweepSummary, sweepMultipartUploads } from './multipart.ts';

/** S3's limit for a single CopyObject; larger objects are copied part by part. */
const MAX_SINGLE_COPY = 5 * 1024 ** 3;
const COPY_PART_SIZE = 1024 ** 3;
const COPY_CONCURRENCY = 4;

/** A copy source names a key URL-encoded (slashes kept), and a version when one is pinned. */
function copySource(ref: ObjectRef, pin: ObjectPin): string {
  const key = ref.key.split('/').map(encodeURIComponent).join('/');
  return `${ref.bucket}/${key}${pin.versionId ? `?versionId=${encodeURIComponent(pin.versionId)}` : ''}`;
}

function pinOf(out: { ETag?: string | undefined; VersionId?: string | undefined }): ObjectPin {
  const pin: ObjectPin = {};
  if (out.ETag) pin.etag = out.ETag;
  if (out.VersionId && out.VersionId !== 'null') pin.versionId = out.VersionId;
  return pin;
}

export class S3ObjectStore implements ObjectStore {
  constructor(private readonly client: S3Client) {}

  async open(ref: ObjectRef): Promise<OpenedObject> {
    const out = await this.client.send(new GetObjectCommand({ Bucket: ref.bucket, Key: ref.key }));
    const body = out.Body as Readable;
    return { body, size: out.ContentLength ?? 0, pin: pinOf(out), abort: () => body.destroy() };
  }

  /**
   * Copies the pinned version (when the bucket is versioned) and only while the ETag is the one
   * `head` saw (CopySourceIfMatch), so the size the copy was planned for is the size copied.
   */
  async copy(from: ObjectRef, pin: ObjectPin, to: ObjectRef, size: number): Promise<void> {
    const source = copySource(from, pin);
    if (size <= MAX_SINGLE_COPY) {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: to.bucket,
          Key: to.key,
          CopySource: source,
          CopySourceIfMatch: pin.etag,
          IfNoneMatch: '*',
          // The object's metadata travels along (MetadataDirective COPY, the default): replacing it
          // makes s3rver re-read the whole object to recompute its MD5, and gains nothing on S3.
        }),
      );
      return;
    }
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({
        Bucket: to.bucket,
        Key: to.key,
        ContentType: 'application/octet-stream',
      }),
    );
    if (!UploadId) throw new Error('S3 returned no UploadId');
    try {
      const ranges: Array<{ part: number; start: number; end: number }> = [];
      for (let start = 0, part = 1; start < size; start += COPY_PART_SIZE, part++)
        ranges.push({ part, start, end: Math.min(size, start + COPY_PART_SIZE) - 1 });
      const parts: Array<{ PartNumber: number; ETag: string }> = [];
      let next = 0;
      let failed = false;
      const worker = async () => {
        for (let r = ranges[next++]; r && !failed; r = ranges[next++]) {
          const out = await this.client.send(
            new UploadPartCopyCommand({
              Bucket: to.bucket,
              Key: to.key,
              UploadId,
              PartNumber: r.part,
              CopySource: source,
              CopySourceIfMatch: pin.etag,
              CopySourceRange: `bytes=${r.start}-${r.end}`,
            }),
          );
          parts.push({ PartNumber: r.part, ETag: out.CopyPartResult?.ETag ?? '' });
        }
      };
      // Settled, not Promise.all: a part copy still running after the abort would be kept.
      const settled = await Promise.allSettled(
        Array.from({ length: COPY_CONCURRENCY }, () =>
          worker().catch((error: unknown) => {
            failed = true;
            throw error;
          }),
        ),
      );
      const rejected = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (rejected) throw rejected.reason;
      parts.sort((a, b) => a.PartNumber - b.PartNumber);
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: to.bucket,
          Key: to.key,
          UploadId,
          MultipartUpload: { Parts: parts },
          IfNoneMatch: '*',
        }),
      );
    } catch (error) {
      await abortOrWarn(this.client, to.bucket, to.key, UploadId, `multipart copy failed: ${String(error)}`);
      throw error;
    }
  }

  async head(
    ref: ObjectRef,
  ): Promise<{ size: number; pin: ObjectPin; metadata: Record<string, string> } | null> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: ref.bucket, Key: ref.key }));
      const metadata: Record<string, string> = {};
      for (const [key, value] of Object.entries(out.Metadata ?? {})) metadata[key.toLowerCase()] = value;
      return { size: out.ContentLength ?? 0, pin: pinOf(out), metadata };
    } catch (error) {
      if (awsErrorName(error) === 'NotFound' || awsErrorName(error) === 'NoSuchKey') return null;
      throw error;
    }
  }

  async delete(ref: ObjectRef): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: ref.bucket, Key: ref.key }));
  }
}

export class S3MultipartUploads implements MultipartUploads {
  constructor(private readonly client: S3Client) {}

  async start(
    ref: ObjectRef,
    partCount: number,
    expiresSeconds: number,
  ): Promise<{ uploadId: string; partUrls: string[] }> {
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({
        Bucket: ref.bucket,
        Key: ref.key,
        ContentType: 'application/octet-stream',
      }),
    );
    if (!UploadId) throw new Error('S3 returned no UploadId');
    const partUrls = await Promise.all(
      Array.from({ length: partCount }, (_, i) =>
        getSignedUrl(
          this.client,
          new UploadPartCommand({ Bucket: ref.bucket, Key: ref.key, UploadId, PartNumber: i + 1 }),
          { expiresIn: expiresSeconds },
        ),
      ),
    );
    return { uploadId: UploadId, partUrls };
  }

  async complete(
    ref: ObjectRef,
    uploadId: string,
    parts: ReadonlyArray<{ partNumber: number; etag: string }>,
  ): Promise<void> {
    try {
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: ref.bucket,
          Key: ref.key,
          UploadId: uploadId,
          MultipartUpload: {
            Parts: [...parts]
              .sort((a, b) => a.partNumber - b.partNumber)
              .map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })),
          },
        }),
      );
    } catch (error) {
      throw uploadError(error, uploadId);
    }
  }

  /** Aborts every multipart upload in `buckets` initiated more than `olderThanSeconds` ago. */
  sweep(buckets: readonly string[], olderThanSeconds: number): Promise<MultipartSweepSummary> {
    return sweepMultipartUploads(this.client, buckets, olderThanSeconds);
  }

  async abort(ref: ObjectRef, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: ref.bucket, Key: ref.key, UploadId: uploadId }),
      );
    } catch (error) {
      throw uploadError(error, uploadId);
    }
  }
}

/** S3's refusals of a client's upload id or part list are the client's to fix (400). */
function uploadError(error: unknown, uploadId: string): unknown {
  const name = awsErrorName(error);
  if (name === 'NoSuchUpload') return new BadRequestError(`No multipart upload ${uploadId} for this image.`);
  if (name === 'InvalidPart' || name === 'InvalidPartOrder' || name === 'EntityTooSmall')
    return new BadRequestError(`S3 refused the part list: ${(error as Error).message}`);
  return error;
}
