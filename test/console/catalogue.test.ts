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

  it('works from the keyboard and on a narrow screen', async () => {
    // The first Tab reaches the skip link; Enter on a focused link follows it.
    await page.goto(`${t.url}/console/`);
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement.textContent')).toBe('Skip to content');
    await page.getByRole('link', { name: 'debian-12' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'debian-12' }).waitFor();
    // A phone-sized window: the catalogue's rows become cards, nothing scrolls sideways.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${t.url}/console/?sort=name:asc`);
    await expect.poll(() => page.locator('table.catalogue tbody tr').count()).toBe(3);
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await screenshot(page, 'catalogue-narrow');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('pages with Glance’s markers, the marker in the URL', async () => {
    for (let i = 0; i < 27; i++)
      await createImage(t, t.tokens.alice, { name: `bulk-${i}`, disk_format: 'raw', tags: ['bulk'] });
    await page.goto(`${t.url}/console/?tag=bulk&sort=name:asc`);
    const rows = page.locator('table.catalogue tbody tr');
    await expect.poll(() => rows.count()).toBe(25);
    expect(await page.getByRole('button', { name: 'First page' }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Next page' }).click();
    await expect.poll(() => rows.count()).toBe(2);
    expect(page.url()).toMatch(/marker=[0-9a-f-]{36}/);
    expect(await page.getByRole('button', { name: 'Next page' }).isDisabled()).toBe(true);
    // Glance's name order is by bytes: bulk-8 and bulk-9 come last.
    expect(await rows.allTextContents()).toEqual([
      expect.stringContaining('bulk-8'),
      expect.stringContaining('bulk-9'),
    ]);
    await page.reload();
    await expect.poll(() => rows.count()).toBe(2);
    await page.getByRole('button', { name: 'First page' }).click();
    await expect.poll(() => rows.count()).toBe(25);
  });
});
