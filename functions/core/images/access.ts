/**
 * Who may see and change an image, in one place. Another project's image that the caller may
 * not see is reported as missing (404), never as forbidden, so its existence does not leak.
 *
 * Roles (core/kernel/principal.ts decides them): an admin reads and writes every image; the owner
 * project's readers read its images and only its members write them (a reader that can see the
 * image gets 403, as in Glance); every reader reads public and community images; readers of a
 * project that a `shared` image is shared with read it whatever their member status (pending,
 * accepted or rejected), but never write it. Image data is downloaded by members and admins only
 * (Glance's download_image needs `member`). A token with no reader, member or admin role sees no
 * image. A `private` image keeps its member list but ignores it (Glance: making a shared image
 * private cuts the members off, making it shared again lets them back in).
 */
import { ForbiddenError, NotFoundError } from '../kernel/errors.ts';
import {
  canReadProject,
  canWriteProject,
  hasMemberRole,
  hasReaderRole,
  isHostAgent,
  type Principal,
} from '../kernel/principal.ts';
import type { ImageRecord, MemberStatus } from './image.ts';
import type { ListVisibility, MemberStatusFilter } from './list-query.ts';

/** The project's member status on `image`, or undefined when it is not a member. */
export function memberStatusOf(image: ImageRecord, project: string): MemberStatus | undefined {
  return image.member_statuses?.find(([member]) => member === project)?.[1];
}

/** Membership that grants access: only `shared` images honour their member list. */
export function isActiveMember(image: ImageRecord, project: string): boolean {
  return image.visibility === 'shared' && memberStatusOf(image, project) !== undefined;
}

export function isOwner(image: ImageRecord, principal: Principal): boolean {
  return image.owner !== null && image.owner === principal.project;
}

export function canRead(image: ImageRecord, principal: Principal): boolean {
  if (image.status === 'deleted') return false;
  if (principal.isAdmin) return true;
  if (isHostAgent(principal)) return true;
  if (!hasReaderRole(principal)) return false;
  if (isOwner(image, principal)) return true;
  if (image.visibility === 'public' || image.visibility === 'community') return true;
  return isActiveMember(image, principal.project);
}

/** Data and properties: members of the owner project, or an admin; everyone else is read-only. */
export function canWrite(image: ImageRecord, principal: Principal): boolean {
  return canWriteProject(principal, image.owner);
}

/** Who sees every member of the image (producers): the owner project's readers, and admins. */
export function canReadAsOwner(image: ImageRecord, principal: Principal): boolean {
  return canReadProject(principal, image.owner);
}

// Glance's download_image needs `member`: a reader sees the metadata only. Host agents (role
// `host`) read and download any image, the image of any instance placed on their host; they write none.
function canDownload(principal: Principal): boolean {
  return hasMemberRole(principal) || isHostAgent(principal);
}

export function notFound(id: string): NotFoundError {
  return new NotFoundError(`No image found with ID ${id}`);
}

/** The image if the caller may read it; 404 otherwise. */
export function readable(image: ImageRecord | null, id: string, principal: Principal): ImageRecord {
  if (!image || !canRead(image, principal)) throw notFound(id);
  return image;
}

/** The image's data, if the caller may read the image (else 404) and download (else 403). */
export function downloadable(image: ImageRecord | null, id: string, principal: Principal): ImageRecord {
  const visible = readable(image, id, principal);
  if (!canDownload(principal))
    throw new ForbiddenError('You are not authorized to complete download_image action.');
  return visible;
}

/** Owner members or admin write; a caller who sees the image but may not write gets 403, anyone else 404. */
export function writable(image: ImageRecord | null, id: string, principal: Principal): ImageRecord {
  const visible = readable(image, id, principal);
  if (!canWrite(visible, principal)) throw new ForbiddenError(`You are not permitted to modify image ${id}.`);
  return visible;
}

/**
 * The index partitions (scopes) images are listed under, written here once: listScopes reads
 * them, and the adapters' listing rows (adapters/dynamo/keys.ts scopesOf) are written under them.
 */
export const SCOPE_ALL = 'all';
export const SCOPE_PUBLIC = 'public';
export const SCOPE_COMMUNITY = 'community';
export const ownerScope = (project: string) => `owner#${project}`;
export const memberScope = (project: string, status: MemberStatus) => `member#${project}#${status}`;

function memberScopes(project: string, memberStatus: MemberStatusFilter): string[] {
  const statuses = memberStatus === 'all' ? (['pending', 'accepted', 'rejected'] as const) : [memberStatus];
  return statuses.map((status) => memberScope(project, status));
}

/**
 * Index partitions a list reads for this caller. They only narrow the search: every row read is
 * then re-checked with matchesVisibility, which alone decides what is shown. Admins read
 * everything; others their own images, public ones, community ones when asked, and images shared
 * with them (the partition of their project and the member status asked for, default accepted).
 */
export function listScopes(
  principal: Principal,
  visibility: ListVisibility | undefined,
  owner: string | undefined,
  memberStatus: MemberStatusFilter = 'accepted',
): string[] {
  if (principal.isAdmin) {
    if (owner !== undefined) return [ownerScope(owner)];
    if (visibility === 'public') return [SCOPE_PUBLIC];
    if (visibility === 'community') return [SCOPE_COMMUNITY];
    return [SCOPE_ALL];
  }
  const own = ownerScope(principal.project);
  const shared = memberScopes(principal.project, memberStatus);
  switch (visibility) {
    case 'public':
      return [SCOPE_PUBLIC];
    case 'community':
      return [SCOPE_COMMUNITY];
    case 'private':
      return [own];
    case 'shared':
      return [own, ...shared];
    case 'all':
      return [own, SCOPE_PUBLIC, SCOPE_COMMUNITY, ...shared];
    default:
      return [own, SCOPE_PUBLIC, ...shared];
  }
}

/**
 * Whether a list shows `image` to the caller: Glance's _select_images_query. A non-admin sees the
 * union of its own images, public and community ones, and shared images it is a member of with
 * the asked member status (`all`: any); then `visibility` narrows that (none: everything but other
 * projects' community images). Admins see every image, narrowed the same way.
 */
export function matchesVisibility(
  image: ImageRecord,
  principal: Principal,
  visibility: ListVisibility | undefined,
  memberStatus: MemberStatusFilter = 'accepted',
): boolean {
  if (image.status === 'deleted') return false;
  if (!principal.isAdmin) {
    const status = image.visibility === 'shared' ? memberStatusOf(image, principal.project) : undefined;
    const reachable =
      isOwner(image, principal) ||
      image.visibility === 'public' ||
      image.visibility === 'community' ||
      (status !== undefined && (memberStatus === 'all' || status === memberStatus));
    if (!reachable) return false;
  }
  if (visibility === undefined) {
    // Glance's default list leaves out other projects' community images.
    return image.visibility !== 'community' || isOwner(image, principal) || principal.isAdmin;
  }
  if (visibility === 'all') return true;
  return image.visibility === visibility;
}
