/** Ports the domain needs from storage. Adapters in functions/adapters implement them. */
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

export interface BlobStore {
  /** Streams `source` to a new object; never overwrites an existing one. */
  put(key: string, source: AsyncIterable<Buffer>, hooks: BlobPutHooks): Promise<{ size: number }>;
  get(key: string, range?: { start: number; end: number }): Promise<import('node:stream').Readable>;
  delete(key: string): Promise<void>;
  exists(key: string): Promise<boolean>;
  presignedGet(key: string, expiresSeconds: number): Promise<string>;
}

export interface BlobPutHooks {
  /** Sees every block, in order, exactly once, before it is sent (hashing, size checks). */
  onBlock(block: Buffer): Promise<void> | void;
}

/** md5 + sha512 of a byte stream, fed block by block (the adapter hashes on worker threads). */
export interface StreamDigester {
  update(block: Buffer): Promise<void>;
  finish(): Promise<{ md5: string; sha512: string }>;
  cancel(): void;
}
