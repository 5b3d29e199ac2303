/**
 * The hosts whose queue gained a job, read from the service table's stream. A job is enqueued
 * by the Put that creates its item (pk=JOB#<id>, sk=META, status pending; keys.ts), in the same
 * transaction as the instance it is for, so the stream shows it only once that transaction has
 * committed: an agent told then finds the job when it claims. The event source mapping filters
 * to exactly these records (JOB_INSERT_FILTER), this parser checks them again.
 */
import type { DynamoDBRecord } from 'aws-lambda';
import { z } from 'zod';

/** Lambda's filter for the event source mapping: inserts of job items only (see infra/). */
export const JOB_INSERT_FILTER = {
  eventName: ['INSERT'],
  dynamodb: {
    Keys: { pk: { S: [{ prefix: 'JOB#' }] }, sk: { S: ['META'] } },
    NewImage: { status: { S: ['pending'] } },
  },
} as const;

const JobImageSchema = z.object({
  pk: z.object({ S: z.string().startsWith('JOB#') }),
  status: z.object({ S: z.literal('pending') }),
  data: z.object({ S: z.string() }),
});
const JobDataSchema = z.object({ host_id: z.string().min(1) });

/** The host of each newly enqueued job among `records` (in order, repeats kept); others are skipped. */
export function queuedJobHosts(records: readonly DynamoDBRecord[]): string[] {
  const hosts: string[] = [];
  for (const record of records) {
    if (record.eventName !== 'INSERT') continue;
    const image = JobImageSchema.safeParse(record.dynamodb?.NewImage);
    if (!image.success) continue;
    let data: unknown;
    try {
      data = JSON.parse(image.data.data.S);
    } catch {
      continue;
    }
    const job = JobDataSchema.safeParse(data);
    if (job.success) hosts.push(job.data.host_id);
  }
  return hosts;
}
