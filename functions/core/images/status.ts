/**
 * The image status state machine (Glance's Image.valid_state_targets) and the status rules the
 * handlers share: data needs formats, deactivate/reactivate, delete, download of deactivated images.
 */
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import { isoSeconds } from '../kernel/time.ts';
import { type ImageRecord, type ImageStatus, LEASED_STATUSES } from './image.ts';

export const VALID_TRANSITIONS: Readonly<Record<ImageStatus, readonly ImageStatus[]>> = {
  queued: ['saving', 'uploading', 'importing', 'active', 'deleted'],
  // Back to queued: a failed upload restores the image so the upload can be retried.
  saving: ['active', 'killed', 'deleted', 'queued'],
  uploading: ['importing', 'queued', 'deleted'],
  importing: ['active', 'deleted', 'queued'],
  active: ['pending_delete', 'deleted', 'deactivated'],
  deactivated: ['active', 'deleted'],
  pending_delete: ['deleted', 'active'],
  killed: ['deleted'],
  deleted: [],
};

export function canTransition(from: ImageStatus, to: ImageStatus): boolean {
  return VALID_TRANSITIONS[from].includes(to);
}

/** ConflictError (409) with Glance's InvalidImageStatusTransition message. */
export function assertTransition(from: ImageStatus, to: ImageStatus): void {
  if (!canTransition(from, to))
    throw new ConflictError(`Image status transition from ${from} to ${to} is not allowed`);
}

/** BadRequestError (400) unless disk_format and container_format are both set. */
export function requireFormatsForData(image: Pick<ImageRecord, 'disk_format' | 'container_format'>): void {
  const missing = (['disk_format', 'container_format'] as const).filter((key) => !image[key]);
  if (missing.length === 1)
    throw new BadRequestError(`Property ${missing[0]} must be set prior to saving data.`);
  if (missing.length > 1)
    throw new BadRequestError(`Properties ${missing.join(', ')} must be set prior to saving data.`);
}

/**
 * Moves `image` to status `to` as Glance's status setter does: the transition must be valid,
 * data-bearing statuses need formats when leaving queued/uploading, and going back to queued
 * forgets the sizes. Returns a new record; the caller bumps the version and persists.
 */
export function transitionImage(image: ImageRecord, to: ImageStatus, now: Date): ImageRecord {
  assertTransition(image.status, to);
  if (
    (image.status === 'queued' || image.status === 'uploading') &&
    ['saving', 'active', 'importing'].includes(to)
  )
    requireFormatsForData(image);
  const next: ImageRecord = { ...image, status: to, updated_at: isoSeconds(now) };
  // A lease only means something while bytes are in flight; whatever ends that ends the lease.
  if (!LEASED_STATUSES.has(to)) delete next.lease;
  if (to === 'queued') {
    next.size = null;
    next.virtual_size = null;
  }
  return next;
}

export interface StatusChange {
  image: ImageRecord;
  /** false for an idempotent no-op: nothing needs to be written. */
  changed: boolean;
}

/** POST /actions/deactivate: active → deactivated; already deactivated is a no-op; else 403. */
export function deactivateImage(image: ImageRecord, now: Date): StatusChange {
  if (image.status === 'deactivated') return { image, changed: false };
  if (image.status !== 'active')
    throw new ForbiddenError(`Not allowed to deactivate image in status '${image.status}'`);
  return { image: transitionImage(image, 'deactivated', now), changed: true };
}

/** POST /actions/reactivate: deactivated → active; already active is a no-op; else 403. */
export function reactivateImage(image: ImageRecord, now: Date): StatusChange {
  if (image.status === 'active') return { image, changed: false };
  if (image.status !== 'deactivated')
    throw new ForbiddenError(`Not allowed to reactivate image in status '${image.status}'`);
  return { image: transitionImage(image, 'active', now), changed: true };
}

/** DELETE: a deleted image is gone (404); a protected one stays, even for admins (403). */
export function assertDeletable(image: ImageRecord): void {
  if (image.status === 'deleted') throw new NotFoundError(`Failed to find image ${image.id} to delete`);
  if (image.protected) throw new ForbiddenError(`Image ${image.id} is protected and cannot be deleted.`);
}

/**
 * The record after DELETE. With `delayed` (Glance's delayed_delete) an image that has data goes
 * to pending_delete so a scrubber can remove the data later; otherwise straight to deleted.
 */
export function deleteImage(image: ImageRecord, now: Date, options: { delayed?: boolean } = {}): ImageRecord {
  assertDeletable(image);
  const target: ImageStatus =
    options.delayed && image.blob_key !== null && canTransition(image.status, 'pending_delete')
      ? 'pending_delete'
      : 'deleted';
  return transitionImage(image, target, now);
}

/** GET /file: a deactivated image's data is for admins only. */
export function assertDownloadable(image: ImageRecord, principal: Principal): void {
  if (image.status === 'deactivated' && !principal.isAdmin)
    throw new ForbiddenError('The requested image has been deactivated. Image data download is forbidden.');
}
