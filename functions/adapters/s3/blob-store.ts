/**
 * Image bytes in S3. Uploads are multipart with our own 8 MiB blocks (so the bytes already in
 * shared memory for hashing go out without another copy), written with If-None-Match so an
 * existing object is never overwritten, and aborted on any failure so no partial blob remains.
 */
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BlobPutHooks, BlobStore } from '#core/data/ports';
import { awsErrorName } from '../errors.ts';
import { abortOrWarn } from './multipart.ts';

/** Parts in flight at once: enough to overlap network and hashing without hoarding memory. */
const PART_CONCURRENCY = 3;
/** S3's limit for a single PutObject. */
const SINGLE_PUT_LIMIT = 5 * 1024 * 1024 * 1024;

export class S3BlobStore implements BlobStore {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
  ) {}

  async put(
    key: string,
    source: AsyncIterable<Buffer>,
    hooks: BlobPutHooks,
    expectedSize?: number,
  ): Promise<{ size: number }> {
    if (expectedSize !== undefined && expectedSize <= SINGLE_PUT_LIMIT)
      return this.putStreamed(key, source, hooks, expectedSize);
    const iterator = source[Symbol.asyncIterator]();
    const first = await iterator.next();
    const firstBlock = first.done ? Buffer.alloc(0) : first.value;
    await hooks.onBlock(firstBlock);
    const second = first.done ? ({ done: true, value: undefined } as const) : await iterator.next();
    if (second.done) {
      await this.client.send(
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

    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }),
    );
    if (!UploadId) throw new Error('S3 returned no UploadId');
    try {
      await hooks.onMultipartStart?.(UploadId);
    } catch (error) {
      await this.abortMultipart(key, UploadId).catch(() => undefined);
      throw error;
    }
    const parts: Array<{ PartNumber: number; ETag: string }> = [];
    const inFlight = new Set<Promise<void>>();
    let size = 0;
    let failure: unknown;
    const send = (block: Buffer, partNumber: number) => {
      size += block.length;
      const task = this.client
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
      await this.client.send(
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
      // Parts still in flight would land after the abort and be kept: let them finish first.
      await Promise.allSettled(inFlight);
      await abortOrWarn(this.client, this.bucket, key, UploadId, `blob upload failed: ${String(error)}`);
      throw error;
    }
  }

  /**
   * One PutObject streaming the blocks as they come: no part bookkeeping, and a single request
   * for the store to hash. S3 refuses the object unless exactly `size` bytes arrive.
   */
  private async putStreamed(
    key: string,
    source: AsyncIterable<Buffer>,
    hooks: BlobPutHooks,
    size: number,
  ): Promise<{ size: number }> {
    let seen = 0;
    // The SDK pipes the body into its request without watching it: when the source fails (client
    // gone, a hook refusing a block) the request would wait for the announced bytes forever. So
    // the failure is kept and the request aborted, and the caller gets the source's own error.
    let failure: unknown;
    const abort = new AbortController();
    async function* checked() {
      try {
        for await (const block of source) {
          await hooks.onBlock(block);
          seen += block.length;
          yield block;
        }
        // Zero-length bodies still run the hooks once, as the multipart path does.
        if (seen === 0) await hooks.onBlock(Buffer.alloc(0));
      } catch (error) {
        failure = error;
        abort.abort();
        throw error;
      }
    }
    const body = Readable.from(checked(), { objectMode: false });
    // Reported through `failure`; an 'error' event nobody listens to would crash the process.
    body.on('error', () => undefined);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: size,
          IfNoneMatch: '*',
        }),
        { abortSignal: abort.signal },
      );
    } catch (error) {
      body.destroy();
      // Every announced byte was handed over before the failure (a body longer than announced,
      // found only on its extra bytes): the store may still complete the object after the abort.
      if (failure !== undefined && seen >= size) await this.removeLateObject(key);
      throw failure ?? error;
    }
    if (seen !== size) throw new Error(`body had ${seen} bytes, ${size} were announced`);
    return { size: seen };
  }

  async get(key: string, range?: { start: number; end: number }): Promise<Readable> {
    const out = await this.client.send(
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Range: range ? `bytes=${range.start}-${range.end}` : undefined,
      }),
    );
    return out.Body as Readable;
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (error) {
      if (awsErrorName(error) === 'NotFound') return false;
      throw error;
    }
  }

  /** Waits (boundedly) for an object an aborted PutObject may still complete, and deletes it. */
  private async removeLateObject(key: string): Promise<void> {
    for (let attempt = 0; attempt < 30; attempt++) {
      if (await this.exists(key).catch(() => false)) {
        await this.delete(key);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
      );
    } catch (error) {
      // Completed or aborted already: nothing left to free.
      if (awsErrorName(error) !== 'NoSuchUpload') throw error;
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    let deleted = 0;
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) {
        if (!object.Key) continue;
        await this.delete(object.Key);
        deleted++;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return deleted;
  }

  presignedGet(key: string, expiresSeconds: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
      expiresIn: expiresSeconds,
    });
  }
}
