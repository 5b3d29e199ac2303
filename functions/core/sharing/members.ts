/**
 * Image sharing (Glance's image members): producers (the owner, or an admin) add and remove
 * consumer projects as members of a `shared` image but never set a member's status; a consumer
 * sets only its own status (pending, accepted, rejected, back to pending) and cannot add or
 * remove itself. The owner sees every member, a consumer only itself, anyone else gets 404.
 *
 * Checks run in Glance's order: the body's shape (400), then the image (404), then whether it is
 * shared (403), then the member (404), then the caller's right to act (403), then the status
 * value (400). Every write re-reads the image and retries when another write got in first.
 */

import { canReadAsOwner, canWrite, memberStatusOf, readable } from '../images/access.ts';
import { type ImageRecord, MEMBER_STATUSES, type MemberStatus } from '../images/image.ts';
import {
  BadRequestError,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  TooLargeError,
} from '../kernel/errors.ts';
import { canWriteProject, type Principal } from '../kernel/principal.ts';
import { retryOnStale } from '../kernel/retry.ts';
import { isoSeconds } from '../kernel/time.ts';
import type { ImageMember, MembershipRepository, MemberWrite } from './ports.ts';

export const MEMBER_SCHEMA_PATH = '/v2/schemas/member';
export const MEMBERS_SCHEMA_PATH = '/v2/schemas/members';

/** The member_id column is 255 characters wide in Glance. */
const MAX_MEMBER_ID = 255;

export interface MemberQuotas {
  /** Glance's image_member_quota (128); negative means unlimited. */
  members: number;
}

/** The `member` of `{"member": "<project>"}` (POST .../members). */
export function parseNewMember(body: unknown): string {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !Object.hasOwn(body, 'member'))
    throw new BadRequestError('Member to be added not specified');
  const member = (body as { member: unknown }).member;
  if (!member) throw new BadRequestError("Member can't be empty");
  if (typeof member !== 'string')
    throw new BadRequestError('Expected a member in the form: {"member": "image_id"}');
  if ([...member].length > MAX_MEMBER_ID)
    throw new BadRequestError(`Member ID is too long: at most ${MAX_MEMBER_ID} characters are allowed.`);
  return member;
}

/** The raw `status` of `{"status": ...}` (PUT .../members/{member}); its value is checked later. */
export function parseStatusBody(body: unknown): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !Object.hasOwn(body, 'status'))
    throw new BadRequestError('Status not specified');
  return (body as { status: unknown }).status;
}

export function validateStatus(status: unknown): MemberStatus {
  if (typeof status === 'string' && (MEMBER_STATUSES as readonly string[]).includes(status))
    return status as MemberStatus;
  throw new BadRequestError('Incorrect request: Status must be "pending", "accepted" or "rejected".');
}

export function renderMember(member: ImageMember): Record<string, unknown> {
  return {
    member_id: member.member_id,
    image_id: member.image_id,
    status: member.status,
    created_at: member.created_at,
    updated_at: member.updated_at,
    schema: MEMBER_SCHEMA_PATH,
  };
}

export function renderMembers(members: readonly ImageMember[]): Record<string, unknown> {
  return { members: members.map(renderMember), schema: MEMBERS_SCHEMA_PATH };
}

function memberNotFound(memberId: string, imageId: string): NotFoundError {
  return new NotFoundError(`${memberId} not found in the member list of the image ${imageId}.`);
}

/** Producers see every member; a consumer sees only its own membership. */
function canSeeMember(image: ImageRecord, memberId: string, principal: Principal): boolean {
  return canReadAsOwner(image, principal) || memberId === principal.project;
}

/** Member lists exist only on shared images (a private image keeps its list, but hides it). */
function requireShared(image: ImageRecord, action: string): void {
  if (image.visibility !== 'shared')
    throw new ForbiddenError(
      `Not allowed to ${action} members for image ${image.id}: Only shared images have members.`,
    );
}

/** The member the caller may see, or 404 whether it is unknown or merely someone else's. */
function lookupMember(image: ImageRecord, memberId: string, principal: Principal): MemberStatus {
  const status = memberStatusOf(image, memberId);
  if (status === undefined || !canSeeMember(image, memberId, principal))
    throw memberNotFound(memberId, image.id);
  return status;
}

interface PlannedWrite<T> {
  next: ImageRecord;
  write: MemberWrite;
  result: T;
}

