/**
 * s3rver's object events drive the same S3 trigger Lambda does on AWS
 * (functions/triggers/s3-upload.ts), for the upload bucket only, as the bucket notification on
 * AWS is configured. s3rver's records differ from S3's in two ways this undoes: keys arrive
 * unencoded (S3 URL-encodes them, '+' for spaces), and a completed multipart upload is
 * ObjectCreated:Post where S3 says ObjectCreated:CompleteMultipartUpload.
 */
import type { S3Event, S3EventRecord } from 'aws-lambda';
import { logger } from '#platform/logger';
import { handler as s3UploadTrigger } from '../functions/triggers/s3-upload.ts';

/** The record as S3 would have sent it. */
export function toAwsRecord(record: S3EventRecord): S3EventRecord {
  const key = encodeURIComponent(record.s3.object.key).replace(/%20/g, '+').replace(/%2F/g, '/');
  return {
    ...record,
    eventName:
      record.eventName === 'ObjectCreated:Post' ? 'ObjectCreated:CompleteMultipartUpload' : record.eventName,
    s3: { ...record.s3, object: { ...record.s3.object, key } },
  };
}

export interface UploadTrigger {
  /** Resolves when no trigger invocation is running. */
  idle(): Promise<void>;
  pending(): boolean;
  /** Stops listening and waits for running invocations. */
  stop(): Promise<void>;
}

export function connectUploadTrigger(
  onS3Event: (listener: (record: S3EventRecord) => void) => () => void,
  uploadBucket: string,
): UploadTrigger {
  const running = new Set<Promise<unknown>>();
  const unsubscribe = onS3Event((record) => {
    if (record.s3.bucket.name !== uploadBucket || !record.eventName.startsWith('ObjectCreated:')) return;
    const event: S3Event = { Records: [toAwsRecord(record)] };
    const invocation = s3UploadTrigger(event).catch((error: unknown) => {
      // On AWS the invocation would be retried; here the failure is logged for the developer.
      logger.error('local s3 trigger failed', { key: record.s3.object.key, error });
    });
    running.add(invocation);
    void invocation.finally(() => running.delete(invocation));
  });
  const idle = async () => {
    while (running.size > 0) await Promise.all(running);
  };
  return {
    idle,
    pending: () => running.size > 0,
    async stop() {
      unsubscribe();
      await idle();
    },
  };
}
