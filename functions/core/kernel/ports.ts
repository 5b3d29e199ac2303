/** Ports the domain needs from storage. Adapters in functions/adapters implement them. */
import type { ImageRecord, MemberStatus } from '../images/image.ts';
import type { TaskRecord } from '../tasks/task.ts';

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

export interface BlobStore {
  /** Streams `source` to a new object; never overwrites an existing one. */
  /** `expectedSize`, when the caller knows it, lets the store send one streamed PUT instead of parts. */
  put(
    key: string,
    source: AsyncIterable<Buffer>,
    hooks: BlobPutHooks,
    expectedSize?: number,
  ): Promise<{ size: number }>;
  get(key: string, range?: { start: number; end: number }): Promise<import('node:stream').Readable>;
  delete(key: string): Promise<void>;
  exists(key: string): Promise<boolean>;
  presignedGet(key: string, expiresSeconds: number): Promise<string>;
  /** Aborts a multipart upload of `key`; one that is already gone is not an error. */
  abortMultipart(key: string, uploadId: string): Promise<void>;
  /** Deletes every object whose key starts with `prefix`; returns how many. */
  deletePrefix(prefix: string): Promise<number>;
}

export interface BlobPutHooks {
  /** Sees every block, in order, exactly once, before it is sent (hashing, size checks). */
  onBlock(block: Buffer): Promise<void> | void;
  /** Called once when the store starts a multipart upload for the object, with S3's id. */
  onMultipartStart?(uploadId: string): Promise<void> | void;
}

/** md5 + sha512 of a byte stream, fed block by block (the adapter hashes on worker threads). */
export interface StreamDigester {
  update(block: Buffer): Promise<void>;
  finish(): Promise<{ md5: string; sha512: string }>;
  cancel(): void;
}

// ---------------------------------------------------------------------------------------------
// Tasks, imports and exports.

export interface TaskListSpec {
  limit: number;
  /** Newest first unless false. */
  descending: boolean;
  /** The task the previous page ended with. */
  marker?: TaskRecord;
  /** Applied after reading the index (status/type filters). */
  filter: (task: TaskRecord) => boolean;
}

export interface TaskRepository {
  get(id: string): Promise<TaskRecord | null>;
  /** ConflictError when the id exists. Also indexes the task under its image. */
  create(task: TaskRecord): Promise<void>;
  /** Writes `next` if the stored version is still `next.version - 1`; StaleWriteError otherwise. */
  update(previous: TaskRecord, next: TaskRecord): Promise<void>;
  list(spec: TaskListSpec): Promise<TaskRecord[]>;
  listForImage(imageId: string): Promise<TaskRecord[]>;
}

export type WorkflowName = 'import' | 'export' | 'publish';

/**
 * Answers a state machine's `.waitForTaskToken` state (SendTaskSuccess / SendTaskFailure on AWS,
 * the local runner in the embedded backend). A token nobody waits for any more is not an error
 * of the caller's: implementations log it and return.
 */
export interface TaskTokenNotifier {
  succeed(token: string, output: Record<string, unknown>): Promise<void>;
  fail(token: string, error: string, cause: string): Promise<void>;
}

/** Starts a state machine execution. Idempotent per execution name: a repeat is a no-op. */
export interface WorkflowStarter {
  start(workflow: WorkflowName, executionName: string, input: Record<string, unknown>): Promise<void>;
}

/** What an S3 event claimed, so a redelivered event finds the same task and image ids. */
export interface EventMarker {
  eventId: string;
  taskId: string;
  imageId: string;
  /** Set once the event's work was started (or recorded as refused). */
  done: boolean;
}

export interface EventMarkers {
  /** Stores `proposal` unless a marker for its eventId exists; returns whichever is stored. */
  claim(proposal: EventMarker): Promise<EventMarker>;
  markDone(eventId: string): Promise<void>;
}

export interface ObjectRef {
  bucket: string;
  key: string;
}

/** Identifies the exact object version that was read, so a copy can take the same bytes. */
export interface ObjectPin {
  etag?: string;
  versionId?: string;
}

export interface OpenedObject {
  body: AsyncIterable<Buffer>;
  size: number;
  pin: ObjectPin;
  /** Stops reading (on failure). */
  abort(): void;
}

/** Objects in the upload and staging buckets (the images bucket has BlobStore). */
export interface ObjectStore {
  open(ref: ObjectRef): Promise<OpenedObject>;
  /** Server-side copy of exactly the pinned version (`size` bytes); never overwrites `to`. */
  copy(from: ObjectRef, pin: ObjectPin, to: ObjectRef, size: number): Promise<void>;
  /** Size, version pin and user metadata (lower-case keys), or null when the object is gone. */
  head(ref: ObjectRef): Promise<{ size: number; pin: ObjectPin; metadata: Record<string, string> } | null>;
  delete(ref: ObjectRef): Promise<void>;
}

/** Fetches web-download URLs under the SSRF policy (core/transfer/url-filter.ts). */
export interface WebFetcher {
  /** Throws UrlRefused when the URL (form, or any address its host resolves to) is not allowed. */
  vet(uri: string): Promise<void>;
  open(uri: string): Promise<{ body: AsyncIterable<Buffer>; size: number | undefined; abort(): void }>;
}

/** Converts an image blob to another disk format and stores the result with its sha512. */
export interface ImageExporter {
  export(spec: {
    blobKey: string;
    sourceFormat: string;
    targetFormat: string;
    destination: ObjectRef;
  }): Promise<{ size: number; sha512: string }>;
}

/** Presigned S3 multipart uploads into the upload bucket (bodies too large for API Gateway/Lambda). */
export interface MultipartUploads {
  start(
    ref: ObjectRef,
    partCount: number,
    expiresSeconds: number,
  ): Promise<{ uploadId: string; partUrls: string[] }>;
  complete(
    ref: ObjectRef,
    uploadId: string,
    parts: ReadonlyArray<{ partNumber: number; etag: string }>,
  ): Promise<void>;
  abort(ref: ObjectRef, uploadId: string): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Image members (image-members.ts).

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
