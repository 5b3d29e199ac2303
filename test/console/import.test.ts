/**
 * The console's import from a URL (web-download) in a real browser: the service fetches a qcow2
 * from a server on this machine (allowed through HANGAR_WEB_DOWNLOAD_ALLOW), the page follows the
 * import to active; content that is not its declared format fails with the task's reason.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { launchBrowser, screenshot, signIn, type TestBrowser } from '../helpers/browser.ts';

describe('console: import from a URL', () => {
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
    const list = await t.request('GET', '/v2/images', {
      token: t.tokens.alice,
      headers: { accept: 'application/json' },
    });
    const names = ((await list.json()) as { images: Array<{ name: string }> }).images.map((i) => i.name);
    expect(names).toEqual(['fetched']);
  });
});
