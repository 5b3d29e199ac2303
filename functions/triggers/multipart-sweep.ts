/**
 * The multipart sweep: aborts multipart uploads older than HANGAR_MULTIPART_MAX_AGE_SECONDS in
 * Hangar's buckets, so an upload that a crash (or a failed abort) left behind does not keep its
 * parts on disk. The embedded runner calls it on a timer (HANGAR_MULTIPART_SWEEP_SECONDS,
 * local/backend.ts); on AWS the buckets' AbortIncompleteMultipartUpload lifecycle rule does this.
 */
import type { MultipartSweepSummary } from '#adapters/s3/multipart';
import { services } from '#edge/compose';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { logger } from '#platform/logger';

async function sweepMultipart(): Promise<MultipartSweepSummary> {
  const { config, multipart } = services();
  // Never younger than a presigned upload's URLs live: a client may still be sending its parts.
  const age = Math.max(config.multipartMaxAgeSeconds, config.uploadUrlSeconds);
  const summary = await multipart.sweep(Object.values(config.buckets), age);
  for (const failure of summary.failed) logger.warn('multipart sweep could not abort an upload', failure);
  // Quiet when there was nothing to do: the sweep runs often and usually finds nothing.
  if (summary.aborted.length > 0 || summary.failed.length > 0)
    logger.info('multipart sweep', {
      listed: summary.listed,
      aborted: summary.aborted,
      failed: summary.failed.length,
    });
  return summary;
}

export const handler = serviceHandler({ service: 'events' }, [], sweepMultipart);
