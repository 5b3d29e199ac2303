/**
 * The console's Keystone sign-in in a real browser: Hangar in `keystone` mode against the real
 * Keystone (test/keystone/start-keystone.sh), which the gateway passes through at /identity/v3 on
 * the console's origin. A user, password and project become a project-scoped token the page keeps
 * (never the password); a wrong password shows Keystone's refusal.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setServiceEnvironment } from '#platform/config';
import { type Backend, startBackend } from '../../local/backend.ts';
import { launchBrowser, screenshot, type TestBrowser } from '../helpers/browser.ts';
import { ensureKeystone, type KeystoneInfo, keystoneToken, serviceKeystoneEnv } from '../helpers/keystone.ts';

describe('console: sign-in with a Keystone user', () => {
  let keystone: KeystoneInfo;
  let backend: Backend;
  let browser: TestBrowser;
  let page: Page;

  beforeAll(async () => {
    keystone = await ensureKeystone();
    setServiceEnvironment(serviceKeystoneEnv(keystone));
    backend = await startBackend({ port: 0, storage: 'memory', authMode: 'keystone', logLevel: 'warn' });
    // An image of alice's project, made with her own Keystone token: the catalogue must list it.
    const created = await fetch(`${backend.url}/v2/images`, {
      method: 'POST',
      headers: {
        'x-auth-token': await keystoneToken(keystone, 'alice', 'projA'),
        'content-type': 'application/json',
      },
      body: JSON.stringify({ name: 'from-keystone', disk_format: 'qcow2', container_format: 'bare' }),
    });
    expect(created.status).toBe(201);
    browser = await launchBrowser();
    page = await browser.newPage();
  });
  afterAll(async () => {
    await browser?.close();
    await backend?.stop();
  });

  const form = () => page.getByRole('form', { name: 'Sign in with Keystone' });

  it('passes only the version document and password authentication through to Keystone', async () => {
    const version = await fetch(`${backend.url}/identity/v3`);
    expect(version.status).toBe(200);
    expect(((await version.json()) as { version: { id: string } }).version.id).toMatch(/^v3\./);
    expect((await fetch(`${backend.url}/identity/v3/users`)).status).toBe(404);
    expect((await fetch(`${backend.url}/identity/v3/auth/tokens`)).status).toBe(405);
    const plain = await fetch(`${backend.url}/identity/v3/auth/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: '{}',
    });
    expect(plain.status).toBe(415);
  });

  it('shows Keystone refusing a wrong password, and keeps nothing', async () => {
    await page.goto(`${backend.url}/console/`);
    await form().getByLabel('User').fill('alice');
    await form().getByLabel('Password').fill('not-the-password');
    await form().getByLabel('Project').fill('projA');
    expect(await form().getByLabel('Domain').inputValue()).toBe('Default');
    await form().getByRole('button', { name: 'Sign in' }).click();
    await expect
      .poll(() => page.getByRole('alert').textContent())
      .toContain('Keystone refused the user name, password or project');
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
  });

  it("signs in as alice of projA, keeps only Keystone's token, and lists her project's images", async () => {
    await form().getByLabel('Password').fill(keystone.password);
    await screenshot(page, 'sign-in-keystone');
    await form().getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    await expect.poll(() => page.locator('table.catalogue tbody tr').count()).toBe(1);
    expect(await page.locator('table.catalogue tbody tr').textContent()).toContain('from-keystone');
    expect(await page.evaluate('sessionStorage.length')).toBe(1);
    const stored = String(await page.evaluate("sessionStorage.getItem('hangar.console.token')"));
    expect(stored).not.toContain(keystone.password);
    // What it kept is a token the service takes for alice's project.
    const owner = await fetch(`${backend.url}/v2/images`, {
      headers: { 'x-auth-token': stored, accept: 'application/json' },
    });
    expect(owner.status).toBe(200);
    const images = ((await owner.json()) as { images: Array<{ owner: string }> }).images;
    expect(images.map((image) => image.owner)).toEqual([keystone.projects.projA]);
  });
});
