/** Ports of image membership. Adapters in functions/adapters implement them. */
import type { ImageRecord, MemberStatus } from '../images/image.ts';

/** One consumer project of a shared image, as stored and as the API shows it. */
export interface ImageMember {
  image_id: string;
  member_id: string;
  status: MemberStatus;
  created_at: string;
  updated_at: string;
}

/** The member item a membership write adds, replaces or removes along with the image record. */
export type MemberWrite = { put: ImageMember } | { delete: string };

/**
 * Membership storage. A membership write changes the image record (its member_statuses) and the
 * member item in one conditional write: the record's version guards both, so a concurrent image
 * update and member change cannot leave the listing index stale.
 */
export interface MembershipRepository {
  get(id: string): Promise<ImageRecord | null>;
  /** Like ImageRepository.update, plus the member item; StaleWriteError when the version moved. */
  updateMembership(previous: ImageRecord, next: ImageRecord, member: MemberWrite): Promise<void>;
  getMember(imageId: string, memberId: string): Promise<ImageMember | null>;
  /** Every member item of the image (any order). */
  listMembers(imageId: string): Promise<ImageMember[]>;
}
