/**
 * Tells agents that their queue gained a job (AWS): invoked by the service table's DynamoDB
 * stream, filtered to job inserts (adapters/dynamo/job-stream.ts), it posts `{"type":"jobs"}`
 * (the embedded gateway's message) to every WebSocket connection of each host named and forgets
 * connections that are gone. It never fails the batch: a lost notification costs at most the
 * agent's fallback poll, while a retried batch would repeat every post in it.
 */
import type { DynamoDBStreamEvent } from 'aws-lambda';
import { queuedJobHosts } from '#adapters/dynamo/job-stream';
import { services } from '#edge/compose';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { logger } from '#platform/logger';

export interface JobNotifierSummary {
  hosts: number;
  sent: number;
  gone: number;
  failed: number;
}

async function notifyJobs(event: DynamoDBStreamEvent): Promise<JobNotifierSummary> {
  const hosts = queuedJobHosts(event.Records ?? []);
  if (hosts.length === 0) return { hosts: 0, sent: 0, gone: 0, failed: 0 };
  const summary = await services().agentConnections().notify(hosts);
  for (const failure of summary.failed)
    logger.warn('agent notification not delivered', {
      hostId: failure.hostId,
      connectionId: failure.connectionId,
      error: failure.error,
    });
  return {
    hosts: new Set(hosts).size,
    sent: summary.sent,
    gone: summary.gone,
    failed: summary.failed.length,
  };
}

export const handler = serviceHandler({ service: 'dynamodb' }, [], notifyJobs);
