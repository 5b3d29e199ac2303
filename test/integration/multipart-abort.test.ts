/**
 * Failed multipart uploads leave nothing behind in the embedded S3 (issue 11, item 7): aborts are
 * real (s3rver 3.7.1 ignored them), an abort that fails is logged at warn, and the multipart sweep
 * aborts uploads that nobody did.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import {
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  type S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { abortOrWarn, sweepMultipartUploads } from '#adapters/s3/multipart';
import { serviceConfig } from '#platform/config';
import { standInS3 } from '../helpers/aws.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { chunkedUpload, eventually, ImagesApi, peek } from '../helpers/images.ts';

const MiB = 1024 * 1024;
const SIZE_CAP = 20 * MiB;

let t: TestBackend;
let api: ImagesApi;
let s3: S3Client;

beforeAll(async () => {
  t = await startTestBackend({
    // The scheduled sweep every second, with the default age (a day): only backdated uploads go.
    // Image bytes in the images bucket (as on AWS), so uploads without a size go up in parts.
    env: {
      HANGAR_IMAGE_SIZE_CAP: String(SIZE_CAP),
      HANGAR_MULTIPART_SWEEP_SECONDS: '1',
      HANGAR_BLOB_STORE: 's3',
    },
  });
  api = new ImagesApi(t);
  // Configured as the service's own client is (endpoint, key pair), without retries.
  s3 = standInS3(t.backend, { maxAttempts: 1 });
});
afterAll(async () => {
  s3?.destroy();
  await t?.stop();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Files and bytes under a directory, recursively. */
function usage(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  if (!existsSync(dir)) return { files, bytes };
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const inner = usage(path);
      files += inner.files;
      bytes += inner.bytes;
    } else {
      files++;
      bytes += statSync(path).size;
    }
  }
  return { files, bytes };
}

const uploadsDir = (bucket: string) => join(t.backend.stateDir, 's3', bucket, '._S3rver_uploads');

async function listed(bucket: string): Promise<string[]> {
  const out = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (out.Uploads ?? []).map((u) => `${u.Key} ${u.UploadId}`);
}

async function errorName(send: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await send();
    return undefined;
  } catch (error) {
    if (error instanceof S3ServiceException) return error.name;
    throw error;
  }
}

