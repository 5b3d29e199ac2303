/**
 * The scheduled lease sweep: recovers images whose upload, stage or import died with its server
 * (a lease past its expiry, core/images/recovery.ts): back to queued with the reason, the task
 * failed, the partial bytes removed. On AWS an EventBridge rule invokes it (`leaseSweepMinutes`,
 * infra/); the embedded runner runs it at start-up and then on a timer
 * (HANGAR_LEASE_SWEEP_SECONDS, local/backend.ts). The event carries nothing it needs.
 */

import { services } from '#edge/compose';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { logger } from '#platform/logger';

export interface LeaseSweepSummary {
  recovered: string[];
  skipped: string[];
  failed: { id: string; message: string }[];
}

async function sweepLeases(options: { everyLease?: boolean } = {}): Promise<LeaseSweepSummary> {
  // EventBridge passes its event here: only a literal `true` (the local runner's start-up) counts.
  const everyLease = options?.everyLease === true;
  const sweep = await services().recovery.sweep({ everyLease });
  const failed = sweep.failed.map(({ id, error }) => {
    logger.error('lease recovery failed for an image', { image: id, error });
    return { id, message: error instanceof Error ? error.message : String(error) };
  });
  // An image that failed is retried by the next sweep; the run itself succeeds.
  const summary = { recovered: sweep.recovered, skipped: sweep.skipped, failed };
  if (summary.recovered.length > 0 || failed.length > 0)
    logger.warn('lease sweep recovered interrupted uploads', {
      recovered: summary.recovered,
      failed: failed.length,
    });
  return summary;
}

export const handler = serviceHandler({ service: 'events' }, [], sweepLeases);
