/**
 * Snapshots of an instance's disk (Nova's "create image from server"): the request, the image the
 * service makes for it, the job the host runs, and how the job's report is checked. Pure: no I/O.
 *
 *   POST .../actions/snapshot -> image queued (owner: the instance's project) + a `snapshot` job
 *   agent: standalone qcow2 of the disk -> PUT /v2/images/{id}/file with the job's upload grant
 *   (image saving -> active, md5 + sha512 computed by the service as for any upload)
 *   job done -> the service checks the image is active with the sha512 the agent sent, then moves
 *   the reference (if asked); job failed -> the image is deleted (its data freed), the instance
 *   keeps its stage and gets last_error.
 */
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { ImageRecord } from '../images/image.ts';
import { BadRequestError, ConflictError, ForbiddenError } from '../kernel/errors.ts';
import { isoSeconds } from '../kernel/time.ts';
import type { InstanceRecord, Stage } from './records.ts';
import type { JobRecord, JobResult } from './work-queue.ts';

/** A disk is read consistently only from these: a Building one is not made yet, an Error one may not exist. */
export const SNAPSHOT_FROM: readonly Stage[] = ['Running', 'Sleep', 'Shutoff'];

/** Nova's provenance properties on a server image, plus Hangar's (the base's sha512). */
export const PROVENANCE_KEYS = [
  'image_type',
  'instance_uuid',
  'base_image_ref',
  'hangar_base_sha512',
] as const;

export const SnapshotRequestSchema = z.strictObject({
  name: z.string().trim().min(1).max(255),
  /** A name:tag in the caller's project, moved to the snapshot once it is active. */
  reference: z.string().min(1).max(300).optional(),
  properties: z.record(z.string().min(1).max(255), z.string().max(65535)).optional(),
});
export type SnapshotRequest = z.infer<typeof SnapshotRequestSchema>;

/** The stage check, with Nova's wording: a 409 that says what the instance is and what it needs. */
export function assertSnapshottable(instance: InstanceRecord): void {
  // The stage first: a Building instance always has its build pending, and the stage is the reason.
  if (!SNAPSHOT_FROM.includes(instance.stage))
    throw new ConflictError(
      `Cannot snapshot instance ${instance.id} while it is ${instance.stage} ` +
        `(snapshot needs ${SNAPSHOT_FROM.join(', ')}).`,
    );
  if (instance.pending_job)
    throw new ConflictError(
      `Instance ${instance.id} has a ${instance.pending_job.kind} job pending; try again once it has finished.`,
    );
}

/** The POST /v2/images body for the snapshot: qcow2, in the instance's project, with provenance. */
export function snapshotImageBody(
  instance: InstanceRecord,
  request: SnapshotRequest,
  asAdminForOtherProject: boolean,
): Record<string, unknown> {
  const extra = request.properties ?? {};
  for (const key of PROVENANCE_KEYS)
    if (Object.hasOwn(extra, key))
      throw new BadRequestError(`Invalid snapshot: property ${key} is set by the service (provenance).`);
  return {
    ...extra,
    name: request.name,
    disk_format: 'qcow2',
    container_format: 'bare',
    ...(asAdminForOtherProject ? { owner: instance.project } : {}),
    image_type: 'snapshot',
    instance_uuid: instance.id,
    base_image_ref: instance.image.id,
    hangar_base_sha512: instance.image.os_hash_value,
  };
}

/** The instance with the snapshot job pending; its stage does not change. */
export function requestSnapshot(instance: InstanceRecord, jobId: string, now: Date): InstanceRecord {
  assertSnapshottable(instance);
  return {
    ...instance,
    pending_job: { id: jobId, kind: 'snapshot' },
    updated_at: isoSeconds(now),
    version: instance.version + 1,
  };
}

/** The grant as the agent presents it (X-Hangar-Upload-Grant): `<job id>.<secret>` (work-queue.ts renderClaimedJob). */
export function parseGrant(text: string): { jobId: string; secret: string } {
  const dot = text.indexOf('.');
  if (dot <= 0 || dot === text.length - 1)
    throw new ForbiddenError('The upload grant is malformed (expected <job id>.<secret>).');
  return { jobId: text.slice(0, dot), secret: text.slice(dot + 1) };
}

/**
 * 403 unless `job` grants its host the upload of `imageId` now: a snapshot job of that host, for
 * that image, claimed (not pending, not finished), with the same secret.
 */
export function assertGrants(
  job: JobRecord | null,
  grant: { jobId: string; secret: string },
  hostId: string,
  imageId: string,
): void {
  const refuse = (why: string) =>
    new ForbiddenError(`This upload grant does not permit uploading data to image ${imageId}: ${why}.`);
  const spec = job?.snapshot;
  if (!job || !spec || job.kind !== 'snapshot') throw refuse('no such snapshot job');
  const given = Buffer.from(grant.secret);
  const expected = Buffer.from(spec.upload_grant);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw refuse('wrong secret');
  if (job.host_id !== hostId) throw refuse(`the job belongs to host ${job.host_id}`);
  if (spec.image_id !== imageId) throw refuse('the job is for another image');
  if (job.status !== 'claimed') throw refuse(`the job is ${job.status}`);
}

/**
 * Why the service refuses a completed snapshot (null: it is good): the image must be active with
 * the sha512 (and md5) the agent computed over the bytes it sent.
 */
export function verifySnapshot(image: ImageRecord | null, result: JobResult): string | null {
  const sent = result.snapshot;
  if (!sent) return 'the agent reported no snapshot digests';
  if (!image) return 'the snapshot image is gone';
  if (image.status !== 'active') return `the snapshot image is ${image.status}, not active`;
  if (image.os_hash_value !== sent.os_hash_value)
    return `sha512 mismatch: the service stored ${image.os_hash_value}, the agent sent ${sent.os_hash_value}`;
  if (image.checksum !== sent.checksum)
    return `md5 mismatch: the service stored ${image.checksum}, the agent sent ${sent.checksum}`;
  if (image.size !== sent.size) return `size mismatch: ${image.size} stored, ${sent.size} sent`;
  return null;
}
