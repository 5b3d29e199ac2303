/**
 * Per-host jobs that host agents poll for, with leases. Pure: the repository makes each of these
 * transitions a conditional write, so of two claimers exactly one wins, and a job's outcome is
 * applied to its instance at most once.
 *
 *   pending --claim--> claimed --complete--> done
 *                        |  \--fail-------> failed
 *                        \-- lease expires: claimable again (attempt + 1), the old token is dead
 *
 * A job whose lease has expired MAX_ATTEMPTS times is failed instead of handed out again.
 */
import { z } from 'zod';
import { ConflictError } from '../kernel/errors.ts';
import type { InstanceImage, InstanceRecord, JobKind } from './records.ts';
import { JOB_KINDS } from './records.ts';

export const JOB_STATUSES = ['pending', 'claimed', 'done', 'failed'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Claims before a job that keeps losing its lease is given up (its instance gets the failure). */
export const MAX_ATTEMPTS = 5;
/** Finished jobs stay readable this long before TTL removes them. */
export const JOB_RETENTION_HOURS = 48;
export const DEFAULT_LEASE_SECONDS = 60;
export const MAX_LEASE_SECONDS = 3600;

export interface JobResult {
  console_log?: string | undefined;
  domain_uuid?: string | undefined;
  /** A snapshot job's: what the agent sent, as it counted and hashed it, and how long the guest was paused. */
  snapshot?: SnapshotReport | undefined;
}

export const SnapshotReportSchema = z.object({
  size: z.number().int().nonnegative(),
  checksum: z.string().regex(/^[0-9a-f]{32}$/),
  os_hash_value: z.string().regex(/^[0-9a-f]{128}$/),
  /** null: the domain was not running (Shutoff, Sleep), so it was never paused. */
  paused_ms: z.number().int().nonnegative().nullable(),
});
export type SnapshotReport = z.infer<typeof SnapshotReportSchema>;

/** How the agent sends the bytes: the API's own streaming PUT, or presigned multipart where bodies cannot pass it. */
export type SnapshotUpload = 'put' | 'multipart';

/** What a snapshot job carries besides its instance. */
export interface SnapshotJobSpec {
  image_id: string;
  /**
   * The job-scoped upload permission: the only thing that lets a host token write image data, and
   * only this image's, only while this job is claimed by its host. Shown only to the claimer.
   */
  upload_grant: string;
  upload: SnapshotUpload;
  /** The reference to move once active (in `namespace`), and what it pointed to when asked (CAS). */
  reference: { text: string; namespace: string; expect: string | null } | null;
  /** Who asked: the reference move is made as them. */
  requested_by: { project: string; user: string; roles: string[] };
}

export interface JobRecord {
  id: string;
  kind: JobKind;
  instance_id: string;
  host_id: string;
  status: JobStatus;
  /** Claims so far (the first claim is attempt 1). */
  attempt: number;
  lease_token: string | null;
  lease_seconds: number | null;
  /** ISO 8601 with milliseconds. */
  lease_expires_at: string | null;
  /** ISO 8601 with milliseconds: the queue's order. */
  enqueued_at: string;
  claimed_at: string | null;
  finished_at: string | null;
  reason: string | null;
  result: JobResult | null;
  /** Snapshot jobs only. */
  snapshot?: SnapshotJobSpec | null;
  version: number;
}

export const ClaimRequestSchema = z.object({
  lease_seconds: z.number().int().min(1).max(MAX_LEASE_SECONDS).default(DEFAULT_LEASE_SECONDS),
});
export const LeaseRequestSchema = z.object({ lease_token: z.string().min(1).max(256) });
export const CompleteRequestSchema = LeaseRequestSchema.extend({
  result: z
    .object({
      console_log: z
        .string()
        .max(1024 * 1024)
        .optional(),
      domain_uuid: z.string().max(64).optional(),
      snapshot: SnapshotReportSchema.optional(),
    })
    .default({}),
});
export const FailRequestSchema = LeaseRequestSchema.extend({
  reason: z
    .string()
    .min(1)
    .max(64 * 1024),
});
export const ObservedRequestSchema = z.object({
  state: z.enum(['running', 'shutoff', 'saved', 'missing']),
  reason: z
    .string()
    .max(64 * 1024)
    .nullish(),
});

export function newJob(input: {
  id: string;
  kind: JobKind;
  instance: Pick<InstanceRecord, 'id' | 'host_id'>;
  now: Date;
  snapshot?: SnapshotJobSpec;
}): JobRecord {
  if ((input.kind === 'snapshot') !== (input.snapshot !== undefined))
    throw new Error('a snapshot job, and only a snapshot job, carries a snapshot spec');
  if (!(JOB_KINDS as readonly string[]).includes(input.kind))
    throw new Error(`unknown job kind ${input.kind}`);
  return {
    id: input.id,
    kind: input.kind,
    instance_id: input.instance.id,
    host_id: input.instance.host_id,
    status: 'pending',
    attempt: 0,
    lease_token: null,
    lease_seconds: null,
    lease_expires_at: null,
    enqueued_at: input.now.toISOString(),
    claimed_at: null,
    finished_at: null,
    reason: null,
    result: null,
    ...(input.snapshot ? { snapshot: input.snapshot } : {}),
    version: 1,
  };
}

export function leaseExpired(job: JobRecord, now: Date): boolean {
  return (
    job.status === 'claimed' &&
    (job.lease_expires_at === null || Date.parse(job.lease_expires_at) <= now.getTime())
  );
}

/** Pending, or claimed with its lease run out. */
export function isClaimable(job: JobRecord, now: Date): boolean {
  return job.status === 'pending' || leaseExpired(job, now);
}

/** Lost its lease MAX_ATTEMPTS times: to be failed rather than handed out again. */
export function isExhausted(job: JobRecord, now: Date): boolean {
  return leaseExpired(job, now) && job.attempt >= MAX_ATTEMPTS;
}

export function claim(job: JobRecord, input: { now: Date; leaseSeconds: number; token: string }): JobRecord {
  if (!isClaimable(job, input.now)) throw new ConflictError(`Job ${job.id} is not claimable.`);
  return {
    ...job,
    status: 'claimed',
    attempt: job.attempt + 1,
    lease_token: input.token,
    lease_seconds: input.leaseSeconds,
    lease_expires_at: new Date(input.now.getTime() + input.leaseSeconds * 1000).toISOString(),
    claimed_at: input.now.toISOString(),
    version: job.version + 1,
  };
}

export class LeaseLostError extends ConflictError {
  override name = 'LeaseLostError';
}

function assertHolds(job: JobRecord, token: string): void {
  if (job.status !== 'claimed' || job.lease_token !== token)
    throw new LeaseLostError(`The lease on job ${job.id} is lost: it was claimed again or has finished.`);
}

/**
 * Extends the lease by its length from now. The holder keeps the job even if the lease ran out,
 * as long as nobody claimed it since (that would have changed the token).
 */
export function renewLease(job: JobRecord, token: string, now: Date): JobRecord {
  assertHolds(job, token);
  const seconds = job.lease_seconds ?? DEFAULT_LEASE_SECONDS;
  return {
    ...job,
    lease_expires_at: new Date(now.getTime() + seconds * 1000).toISOString(),
    version: job.version + 1,
  };
}

export type Finish = { outcome: 'done'; result: JobResult } | { outcome: 'failed'; reason: string };

/**
 * The finished job, or 'repeat' when the holder already reported the same outcome (a retried
 * request: nothing changes). Anything else from a non-holder is a lost lease (409).
 */
export function finish(job: JobRecord, token: string, input: Finish, now: Date): JobRecord | 'repeat' {
  if (job.lease_token === token && job.status === input.outcome) return 'repeat';
  if ((job.status === 'done' || job.status === 'failed') && job.lease_token === token)
    throw new ConflictError(`Job ${job.id} has already ${job.status === 'done' ? 'completed' : 'failed'}.`);
  assertHolds(job, token);
  return finished(job, input, now);
}

/** A job given up by the service itself (MAX_ATTEMPTS lost leases). */
export function giveUp(job: JobRecord, now: Date): JobRecord {
  return finished(
    job,
    {
      outcome: 'failed',
      reason: `gave up after ${job.attempt} attempts: every lease expired before the host finished the job`,
    },
    now,
  );
}

/** A job whose host is lost, ended because its instance was destroyed without it. */
export function abandon(job: JobRecord, reason: string, now: Date): JobRecord {
  return finished(job, { outcome: 'failed', reason }, now);
}

function finished(job: JobRecord, input: Finish, now: Date): JobRecord {
  return {
    ...job,
    status: input.outcome,
    result: input.outcome === 'done' ? input.result : null,
    reason: input.outcome === 'failed' ? input.reason.slice(0, 4000) : null,
    finished_at: now.toISOString(),
    version: job.version + 1,
  };
}

export function expirationEpoch(finishedAt: string, hours: number): number {
  return Math.floor(Date.parse(finishedAt) / 1000) + hours * 3600;
}

/** The fields of a job and of its instance that a claim hands on (the agent tests' fake service has only these). */
export type ClaimedJobFields = Pick<
  JobRecord,
  'id' | 'kind' | 'lease_token' | 'lease_expires_at' | 'attempt' | 'snapshot'
>;
type ClaimedImage = Pick<InstanceImage, 'id' | 'disk_format' | 'size' | 'os_hash_algo' | 'os_hash_value'>;
export type ClaimedInstanceFields = Pick<
  InstanceRecord,
  'id' | 'name' | 'hostname' | 'vcpus' | 'ram_mb' | 'disk_gb' | 'user_data' | 'boot_check'
> & {
  image: ClaimedImage;
  upgrade_to?: { image: ClaimedImage } | null;
  previous_image?: ClaimedImage | null;
};

/** What a claim hands the agent (the contract in agent/src/service-client.ts JobSchema). */
export function renderClaimedJob(job: ClaimedJobFields, instance: ClaimedInstanceFields) {
  return {
    id: job.id,
    kind: job.kind,
    lease_token: job.lease_token,
    lease_expires_at: job.lease_expires_at,
    attempt: job.attempt,
    instance: {
      id: instance.id,
      name: instance.name,
      hostname: instance.hostname,
      vcpus: instance.vcpus,
      ram_mb: instance.ram_mb,
      disk_gb: instance.disk_gb,
      user_data: instance.user_data,
      boot_check: instance.boot_check ?? null,
      image: jobImage(instance.image),
      // An upgrade's new image, and the image of the disk a rollback returns to.
      upgrade_image: instance.upgrade_to ? jobImage(instance.upgrade_to.image) : null,
      previous_image: instance.previous_image ? jobImage(instance.previous_image) : null,
    },
    // The grant is handed to the claimer only: it is what lets this host upload this one image.
    ...(job.snapshot
      ? {
          snapshot: {
            image_id: job.snapshot.image_id,
            upload: job.snapshot.upload,
            upload_grant: `${job.id}.${job.snapshot.upload_grant}`,
          },
        }
      : {}),
  };
}

function jobImage(image: ClaimedImage) {
  return {
    id: image.id,
    disk_format: image.disk_format,
    size: image.size,
    os_hash_algo: image.os_hash_algo,
    os_hash_value: image.os_hash_value,
  };
}
