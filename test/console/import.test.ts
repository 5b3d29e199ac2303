/**
 * The console's imports (web-download) in a real browser: the service fetches a qcow2 from a
 * server on this machine (allowed through HANGAR_WEB_DOWNLOAD_ALLOW), the page follows the
 * import to active; content that is not its declared format fails with the task's reason. From an
 * S3 key: the page presigns the key with the credentials typed in (here the embedded S3's own key
 * pair and endpoint), the service downloads it; a missing key fails with S3's answer, and the
 * reason names the s3:// source, not the signed URL.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { standInS3 } from '../helpers/aws.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { launchBrowser, screenshot, signIn, type TestBrowser } from '../helpers/browser.ts';
import { ImagesApi } from '../helpers/images.ts';

async function imageNames(t: TestBackend): Promise<string[]> {
  return (await new ImagesApi(t).list('alice')).images.map((i) => String(i.name)).sort();
}

describe('console: import from a URL or an S3 key', () => {
  let t: TestBackend;
  let browser: TestBrowser;
  let page: Page;
  let files: Server;
  let base: string;
  let dir: string;
  let qcow2: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hangar-console-import-'));
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'disk.qcow2'), '32M']);
    qcow2 = readFileSync(join(dir, 'disk.qcow2'));
    const junk = randomBytes(128 * 1024);
    files = createServer((req, res) => {
      const body = req.url === '/disk.qcow2' ? qcow2 : req.url === '/junk.qcow2' ? junk : undefined;
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      res
        .writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
        .end(body);
    });
    await new Promise<void>((resolve) => files.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    t = await startTestBackend({ env: { HANGAR_WEB_DOWNLOAD_ALLOW: '127.0.0.1' } });
    browser = await launchBrowser();
    page = await browser.newPage();
    await signIn(page, t.url, t.tokens.alice);
    await page.goto(`${t.url}/console/upload`);
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
    await new Promise((resolve) => files?.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const form = () => page.getByRole('form', { name: 'Import from a URL' });
  const section = () => page.getByRole('region', { name: 'Import from a URL' });

  it('imports a qcow2 the service fetches, and shows it active with its checksum', async () => {
    await form().getByLabel('URL').fill(`${base}/disk.qcow2`);
    await form().getByLabel('Name').fill('fetched');
    await form().getByRole('button', { name: 'Import' }).click();
    const result = section().getByRole('status');
    await expect.poll(() => result.textContent(), { timeout: 30_000 }).toContain('is active');
    expect(await result.locator('code.checksum').textContent()).toBe(
      createHash('sha512').update(qcow2).digest('hex'),
    );
    await screenshot(page, 'import');
  });

  it('shows why an import failed and keeps nothing', async () => {
    await form().getByLabel('URL').fill(`${base}/junk.qcow2`);
    await form().getByLabel('Name').fill('junk');
    await form().getByRole('button', { name: 'Import' }).click();
    const alert = section().getByRole('alert');
    await expect.poll(() => alert.textContent(), { timeout: 30_000 }).toContain('The import failed');
    expect(await alert.locator('.reason').textContent()).toContain(
      'image content is raw but disk_format is qcow2',
    );
    expect(await imageNames(t)).toEqual(['fetched']);
  });

  const s3Form = () => page.getByRole('form', { name: 'Import from an S3 key' });
  const s3Section = () => page.getByRole('region', { name: 'Import from an S3 key' });

  /** Fills the S3 form with the embedded S3's endpoint and key pair: what a user's AWS keys are on AWS. */
  async function fillS3(source: string) {
    const { credentials, endpoints, region } = t.backend.clientSettings;
    await s3Form().getByLabel('S3 key').fill(source);
    await s3Form().getByLabel('Region').fill(region);
    await s3Form().getByLabel('S3 endpoint (optional)').fill(endpoints.s3);
    await s3Form().getByLabel('AWS access key id').fill(credentials.accessKeyId);
    await s3Form().getByLabel('AWS secret access key').fill(credentials.secretAccessKey);
  }

  it('imports an S3 key it presigns in the page, and shows it active with its checksum', async () => {
    const s3 = standInS3(t.backend);
    try {
      await s3.send(new CreateBucketCommand({ Bucket: 'console-imports' }));
      await s3.send(
        new PutObjectCommand({ Bucket: 'console-imports', Key: 'builds/disk-1.qcow2', Body: qcow2 }),
      );
    } finally {
      s3.destroy();
    }
    await fillS3('s3://console-imports/builds/disk-1.qcow2');
    // The format follows the key's extension; the name, left empty, comes from the key.
    expect(await s3Form().getByLabel('Disk format').inputValue()).toBe('qcow2');
    await s3Form().getByRole('button', { name: 'Copy as command' }).click();
    expect(await s3Form().locator('code.command').textContent()).toBe(
      'hangar import s3://console-imports/builds/disk-1.qcow2 disk-1:latest --disk-format qcow2 --wait',
    );
    await s3Form().getByRole('button', { name: 'Import' }).click();
    const result = s3Section().getByRole('status');
    await expect.poll(() => result.textContent(), { timeout: 30_000 }).toContain('disk-1 is active');
    expect(await result.locator('code.checksum').textContent()).toBe(
      createHash('sha512').update(qcow2).digest('hex'),
    );
    await screenshot(page, 'import-s3');
  });

  it("shows S3's refusal of a missing key as the task's reason, naming the s3:// source", async () => {
    await fillS3('s3://console-imports/builds/missing.qcow2');
    await s3Form().getByLabel('Name').fill('missing');
    await s3Form().getByRole('button', { name: 'Import' }).click();
    const alert = s3Section().getByRole('alert');
    await expect.poll(() => alert.textContent(), { timeout: 30_000 }).toContain('The import failed');
    const reason = (await alert.locator('.reason').textContent()) ?? '';
    expect(reason).toContain('404');
    expect(reason).not.toContain('X-Amz-Signature');
    expect(await imageNames(t)).toEqual(['disk-1', 'fetched']);
  });
});
