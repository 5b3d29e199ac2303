/**
 * The upload bucket's ObjectCreated trigger: each object starts the import of the image its key
 * names (functions/core/transfer/s3-trigger.ts, parseUploadKey). S3 delivers at least once, so the work
 * is idempotent per event. Every record is handled; if any failed for a reason worth retrying,
 * the invocation fails afterwards so S3/Lambda retry it (the ones that succeeded are then no-ops).
 */
import type { S3Event } from 'aws-lambda';
import { services } from '#edge/compose';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { logger } from '#platform/logger';

/** S3 event keys are URL-encoded with '+' for spaces. */
export function decodeS3Key(key: string): string {
  return decodeURIComponent(key.replace(/\+/g, ' '));
}

async function onUpload(event: S3Event): Promise<{ outcomes: string[] }> {
  const outcomes: string[] = [];
  const failures: unknown[] = [];
  for (const record of event.Records ?? []) {
    if (!record.eventName?.startsWith('ObjectCreated:')) {
      outcomes.push('ignored');
      continue;
    }
    const bucket = record.s3.bucket.name;
    const key = decodeS3Key(record.s3.object.key);
    try {
      const outcome = await services().imports.onUpload({
        bucket,
        key,
        ...(record.s3.object.eTag ? { etag: record.s3.object.eTag } : {}),
        ...(record.s3.object.sequencer ? { sequencer: String(record.s3.object.sequencer) } : {}),
        ...(record.s3.object.versionId ? { versionId: record.s3.object.versionId } : {}),
        ...(record.responseElements?.['x-amz-request-id']
          ? { requestId: record.responseElements['x-amz-request-id'] }
          : {}),
      });
      outcomes.push(outcome);
      logger.info('s3 upload', { bucket, key, outcome });
    } catch (error) {
      outcomes.push('failed');
      failures.push(error);
      logger.error('s3 upload failed', { bucket, key, error });
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, `${failures.length} upload record(s) failed`);
  return { outcomes };
}

export const handler = serviceHandler({ service: 's3' }, [], onUpload);
