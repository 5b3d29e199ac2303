/**
 * GetObject bodies of the embedded s3rver, which local/s3rver-child.mjs sends itself from two
 * reused buffers: whole objects and ranges byte for byte, s3rver's headers kept, and a client that
 * goes away mid-body leaves no open file behind.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceConfig } from '#platform/config';
import { standInS3 } from '../helpers/aws.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';

const MiB = 1024 * 1024;
// Not a multiple of the 1 MiB reads, so the last read is a short one.
const BYTES = randomBytes(3 * MiB + 12_345);

let t: TestBackend;
let s3: S3Client;
let bucket: string;

async function body(out: { Body?: unknown }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of out.Body as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** How many descriptors s3rver's process holds on object files (each GET body has one open). */
function openObjectFiles(): number {
  const dir = `/proc/${t.backend.pids.s3}/fd`;
  return readdirSync(dir).filter((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`).includes('._S3rver_object');
    } catch {
      return false;
    }
  }).length;
}

async function until(probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

beforeAll(async () => {
  t = await startTestBackend();
  s3 = standInS3(t.backend);
  bucket = serviceConfig().buckets.staging;
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'get/object', Body: BYTES }));
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'get/empty', Body: Buffer.alloc(0) }));
  // More than the loopback socket buffers hold: its GET is still sending while the client reads.
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'get/large', Body: Buffer.alloc(64 * MiB, 1) }));
}, 120_000);
afterAll(async () => {
  s3?.destroy();
  await t?.stop();
});

describe('s3rver GetObject bodies', () => {
  it('sends the whole object with its length and ETag', async () => {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'get/object' }));
    expect(out.ContentLength).toBe(BYTES.length);
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'get/object' }));
    expect(out.ETag).toBe(head.ETag);
    expect((await body(out)).equals(BYTES)).toBe(true);
  });

  it('sends ranges, across and within the 1 MiB reads', async () => {
    for (const [start, end] of [
      // 0-0: s3rver 3.7.1 itself read an end of 0 as "to the end".
      [0, 0],
      [0, 9],
      [1000, 2 * MiB + 5],
      [MiB - 1, MiB],
      [BYTES.length - 10, BYTES.length - 1],
    ] as const) {
      const out = await s3.send(
        new GetObjectCommand({ Bucket: bucket, Key: 'get/object', Range: `bytes=${start}-${end}` }),
      );
      expect(out.ContentRange).toBe(`bytes ${start}-${end}/${BYTES.length}`);
      expect((await body(out)).equals(BYTES.subarray(start, end + 1))).toBe(true);
    }
  });

  it('sends an empty object', async () => {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'get/empty' }));
    expect(out.ContentLength).toBe(0);
    expect((await body(out)).length).toBe(0);
  });

  it('closes the object file when the client goes away mid-body, and serves the next GET', async () => {
    const controller = new AbortController();
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'get/large' }), {
      abortSignal: controller.signal,
    });
    const reader = (out.Body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    await reader.next();
    // Mid-body, the object's file is open in s3rver; once the client has gone, it is closed.
    expect(openObjectFiles()).toBe(1);
    controller.abort();
    await reader.return?.();
    await until(() => openObjectFiles() === 0);
    const again = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'get/object' }));
    expect((await body(again)).equals(BYTES)).toBe(true);
  });
});
