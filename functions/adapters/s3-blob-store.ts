/**
 * Image bytes in S3. Uploads are multipart with our own 8 MiB blocks (so the bytes already in
 * shared memory for hashing go out without another copy), written with If-None-Match so an
 * existing object is never overwritten, and aborted on any failure so no partial blob remains.
 */
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BlobPutHooks, BlobStore } from '#core/ports';
import { s3 } from './aws-clients.ts';
import { awsErrorName } from './errors.ts';

/** Parts in flight at once: enough to overlap network and hashing without hoarding memory. */
const PART_CONCURRENCY = 3;

export class S3BlobStore implements BlobStore {
  constructor(private readonly bucket: string) {}

  async put(key: string, source: AsyncIterable<Buffer>, hooks: BlobPutHooks): Promise<{ size: number }> {
    const iterator = source[Symbol.asyncIterator]();
    const first = await iterator.next();
    const firstBlock = first.done ? Buffer.alloc(0) : first.value;
    await hooks.onBlock(firstBlock);
    const second = first.done ? ({ done: true, value: undefined } as const) : await iterator.next();
    if (second.done) {
      await s3().send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: firstBlock,
          IfNoneMatch: '*',
          ContentLength: firstBlock.length,
        }),
      );
      return { size: firstBlock.length };
    }

    const { UploadId } = await s3().send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }));
    if (!UploadId) throw new Error('S3 returned no UploadId');
    const parts: Array<{ PartNumber: number; ETag: string }> = [];
    const inFlight = new Set<Promise<void>>();
    let size = 0;
    let failure: unknown;
    const send = (block: Buffer, partNumber: number) => {
      size += block.length;
      const task = s3()
        .send(
          new UploadPartCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId,
            PartNumber: partNumber,
            Body: block,
            ContentLength: block.length,
          }),
        )
        .then((out) => {
          parts.push({ PartNumber: partNumber, ETag: out.ETag ?? '' });
        })
        .catch((error: unknown) => {
          failure ??= error;
        })
        .finally(() => inFlight.delete(task));
      inFlight.add(task);
    };
    try {
      let partNumber = 1;
      send(firstBlock, partNumber++);
      let next: IteratorResult<Buffer> = second;
      while (!next.done) {
        await hooks.onBlock(next.value);
        while (inFlight.size >= PART_CONCURRENCY) await Promise.race(inFlight);
        if (failure) throw failure;
        send(next.value, partNumber++);
        next = await iterator.next();
      }
      await Promise.all(inFlight);
      if (failure) throw failure;
      parts.sort((a, b) => a.PartNumber - b.PartNumber);
      await s3().send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: parts },
          IfNoneMatch: '*',
        }),
      );
      return { size };
    } catch (error) {
      await Promise.allSettled(inFlight);
      await s3()
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId }))
        .catch(() => undefined);
      throw error;
    }
  }

  async get(key: string, range?: { start: number; end: number }): Promise<Readable> {
    const out = await s3().send(
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Range: range ? `bytes=${range.start}-${range.end}` : undefined,
      }),
    );
    return out.Body as Readable;
  }

  async delete(key: string): Promise<void> {
    await s3().send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async exists(key: string): Promise<boolean> {
    try {
      await s3().send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (error) {
      if (awsErrorName(error) === 'NotFound') return false;
      throw error;
    }
  }

  presignedGet(key: string, expiresSeconds: number): Promise<string> {
    return getSignedUrl(s3(), new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
      expiresIn: expiresSeconds,
    });
  }
}
