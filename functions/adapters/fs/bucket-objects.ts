/**
 * The ObjectStore of the S3 buckets when the images "bucket" is a directory (HANGAR_BLOB_STORE=fs):
 * the upload and staging buckets stay in S3, and a ref to the images bucket is served by the
 * FsBlobStore.
 *
 * A copy into the images bucket (the S3-drop import: copy the upload under the image's new key,
 * then read that copy once to hash and inspect it) reads the upload only once here: copy() checks
 * the pinned source and notes the copy, and the open() of the new key that follows streams exactly
 * that pinned version from S3, regrouped into pool blocks (which the reader's pipeline takes as
 * they are), writing every block to the new file while handing the same block to the reader.
 * The stream ends only once the file is complete (fsync'd, linked, read-only), so what the
 * reader hashed is exactly what the image serves. A copy that is never opened writes
 * nothing; delete() of the key forgets it, and removes whatever a broken read left.
 */
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { BLOCK_SIZE } from '#core/data/pipeline';
import type { ObjectPin, ObjectRef, ObjectStore, OpenedObject } from '#core/data/ports';
import { holdBlock, releaseBlock } from '../block-pool.ts';
import { streamBlocks } from '../stream-blocks.ts';
import type { FsBlobStore } from './blob-store.ts';

interface NotedCopy {
  from: ObjectRef;
  pin: ObjectPin;
  size: number;
}

export class FsBucketObjects implements ObjectStore {
  /** Copies into the images directory not yet opened, by key. */
  private readonly noted = new Map<string, NotedCopy>();

  constructor(
    private readonly client: S3Client,
    private readonly s3Objects: ObjectStore,
    private readonly imagesBucket: string,
    private readonly files: FsBlobStore,
  ) {}

  private local(ref: ObjectRef): boolean {
    return ref.bucket === this.imagesBucket;
  }

  async open(ref: ObjectRef): Promise<OpenedObject> {
    if (!this.local(ref)) return this.s3Objects.open(ref);
    const copy = this.noted.get(ref.key);
    if (copy) {
      this.noted.delete(ref.key);
      return this.copyThrough(copy, ref.key);
    }
    const size = await this.files.size(ref.key);
    if (size === null) throw new Error(`no object ${ref.key} in ${ref.bucket}`);
    const body = await this.files.get(ref.key);
    return { body, size, pin: {}, abort: () => body.destroy() };
  }

  async copy(from: ObjectRef, pin: ObjectPin, to: ObjectRef, size: number): Promise<void> {
    if (!this.local(to)) return this.s3Objects.copy(from, pin, to, size);
    if (this.local(from)) throw new Error('copies within the images directory are not supported');
    // Never overwrites: a key that is taken (or already noted) is refused now, as S3's If-None-Match.
    if (this.noted.has(to.key) || (await this.files.exists(to.key)))
      throw new Error(`the object ${to.key} exists already`);
    this.noted.set(to.key, { from, pin, size });
  }

  /** Streams the pinned source into a new file under `key`, handing each block on as it is written. */
  private async copyThrough(copy: NotedCopy, key: string): Promise<OpenedObject> {
    // IfMatch and the version: the bytes copied are those `head` saw, or the read fails.
    const out = await this.client.send(
      new GetObjectCommand({
        Bucket: copy.from.bucket,
        Key: copy.from.key,
        ...(copy.pin.etag ? { IfMatch: copy.pin.etag } : {}),
        ...(copy.pin.versionId ? { VersionId: copy.pin.versionId } : {}),
      }),
    );
    const source = out.Body as Readable;
    const writer = await this.files.create(key).catch((error: unknown) => {
      source.destroy();
      throw error;
    });
    async function* through(): AsyncGenerator<Buffer> {
      let committed = false;
      try {
        // The reader gets each block with the taker's hold; the writer holds it until it is on disk.
        for await (const block of streamBlocks(source, BLOCK_SIZE)) {
          holdBlock(block);
          await writer.write(block, () => releaseBlock(block));
          yield block;
        }
        await writer.commit(copy.size);
        committed = true;
      } finally {
        // The reader stopped or failed, or the source broke: no half object stays.
        if (!committed) {
          source.destroy();
          await writer.abort();
        }
      }
    }
    return { body: through(), size: copy.size, pin: {}, abort: () => source.destroy() };
  }

  async head(
    ref: ObjectRef,
  ): Promise<{ size: number; pin: ObjectPin; metadata: Record<string, string> } | null> {
    if (!this.local(ref)) return this.s3Objects.head(ref);
    const size = await this.files.size(ref.key);
    return size === null ? null : { size, pin: {}, metadata: {} };
  }

  delete(ref: ObjectRef): Promise<void> {
    if (!this.local(ref)) return this.s3Objects.delete(ref);
    this.noted.delete(ref.key);
    return this.files.delete(ref.key);
  }
}
