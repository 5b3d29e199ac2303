/**
 * Aborting multipart uploads, and sweeping the ones nobody aborted. An upload that is neither
 * completed nor aborted keeps its parts (and their cost) for good: on AWS the buckets' lifecycle
 * rule (AbortIncompleteMultipartUpload, infra/stateful-stack.ts) ends them; the embedded runner
 * runs `sweepMultipartUploads` on a timer (functions/triggers/multipart-sweep.ts).
 */
import {
  AbortMultipartUploadCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { logger } from '#platform/logger';
import { awsErrorName } from '../errors.ts';

/**
 * Aborts an upload on a failure path, where the failure itself is what the caller reports: an
 * abort that fails is logged (at warn, with what a person or the sweep needs to find it), never
 * thrown over the original error. Resolves to whether the upload is known to be gone.
 */
export async function abortOrWarn(
  client: S3Client,
  bucket: string,
  key: string,
  uploadId: string,
  reason: string,
): Promise<boolean> {
  try {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
    return true;
  } catch (error) {
    // Already gone (completed, aborted, swept): nothing is left behind.
    if (awsErrorName(error) === 'NoSuchUpload') return true;
    logger.warn('multipart upload not aborted; the multipart sweep or lifecycle rule will remove it', {
      bucket,
      key,
      uploadId,
      reason,
      error,
    });
    return false;
  }
}

export interface MultipartSweepSummary {
  /** Uploads seen, in every bucket. */
  listed: number;
  aborted: Array<{ bucket: string; key: string; uploadId: string; initiated: string }>;
  failed: Array<{ bucket: string; key?: string; uploadId?: string; message: string }>;
}

/** Aborts every multipart upload in `buckets` initiated more than `olderThanSeconds` ago. */
export async function sweepMultipartUploads(
  client: S3Client,
  buckets: readonly string[],
  olderThanSeconds: number,
  now: Date = new Date(),
): Promise<MultipartSweepSummary> {
  const summary: MultipartSweepSummary = { listed: 0, aborted: [], failed: [] };
  const cutoff = now.getTime() - olderThanSeconds * 1000;
  for (const bucket of buckets) {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    try {
      do {
        const page: ListMultipartUploadsCommandOutput = await client.send(
          new ListMultipartUploadsCommand({
            Bucket: bucket,
            ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
            ...(uploadIdMarker !== undefined ? { UploadIdMarker: uploadIdMarker } : {}),
          }),
        );
        for (const upload of page.Uploads ?? []) {
          summary.listed++;
          const { Key: key, UploadId: uploadId, Initiated: initiated } = upload;
          if (!key || !uploadId || !initiated || initiated.getTime() > cutoff) continue;
          try {
            await client.send(
              new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
            );
            summary.aborted.push({ bucket, key, uploadId, initiated: initiated.toISOString() });
          } catch (error) {
            if (awsErrorName(error) === 'NoSuchUpload') continue;
            summary.failed.push({ bucket, key, uploadId, message: String(error) });
          }
        }
        const more = page.IsTruncated === true && page.NextKeyMarker !== undefined;
        keyMarker = more ? page.NextKeyMarker : undefined;
        uploadIdMarker = more ? page.NextUploadIdMarker : undefined;
      } while (keyMarker !== undefined);
    } catch (error) {
      summary.failed.push({ bucket, message: String(error) });
    }
  }
  return summary;
}
