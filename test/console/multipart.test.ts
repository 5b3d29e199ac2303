/**
 * The console's presigned multipart upload (the path for a service that does not stream PUT /file,
 * as on AWS) in a real browser against the embedded backend, whose upload bucket is s3rver's: the
 * parts go straight from the page to their presigned URLs, several at once, and the image becomes
 * active with the file's sha512; a cancel aborts the upload (no parts left in the bucket) and
 * deletes the queued image. The path is chosen on the page against a service that streams, and by
 * the page itself against one that says it does not (HANGAR_UPLOAD_METHOD=multipart, as on AWS).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceConfig } from '#platform/config';
import { standInS3 } from '../helpers/aws.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { launchBrowser, screenshot, signIn, type TestBrowser, throttleUploads } from '../helpers/browser.ts';
import { ImagesApi } from '../helpers/images.ts';

const MiB = 1024 * 1024;
const uploadForm = (page: Page) => page.getByRole('form', { name: 'Upload a file' });

describe('console: presigned multipart upload', () => {
  let t: TestBackend;
  let browser: TestBrowser;
  let dir: string;
  let qcow2: string;

  const names = async () => (await new ImagesApi(t).list('alice')).images;
  const uploadsInProgress = async (): Promise<number> => {
    const s3 = standInS3(t.backend);
    try {
      const listed = await s3.send(
        new ListMultipartUploadsCommand({ Bucket: serviceConfig().buckets.uploads }),
      );
      return listed.Uploads?.length ?? 0;
    } finally {
      s3.destroy();
    }
  };

  beforeAll(async () => {
    t = await startTestBackend();
    browser = await launchBrowser();
    dir = mkdtempSync(join(tmpdir(), 'hangar-console-multipart-'));
    // A real qcow2 holding 20 MiB of data: three parts of the service's default 8 MiB.
    writeFileSync(join(dir, 'data.raw'), randomBytes(20 * MiB));
    qcow2 = join(dir, 'parts.qcow2');
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', join(dir, 'data.raw'), qcow2]);
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('sends a real qcow2 in parallel parts straight to S3 and shows it active with its checksum', async () => {
    const page = await browser.newPage();
    await signIn(page, t.url, t.tokens.alice);
    await page.goto(`${t.url}/console/upload`);
    // This service streams: that is what the page chooses by itself (GET /v2/info/upload, or its absence).
    await expect
      .poll(() => uploadForm(page).getByLabel('Send the bytes').locator('option').first().textContent())
      .toContain('streamed');
    await uploadForm(page).getByLabel('Image file').setInputFiles(qcow2);
    await uploadForm(page).getByLabel('Send the bytes').selectOption('multipart');
    await uploadForm(page).getByRole('button', { name: 'Copy as command' }).click();
    expect(await uploadForm(page).locator('code.command').textContent()).toContain(' --multipart');

    // Every request the page sends to S3, and how many were in flight at once.
    const s3Origin = new URL(t.backend.endpoints.s3).origin;
    const parts: string[] = [];
    let inFlight = 0;
    let most = 0;
    const puts: string[] = [];
    let tokensSent = 0;
    page.on('request', (req) => {
      if (req.method() === 'PUT') puts.push(new URL(req.url()).origin);
      if (req.method() !== 'PUT' || !req.url().startsWith(s3Origin)) return;
      parts.push(new URL(req.url()).searchParams.get('partNumber') ?? '');
      inFlight++;
      most = Math.max(most, inFlight);
      if (req.headers()['x-auth-token'] !== undefined) tokensSent++;
    });
    const settled = (req: { method(): string; url(): string }) => {
      if (req.method() === 'PUT' && req.url().startsWith(s3Origin)) inFlight--;
    };
    page.on('requestfinished', settled);
    page.on('requestfailed', settled);

    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const done = page.getByRole('status');
    await expect.poll(() => done.textContent(), { timeout: 60_000 }).toContain('parts is active');
    expect(await done.locator('code.checksum').textContent()).toBe(
      createHash('sha512').update(readFileSync(qcow2)).digest('hex'),
    );
    expect(parts.sort()).toEqual(['1', '2', '3']);
    expect(most).toBeGreaterThan(1);
    // The part URLs carry their own signature: the token never goes to S3.
    expect(tokensSent).toBe(0);
    // No byte went through the service's PUT /file.
    expect(puts.every((origin) => origin === s3Origin)).toBe(true);
    expect(await uploadsInProgress()).toBe(0);
    await screenshot(page, 'upload-multipart');
    await page.close();
  });

  it('cancelled mid-upload, aborts the multipart upload and deletes the image', async () => {
    const page = await browser.newPage();
    await signIn(page, t.url, t.tokens.alice);
    await throttleUploads(page, 2 * MiB);
    await page.goto(`${t.url}/console/upload`);
    await uploadForm(page)
      .getByLabel('Image file')
      .setInputFiles({
        name: 'slow.raw',
        mimeType: 'application/octet-stream',
        buffer: randomBytes(24 * MiB),
      });
    await uploadForm(page).getByLabel('Send the bytes').selectOption('multipart');
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const progress = page.locator('progress#upload-progress');
    await expect
      .poll(async () => Number(await progress.getAttribute('value')), { timeout: 20_000 })
      .toBeGreaterThan(0);
    expect(await page.locator('label[for="upload-progress"]').textContent()).toContain('in presigned parts');
    expect(await uploadsInProgress()).toBe(1);
    expect((await names()).find((image) => image.name === 'slow')?.status).toBe('queued');

    await page.getByRole('button', { name: 'Cancel upload' }).click();
    await expect.poll(() => page.getByRole('status').textContent()).toContain('cancelled');
    await expect.poll(() => uploadsInProgress()).toBe(0);
    await expect.poll(async () => (await names()).map((image) => image.name)).toEqual(['parts']);
    await page.close();
  });
});

describe('console: a service that does not stream', () => {
  let t: TestBackend;
  let browser: TestBrowser;

  beforeAll(async () => {
    // As on AWS: GET /v2/info/upload lists multipart first.
    t = await startTestBackend({ env: { HANGAR_UPLOAD_METHOD: 'multipart' } });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it('uploads in presigned parts by itself, never through PUT /file', async () => {
    const page = await browser.newPage();
    await signIn(page, t.url, t.tokens.alice);
    await page.goto(`${t.url}/console/upload`);
    const method = uploadForm(page).getByLabel('Send the bytes');
    await expect.poll(() => method.locator('option').first().textContent()).toContain('presigned multipart');
    const bytes = randomBytes(9 * MiB);
    await uploadForm(page)
      .getByLabel('Image file')
      .setInputFiles({ name: 'prefers.raw', mimeType: 'application/octet-stream', buffer: bytes });
    const s3Origin = new URL(t.backend.endpoints.s3).origin;
    const puts: string[] = [];
    page.on('request', (req) => {
      if (req.method() === 'PUT') puts.push(new URL(req.url()).origin);
    });
    // The method is left as the page chose it.
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const done = page.getByRole('status');
    await expect.poll(() => done.textContent(), { timeout: 60_000 }).toContain('prefers is active');
    expect(await done.locator('code.checksum').textContent()).toBe(
      createHash('sha512').update(bytes).digest('hex'),
    );
    // Two parts of 8 MiB, both to S3.
    expect(puts).toEqual([s3Origin, s3Origin]);
    await page.close();
  });
});
