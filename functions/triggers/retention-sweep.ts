/**
 * The scheduled retention sweep: applies every name's retention policy, so versions hidden by
 * retention are deactivated once their grace period is over even if their name never moves
 * again. On AWS an EventBridge rule invokes it (`retentionSweepMinutes`, infra/); the embedded
 * runner calls it on a timer (HANGAR_RETENTION_SWEEP_SECONDS, local/backend.ts). The event
 * carries nothing it needs.
 */

import { services } from '#edge/compose';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { logger } from '#platform/logger';

export interface RetentionSweepSummary {
  names: number;
  hidden: string[];
  deactivated: string[];
  restored: string[];
  failed: { namespace: string; name: string; message: string }[];
}

async function sweepRetention(): Promise<RetentionSweepSummary> {
  const sweep = await services().references.sweepRetention();
  const failed = sweep.failed.map(({ namespace, name, error }) => {
    logger.error('retention sweep failed for a name', { namespace, name, error });
    return { namespace, name, message: error instanceof Error ? error.message : String(error) };
  });
  // A name that failed is retried by the next sweep; the invocation itself succeeds, so one
  // broken name does not make every run an error and a retry of all the others.
  const summary = {
    names: sweep.names,
    hidden: sweep.hidden,
    deactivated: sweep.deactivated,
    restored: sweep.restored,
    failed,
  };
  logger.info('retention sweep', {
    names: summary.names,
    hidden: summary.hidden,
    deactivated: summary.deactivated,
    restored: summary.restored,
    failed: failed.length,
  });
  return summary;
}

export const handler = serviceHandler({ service: 'events' }, [], sweepRetention);
