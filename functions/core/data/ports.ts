/** Ports of the byte stores (the images bucket, the upload and staging buckets) and the digester. */

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