export class MembersService {
  constructor(
    private readonly repo: MembershipRepository,
    private readonly quotas: MemberQuotas,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async add(principal: Principal, imageId: string, body: unknown): Promise<ImageMember> {
    const memberId = parseNewMember(body);
    return this.write(principal, imageId, async (image) => {
      const refused = `Not allowed to create members for image ${imageId}.`;
      if (!canWrite(image, principal) || image.visibility !== 'shared') throw new ForbiddenError(refused);
      const members = image.member_statuses ?? [];
      // As Glance's quota layer: the quota is checked before the duplicate.
      const attempted = members.length + 1;
      if (this.quotas.members >= 0 && attempted > this.quotas.members)
        throw new TooLargeError(
          `Image member limit exceeded for image ${imageId}: The limit has been exceeded on the number of allowed image members for this image. Attempted: ${attempted}, Maximum: ${this.quotas.members}:`,
        );
      if (memberStatusOf(image, memberId) !== undefined)
        throw new ConflictError(`Member ${memberId} is duplicated for image ${imageId}`);
      const now = isoSeconds(this.clock());
      const member: ImageMember = {
        image_id: imageId,
        member_id: memberId,
        status: 'pending',
        created_at: now,
        updated_at: now,
      };
      return {
        next: { ...image, member_statuses: [...members, [memberId, 'pending']] },
        write: { put: member },
        result: member,
      };
    });
  }

  /** The members the caller may see, in the order they were added (as Glance lists them). */
  async list(principal: Principal, imageId: string): Promise<ImageMember[]> {
    const image = readable(await this.repo.get(imageId), imageId, principal);
    requireShared(image, 'list');
    const wanted = (image.member_statuses ?? []).filter(([memberId]) =>
      canSeeMember(image, memberId, principal),
    );
    if (wanted.length === 0) return [];
    const items = new Map((await this.repo.listMembers(imageId)).map((item) => [item.member_id, item]));
    // The record is the authority on who is a member; the items add the timestamps.
    return wanted.flatMap(([memberId]) => {
      const item = items.get(memberId);
      return item ? [item] : [];
    });
  }

  async show(principal: Principal, imageId: string, memberId: string): Promise<ImageMember> {
    const image = readable(await this.repo.get(imageId), imageId, principal);
    // Glance turns every refusal here into a 404, so nothing leaks about other members.
    if (image.visibility !== 'shared') throw memberNotFound(memberId, imageId);
    lookupMember(image, memberId, principal);
    const item = await this.repo.getMember(imageId, memberId);
    if (!item) throw memberNotFound(memberId, imageId);
    return item;
  }

  async updateStatus(
    principal: Principal,
    imageId: string,
    memberId: string,
    body: unknown,
  ): Promise<ImageMember> {
    const requested = parseStatusBody(body);
    return this.write(principal, imageId, async (image) => {
      requireShared(image, 'update');
      lookupMember(image, memberId, principal);
      // Only the consumer's members (or an admin) answer the offer; the producer may not.
      if (!canWriteProject(principal, memberId))
        throw new ForbiddenError(`Not allowed to update members for image ${imageId}.`);
      const status = validateStatus(requested);
      const item = await this.repo.getMember(imageId, memberId);
      if (!item) throw memberNotFound(memberId, imageId);
      const member: ImageMember = { ...item, status, updated_at: isoSeconds(this.clock()) };
      return {
        next: {
          ...image,
          member_statuses: (image.member_statuses ?? []).map(([id, current]): [string, MemberStatus] =>
            id === memberId ? [id, status] : [id, current],
          ),
        },
        write: { put: member },
        result: member,
      };
    });
  }

  async remove(principal: Principal, imageId: string, memberId: string): Promise<void> {
    await this.write(principal, imageId, async (image) => {
      requireShared(image, 'delete');
      lookupMember(image, memberId, principal);
      // A consumer cannot remove itself; only the producer (or an admin) removes members.
      if (!canWrite(image, principal))
        throw new ForbiddenError(`Not allowed to delete members for image ${imageId}.`);
      const remaining = (image.member_statuses ?? []).filter(([id]) => id !== memberId);
      const next: ImageRecord = { ...image, member_statuses: remaining };
      if (remaining.length === 0) delete next.member_statuses;
      return { next, write: { delete: memberId }, result: undefined };
    });
  }

  /** Reads, plans and writes under the record's version until no other write got in between. */
  private write<T>(
    principal: Principal,
    imageId: string,
    plan: (image: ImageRecord) => Promise<PlannedWrite<T>>,
  ): Promise<T> {
    return retryOnStale(async () => {
      const image = readable(await this.repo.get(imageId), imageId, principal);
      const planned = await plan(image);
      // Membership is not image metadata: updated_at stays, only the version moves.
      const next = { ...planned.next, version: image.version + 1 };
      await this.repo.updateMembership(image, next, planned.write);
      return planned.result;
    });
  }
}
