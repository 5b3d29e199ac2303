/**
 * The per-host job queue in the single table (layout in keys.ts). A job sits in the by_kind index
 * under its host's queue (kind_pk=HOSTQ#<host>) while it is pending or claimed; a claim is a Put
 * conditioned on the version read *and* on the job being pending or its lease expired, so of
 * several claimers exactly one wins. Writes that also change an instance are made by
 * DynamoInstanceStore from the items built here.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { JOB_KINDS } from '#core/instances/records';
import {
  expirationEpoch,
  JOB_RETENTION_HOURS,
  JOB_STATUSES,
  type JobRecord,
  SnapshotReportSchema,
} from '#core/instances/work-queue';
import { isUuid } from '#core/kernel/ids';
import { hostQueueKind, hostQueueSort, jobKey } from './keys.ts';
import { getItem } from './query.ts';
import { type SinglePut, type TransactItem, versionedPut, versionedWrite } from './transact.ts';

const StoredJobSchema = z.object({
  id: z.string(),
  kind: z.enum(JOB_KINDS),
  instance_id: z.string(),
  host_id: z.string(),
  status: z.enum(JOB_STATUSES),
  attempt: z.number().int(),
  lease_token: z.string().nullable(),
  lease_seconds: z.number().int().nullable(),
  lease_expires_at: z.string().nullable(),
  enqueued_at: z.string(),
  claimed_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  reason: z.string().nullable(),
  result: z
    .object({
      console_log: z.string().optional(),
      domain_uuid: z.string().optional(),
      snapshot: SnapshotReportSchema.optional(),
    })
    .nullable(),
  snapshot: z
    .object({
      image_id: z.string(),
      upload_grant: z.string(),
      upload: z.enum(['put', 'multipart']),
      reference: z
        .object({ text: z.string(), namespace: z.string(), expect: z.string().nullable() })
        .nullable(),
      requested_by: z.object({ project: z.string(), user: z.string(), roles: z.array(z.string()) }),
    })
    .nullish(),
  version: z.number().int(),
});

/** Open jobs are in their host's queue (by_kind); finished ones leave it and expire. */
function jobItem(job: JobRecord): Record<string, unknown> {
  const open = job.status === 'pending' || job.status === 'claimed';
  return {
    ...jobKey(job.id),
    ...(open
      ? { kind_pk: hostQueueKind(job.host_id), kind_sk: hostQueueSort(job.enqueued_at, job.id) }
      : { expiration: expirationEpoch(job.finished_at ?? job.enqueued_at, JOB_RETENTION_HOURS) }),
    // JSON text, as for images and tasks: nested nulls survive every SDK version alike.
    data: JSON.stringify(job),
    version: job.version,
    status: job.status,
    lease_expires_ms: job.lease_expires_at === null ? 0 : Date.parse(job.lease_expires_at),
  };
}

const parseJob = (item: Record<string, unknown>) =>
  StoredJobSchema.parse(JSON.parse(String(item.data))) as JobRecord;

/** A new job, written only if no job has its id. */
export function jobCreate(table: string, job: JobRecord): TransactItem {
  return { Put: { TableName: table, Item: jobItem(job), ConditionExpression: 'attribute_not_exists(pk)' } };
}

/** `next`, written only if the stored job is still at `previous.version`. */
export function jobPut(table: string, previous: JobRecord, next: JobRecord): SinglePut {
  return versionedPut(table, jobItem(next), previous.version);
}

export class DynamoJobRepository {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async getJob(id: string): Promise<JobRecord | null> {
    return isUuid(id) ? getItem(this.client, this.table, jobKey(id), parseJob) : null;
  }

  /** The host's open jobs (pending or claimed), oldest first. */
  async queue(hostId: string, limit: number): Promise<JobRecord[]> {
    const out = await this.client.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: 'by_kind',
        KeyConditionExpression: 'kind_pk = :kind',
        ExpressionAttributeValues: { ':kind': hostQueueKind(hostId) },
        ScanIndexForward: true,
        Limit: limit,
      }),
    );
    return (out.Items ?? []).map(parseJob);
  }

  async claimJob(previous: JobRecord, next: JobRecord, now: Date): Promise<void> {
    await versionedWrite(
      this.client,
      {
        Put: {
          TableName: this.table,
          Item: jobItem(next),
          ConditionExpression:
            'version = :expected AND (#status = :pending OR (#status = :claimed AND lease_expires_ms <= :now))',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':expected': previous.version,
            ':pending': 'pending',
            ':claimed': 'claimed',
            ':now': now.getTime(),
          },
        },
      },
      `Job ${next.id} was claimed by another request`,
    );
  }

  async updateJob(previous: JobRecord, next: JobRecord): Promise<void> {
    await versionedWrite(
      this.client,
      jobPut(this.table, previous, next),
      `Job ${next.id} was changed by another request`,
    );
  }
}
