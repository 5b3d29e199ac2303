/**
 * The ObjectStore of the S3 buckets when the images "bucket" is a directory (HANGAR_BLOB_STORE=fs):
 * the upload and staging buckets stay in S3, and a ref to the images bucket is served by the
 * FsBlobStore. A copy into the images bucket (the S3-drop import's first step) reads exactly the
 * pinned version of the S3 object once and writes it as a new immutable file.
 */
import type { Readable } from 'node:stream';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { ObjectPin, ObjectRef, ObjectStore, OpenedObject } from '#core/data/ports';
import { s3 } from '../aws-clients.ts';
import type { FsBlobStore } from './blob-store.ts';

export class FsBucketObjects implements ObjectStore {
  constructor(
    private readonly s3Objects: ObjectStore,
    private readonly imagesBucket: string,
    private readonly files: FsBlobStore,
  ) {}

  private local(ref: ObjectRef): boolean {
    return ref.bucket === this.imagesBucket;
  }

  async open(ref: ObjectRef): Promise<OpenedObject> {
    if (!this.local(ref)) return this.s3Objects.open(ref);
    const size = await this.files.size(ref.key);
    if (size === null) throw new Error(`no object ${ref.key} in ${ref.bucket}`);
    const body = await this.files.get(ref.key);
    return { body, size, pin: {}, abort: () => body.destroy() };
  }

  async copy(from: ObjectRef, pin: ObjectPin, to: ObjectRef, size: number): Promise<void> {
    if (!this.local(to)) return this.s3Objects.copy(from, pin, to, size);
    if (this.local(from)) throw new Error('copies within the images directory are not supported');
    // IfMatch and the version: the bytes copied are those `head` saw, or the read fails.
    const out = await s3().send(
      new GetObjectCommand({
        Bucket: from.bucket,
        Key: from.key,
        ...(pin.etag ? { IfMatch: pin.etag } : {}),
        ...(pin.versionId ? { VersionId: pin.versionId } : {}),
      }),
    );
    const body = out.Body as Readable;
    try {
      await this.files.put(to.key, body, { onBlock: () => undefined }, size);
    } finally {
      body.destroy();
    }
  }

  async head(
    ref: ObjectRef,
  ): Promise<{ size: number; pin: ObjectPin; metadata: Record<string, string> } | null> {
    if (!this.local(ref)) return this.s3Objects.head(ref);
    const size = await this.files.size(ref.key);
    return size === null ? null : { size, pin: {}, metadata: {} };
  }

  delete(ref: ObjectRef): Promise<void> {
    return this.local(ref) ? this.files.delete(ref.key) : this.s3Objects.delete(ref);
  }
}