describe('multipart uploads in the embedded S3', () => {
  it('a refused chunked upload leaves no parts on disk and no multipart upload listed', async () => {
    const { images } = serviceConfig().buckets;
    const before = usage(join(t.backend.stateDir, 's3', images));
    const image = await api.create('alice', { disk_format: 'raw', container_format: 'bare' });
    // No size announced, so the blob goes up as 8 MiB parts; the cap refuses it at the third one.
    const body = randomBytes(SIZE_CAP + 4 * MiB);
    const chunks = Array.from({ length: Math.ceil(body.length / MiB) }, (_, i) =>
      body.subarray(i * MiB, (i + 1) * MiB),
    );
    const response = await chunkedUpload(t, t.tokens.alice, image.id, chunks);
    expect(response.status, response.body).toBe(413);
    await t.backend.idle();

    expect(await listed(images)).toEqual([]);
    expect(usage(uploadsDir(images))).toEqual({ files: 0, bytes: 0 });
    // And no object either: the images bucket holds what it held before.
    expect(usage(join(t.backend.stateDir, 's3', images))).toEqual(before);
    expect((await api.show('alice', image.id)).status).toBe('queued');
  });

  it('aborting a presigned multipart upload through the API removes its parts', async () => {
    const { uploads } = serviceConfig().buckets;
    const image = await api.create('alice', { disk_format: 'raw', container_format: 'bare' });
    const started = await t.request('POST', `/v2/images/${image.id}/multipart-upload`, {
      token: t.tokens.alice,
      body: { size: 12 * MiB, part_size: 6 * MiB },
    });
    expect(started.status, await peek(started)).toBe(201);
    const upload = (await started.json()) as { upload_id: string; parts: Array<{ url: string }> };
    const part = await fetch(upload.parts[0]?.url ?? '', { method: 'PUT', body: randomBytes(6 * MiB) });
    expect(part.status).toBe(200);
    expect(usage(join(uploadsDir(uploads), upload.upload_id)).bytes).toBeGreaterThanOrEqual(6 * MiB);

    const aborted = await t.request('POST', `/v2/images/${image.id}/multipart-upload/abort`, {
      token: t.tokens.alice,
      body: { upload_id: upload.upload_id },
    });
    expect(aborted.status, await peek(aborted)).toBeLessThan(300);
    expect(existsSync(join(uploadsDir(uploads), upload.upload_id))).toBe(false);
    expect(await listed(uploads)).toEqual([]);

    // A late part for the aborted upload is refused and recreates nothing.
    const late = await fetch(upload.parts[1]?.url ?? '', { method: 'PUT', body: randomBytes(MiB) });
    expect(late.status).toBe(404);
    expect(await late.text()).toContain('NoSuchUpload');
    expect(existsSync(join(uploadsDir(uploads), upload.upload_id))).toBe(false);
    // Aborting again: the client's mistake (400), not a 5xx.
    const again = await t.request('POST', `/v2/images/${image.id}/multipart-upload/abort`, {
      token: t.tokens.alice,
      body: { upload_id: upload.upload_id },
    });
    expect(again.status).toBe(400);
  });

  it('the sweep aborts uploads older than the threshold and keeps newer ones', async () => {
    const { staging } = serviceConfig().buckets;
    const orphan = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: staging, Key: 'orphan/left-behind' }),
    );
    const uploadId = orphan.UploadId ?? '';
    await s3.send(
      new UploadPartCommand({
        Bucket: staging,
        Key: 'orphan/left-behind',
        UploadId: uploadId,
        PartNumber: 1,
        Body: randomBytes(MiB),
      }),
    );
    expect(await listed(staging)).toEqual([`orphan/left-behind ${uploadId}`]);

    const young = await sweepMultipartUploads(t.backend.clients.s3, [staging], 3600);
    expect(young.aborted).toEqual([]);
    expect(await listed(staging)).toHaveLength(1);

    const old = await sweepMultipartUploads(t.backend.clients.s3, Object.values(serviceConfig().buckets), 0);
    expect(old.failed).toEqual([]);
    expect(old.aborted).toEqual([
      expect.objectContaining({ bucket: staging, key: 'orphan/left-behind', uploadId }),
    ]);
    expect(await listed(staging)).toEqual([]);
    expect(usage(uploadsDir(staging))).toEqual({ files: 0, bytes: 0 });
    expect(
      await errorName(() =>
        s3.send(
          new UploadPartCommand({
            Bucket: staging,
            Key: 'orphan/left-behind',
            UploadId: uploadId,
            PartNumber: 2,
            Body: 'x',
          }),
        ),
      ),
    ).toBe('NoSuchUpload');
  });

  it('the embedded runner sweeps on its schedule: a day-old orphan goes, a fresh one stays', async () => {
    const { exports } = serviceConfig().buckets;
    const start = (key: string) => s3.send(new CreateMultipartUploadCommand({ Bucket: exports, Key: key }));
    const stale = (await start('stale/orphan')).UploadId ?? '';
    const fresh = (await start('fresh/upload')).UploadId ?? '';
    // The embedded S3 dates an upload by its directory's `key` file: make this one two days old.
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    utimesSync(join(uploadsDir(exports), stale, 'key'), twoDaysAgo, twoDaysAgo);

    await eventually(async () => !(await listed(exports)).includes(`stale/orphan ${stale}`), 10_000);
    expect(await listed(exports)).toEqual([`fresh/upload ${fresh}`]);
    expect(existsSync(join(uploadsDir(exports), stale))).toBe(false);
    await sweepMultipartUploads(t.backend.clients.s3, [exports], 0);
  });

  it('an abort that fails is logged at warn with the bucket, key and upload id', async () => {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    const gone = await abortOrWarn(
      t.backend.clients.s3,
      'hangar-no-such-bucket',
      'images/x',
      'f'.repeat(32),
      'test',
    );
    expect(gone).toBe(false);
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === 'warn');
    expect(logged).toMatchObject({
      bucket: 'hangar-no-such-bucket',
      key: 'images/x',
      uploadId: 'f'.repeat(32),
      reason: 'test',
    });
    // An upload that is already gone is not a failure.
    expect(
      await abortOrWarn(
        t.backend.clients.s3,
        serviceConfig().buckets.staging,
        'images/x',
        'f'.repeat(32),
        'test',
      ),
    ).toBe(true);
  });
});
