/** Ports of the image records: the repository and its indexes. Adapters in functions/adapters implement them. */
import type { ImageRecord } from './image.ts';

export type SortDir = 'asc' | 'desc';
export interface SortSpec {
  key: string;
  dir: SortDir;
}

/** What a list page needs from the image index; the domain decides scopes, filters and order. */
export interface ImageListSpec {
  /** Index partitions to merge: 'all', 'owner#<project>', 'public', 'community', 'member#<project>#<status>'. */
  scopes: string[];
  /** Full order, tiebreakers included (the first key picks the index). */
  sort: SortSpec[];
  limit: number;
  /** The image the previous page ended with. */
  marker?: ImageRecord;
  /** Applied after reading the index (filters the index cannot express). */
  filter: (image: ImageRecord) => boolean;
  /** Total order matching `sort`, used inside runs of equal first-key values. */
  compare: (a: ImageRecord, b: ImageRecord) => number;
}

export interface ImageRepository {
  /** null when the id was never used; deleted images come back with status 'deleted'. */
  get(id: string): Promise<ImageRecord | null>;
  /** ConflictError when the id exists (or existed). */
  create(image: ImageRecord): Promise<void>;
  /**
   * Writes `next` if the stored version is still `next.version - 1`; throws StaleWriteError
   * otherwise. Index rows are rewritten in the same transaction.
   */
  update(previous: ImageRecord, next: ImageRecord): Promise<void>;
  list(spec: ImageListSpec): Promise<ImageRecord[]>;
}

/** Images holding a lease (core/images/lease.ts), earliest expiry first: the sweep's Query, no Scan. */
export interface LeaseIndex {
  /** Up to `limit` images whose lease expires at or before `before` (every lease when null). */
  expiredLeases(before: Date | null, limit: number): Promise<ImageRecord[]>;
}
