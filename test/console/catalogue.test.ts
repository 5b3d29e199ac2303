/**
 * The console in a real browser against the embedded backend: sign-in, the catalogue and its
 * filters kept in the URL.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { launchBrowser, screenshot, signIn, type TestBrowser } from '../helpers/browser.ts';

async function createImage(t: TestBackend, token: string, body: Record<string, unknown>, bytes?: Uint8Array) {
  const created = await t.request('POST', '/v2/images', {
    token,
    headers: { accept: 'application/json' },
    body: { container_format: 'bare', ...body },
  });
  expect(created.status).toBe(201);
  const image = (await created.json()) as { id: string };
  if (bytes) {
    const put = await t.request('PUT', `/v2/images/${image.id}/file`, {
      token,
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(put.status).toBe(204);
  }
  return image.id;
}

describe('console: sign-in and catalogue', () => {
  let t: TestBackend;
  let browser: TestBrowser;
  let page: Page;

  beforeAll(async () => {
    t = await startTestBackend();
    browser = await launchBrowser();
    await createImage(
      t,
      t.tokens.alice,
      { name: 'debian-12', disk_format: 'raw', tags: ['lts'] },
      new Uint8Array(4096),
    );
    await createImage(t, t.tokens.alice, { name: 'fedora-40', disk_format: 'raw' }, new Uint8Array(2048));
    await createImage(t, t.tokens.alice, { name: 'empty-one', disk_format: 'qcow2' });
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it('refuses a token the service does not know, then signs in with a good one', async () => {
    page = await browser.newPage();
    await page.goto(`${t.url}/console/`);
    await page.getByLabel('Token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('does not accept this token');
    await screenshot(page, 'sign-in');
    await signIn(page, t.url, t.tokens.alice);
    const rows = page.locator('table.catalogue tbody tr');
    await expect.poll(() => rows.count()).toBe(3);
    await expect.poll(() => page.locator('tr', { hasText: 'debian-12' }).textContent()).toContain('active');
    await expect.poll(() => page.locator('tr', { hasText: 'empty-one' }).textContent()).toContain('queued');
    // The token lives in this tab's sessionStorage only.
    expect(await page.evaluate('localStorage.length')).toBe(0);
    expect(await page.evaluate("sessionStorage.getItem('hangar.console.token')")).toBe(t.tokens.alice);
  });

  it('filters on the server, keeps the filter in the URL across a reload', async () => {
    await page.getByLabel('Status').selectOption('active');
    await page.getByLabel('Tag').fill('lts');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await expect.poll(() => page.url()).toContain('status=active');
    expect(page.url()).toContain('tag=lts');
    await expect.poll(() => page.locator('table.catalogue tbody tr').count()).toBe(1);
    await page.reload();
    await expect.poll(() => page.locator('table.catalogue tbody tr').count()).toBe(1);
    expect(await page.locator('table.catalogue tbody').textContent()).toContain('debian-12');
    expect(await page.getByLabel('Status').inputValue()).toBe('active');
    expect(await page.getByLabel('Tag').inputValue()).toBe('lts');
    await page.getByRole('button', { name: 'Clear' }).click();
    await expect.poll(() => page.locator('table.catalogue tbody tr').count()).toBe(3);
    await screenshot(page, 'catalogue');
  });
});
