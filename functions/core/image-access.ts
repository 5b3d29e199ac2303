/**
 * Who may see and change an image, in one place. Another project's image that the caller may
 * not see is reported as missing (404), never as forbidden, so its existence does not leak.
 */
import { ForbiddenError, NotFoundError } from './errors.ts';
import type { ImageRecord } from './image.ts';
import type { ListVisibility } from './list-query.ts';
import type { Principal } from './principal.ts';

export function canRead(image: ImageRecord, principal: Principal): boolean {
  if (image.status === 'deleted') return false;
  if (principal.isAdmin) return true;
  if (image.owner === principal.project) return true;
  return image.visibility === 'public' || image.visibility === 'community';
}

export function notFound(id: string): NotFoundError {
  return new NotFoundError(`No image found with ID ${id}`);
}

/** The image if the caller may read it; 404 otherwise. */
export function readable(image: ImageRecord | null, id: string, principal: Principal): ImageRecord {
  if (!image || !canRead(image, principal)) throw notFound(id);
  return image;
}

/** Owner or admin writes; a reader who is neither gets 403, anyone else 404. */
export function writable(image: ImageRecord | null, id: string, principal: Principal): ImageRecord {
  const visible = readable(image, id, principal);
  if (!principal.isAdmin && visible.owner !== principal.project)
    throw new ForbiddenError(`You are not permitted to modify image ${id}.`);
  return visible;
}

/**
 * Index partitions a list reads for this caller, and the visibility it must then match.
 * Admins read everything; others read their own images, public ones and (later) shared ones.
 */
export function listScopes(
  principal: Principal,
  visibility: ListVisibility | undefined,
  owner: string | undefined,
): string[] {
  if (principal.isAdmin) {
    if (owner !== undefined) return [`owner#${owner}`];
    if (visibility === 'public') return ['public'];
    if (visibility === 'community') return ['community'];
    return ['all'];
  }
  const own = `owner#${principal.project}`;
  switch (visibility) {
    case 'public':
      return ['public'];
    case 'community':
      return ['community'];
    case 'private':
    case 'shared':
      return [own];
    case 'all':
      return [own, 'public', 'community'];
    default:
      return [own, 'public'];
  }
}

/** Visibility filtering that the scopes alone do not give (e.g. `private` within the own partition). */
export function matchesVisibility(
  image: ImageRecord,
  principal: Principal,
  visibility: ListVisibility | undefined,
): boolean {
  if (visibility === undefined) {
    // Glance's default list leaves out other projects' community images.
    return image.visibility !== 'community' || image.owner === principal.project || principal.isAdmin;
  }
  if (visibility === 'all') return true;
  return image.visibility === visibility;
}
