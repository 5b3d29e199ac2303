/**
 * The console in a real browser: uploading a real qcow2 file (progress, then active with its
 * sha512), a refused upload showing the server's reason and leaving nothing behind, the image
 * page (JSON-patch properties, tags, sharing), and the other project accepting the share.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { launchBrowser, screenshot, signIn, type TestBrowser, throttleUploads } from '../helpers/browser.ts';

const uploadForm = (page: Page) => page.getByRole('form', { name: 'Upload a file' });

interface Listed {
  id: string;
  name: string;
  status: string;
  os_hash_value: string | null;
}

describe('console: upload, image page, sharing', () => {
  let t: TestBackend;
  let browser: TestBrowser;
  let alice: Page;
  let dir: string;
  let qcow2: string;
  let imageId: string;

  const list = async (token: string, query = ''): Promise<Listed[]> => {
    const reply = await t.request('GET', `/v2/images${query}`, {
      token,
      headers: { accept: 'application/json' },
    });
    return ((await reply.json()) as { images: Listed[] }).images;
  };

  beforeAll(async () => {
    t = await startTestBackend();
    browser = await launchBrowser();
    dir = mkdtempSync(join(tmpdir(), 'hangar-console-files-'));
    // A real qcow2, as qemu-img makes it (qemu-utils, from scripts/provision.sh).
    qcow2 = join(dir, 'cirros.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '64M']);
    // Random bytes are raw content: declared qcow2, the format inspector refuses them.
    writeFileSync(join(dir, 'junk.qcow2'), randomBytes(256 * 1024));
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('uploads a real file and shows it active with its checksum', async () => {
    alice = await browser.newPage();
    await signIn(alice, t.url, t.tokens.alice);
    await alice.getByRole('link', { name: 'Upload', exact: true }).click();
    await uploadForm(alice).getByLabel('Image file').setInputFiles(qcow2);
    // The name and format come from the file's name; both can be changed.
    expect(await uploadForm(alice).getByLabel('Name').inputValue()).toBe('cirros');
    expect(await uploadForm(alice).getByLabel('Disk format').inputValue()).toBe('qcow2');
    await uploadForm(alice).getByLabel('Visibility').selectOption('shared');
    await uploadForm(alice).getByLabel('Reference (optional)').fill('cirros:0.6');
    await alice.getByRole('button', { name: 'Upload', exact: true }).click();
    const done = alice.getByRole('status');
    await expect.poll(() => done.textContent(), { timeout: 30_000 }).toContain('is active');
    const sha512 = createHash('sha512').update(readFileSync(qcow2)).digest('hex');
    expect(await done.locator('code.checksum').textContent()).toBe(sha512);
    expect(await done.textContent()).toContain('cirros:0.6 points to it');
    await screenshot(alice, 'upload');
    const images = await list(t.tokens.alice);
    const uploaded = images.find((i) => i.name === 'cirros');
    expect(uploaded?.status).toBe('active');
    expect(uploaded?.os_hash_value).toBe(sha512);
    imageId = uploaded?.id ?? '';
  });

  it('shows the server’s reason for a refused upload, keeps nothing, and offers a retry', async () => {
    await uploadForm(alice).getByLabel('Image file').setInputFiles(join(dir, 'junk.qcow2'));
    await uploadForm(alice).getByLabel('Name').fill('junk');
    await uploadForm(alice).getByLabel('Reference (optional)').fill('');
    await alice.getByRole('button', { name: 'Upload', exact: true }).click();
    const alert = alice.getByRole('alert');
    await expect.poll(() => alert.textContent(), { timeout: 30_000 }).toContain('The upload failed');
    expect(await alert.locator('.reason').textContent()).toBe(
      'image content is raw but disk_format is qcow2',
    );
    expect(await alert.getByRole('button', { name: 'Retry' }).isVisible()).toBe(true);
    await screenshot(alice, 'upload-failed');
    // No half image left queued.
    expect((await list(t.tokens.alice)).filter((i) => i.name === 'junk')).toEqual([]);
    // Retried as raw, the same bytes go in.
    await uploadForm(alice).getByLabel('Disk format').selectOption('raw');
    await alice.getByRole('button', { name: 'Upload', exact: true }).click();
    await expect
      .poll(() => alice.getByRole('status').textContent(), { timeout: 30_000 })
      .toContain('is active');
  });

  it('shows progress with rate and ETA, warns before leaving, and a cancel deletes the image', async () => {
    const page = await browser.newPage();
    await signIn(page, t.url, t.tokens.alice);
    await throttleUploads(page, 1024 * 1024);
    await page.goto(`${t.url}/console/upload`);
    await uploadForm(page)
      .getByLabel('Image file')
      .setInputFiles({
        name: 'big.raw',
        mimeType: 'application/octet-stream',
        buffer: randomBytes(16 * 1024 * 1024),
      });
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const progress = page.locator('progress#upload-progress');
    await expect
      .poll(async () => Number(await progress.getAttribute('value')), { timeout: 20_000 })
      .toBeGreaterThan(0);
    const panel = page.locator('.panel', { has: progress });
    await expect.poll(() => panel.textContent(), { timeout: 10_000 }).toMatch(/\/s · about \d+ s left/);
    expect(await panel.textContent()).toMatch(/of 16\.0 MiB \(\d+%\)/);
    await screenshot(page, 'upload-progress');
    const created = (await list(t.tokens.alice)).find((i) => i.name === 'big');
    expect(created?.status).toMatch(/queued|saving/);

    // Leaving mid-upload asks first; staying keeps the upload going.
    const asked = new Promise<string>((resolve) => {
      page.once('dialog', (dialog) => {
        resolve(dialog.type());
        void dialog.dismiss();
      });
    });
    await page.close({ runBeforeUnload: true });
    expect(await asked).toBe('beforeunload');
    expect(page.isClosed()).toBe(false);

    await page.getByRole('button', { name: 'Cancel upload' }).click();
    await expect.poll(() => page.getByRole('status').textContent()).toContain('cancelled');
    // Nothing left behind: the image it created is gone.
    await expect.poll(async () => (await list(t.tokens.alice)).filter((i) => i.name === 'big')).toEqual([]);
    await page.close();
  });

  it('edits extra properties and tags through the image page, and shares it', async () => {
    await alice.goto(`${t.url}/console/images/${imageId}`);
    await alice.getByRole('heading', { name: 'cirros' }).waitFor();
    expect(await alice.locator('dl.props').first().textContent()).toContain('os_hash_value');
    await alice.getByLabel('Property').fill('os_distro');
    await alice.getByLabel('Value').fill('cirros');
    await alice.getByRole('button', { name: 'Set property' }).click();
    await expect
      .poll(() => alice.getByRole('region', { name: 'Extra properties' }).textContent())
      .toContain('os_distro');
    await alice.getByLabel('New tag').fill('tiny');
    await alice.getByRole('button', { name: 'Add tag' }).click();
    await expect.poll(() => alice.locator('ul.tags').textContent()).toContain('tiny');
    const stored = (await (
      await t.request('GET', `/v2/images/${imageId}`, {
        token: t.tokens.alice,
        headers: { accept: 'application/json' },
      })
    ).json()) as { os_distro?: string; tags: string[] };
    expect(stored.os_distro).toBe('cirros');
    expect(stored.tags).toEqual(['tiny']);
    await alice.getByLabel('Share with project').fill('projB');
    await alice.getByRole('button', { name: 'Share', exact: true }).click();
    await expect.poll(() => alice.getByRole('region', { name: 'Members' }).textContent()).toContain('projB');
    expect(await alice.getByRole('region', { name: 'Members' }).textContent()).toContain('pending');
    // "Copy as command" names the CLI line.
    const shareForm = alice.getByRole('region', { name: 'Members' }).locator('form');
    await shareForm.getByRole('button', { name: 'Copy as command' }).click();
    expect(await shareForm.locator('code.command').textContent()).toBe(`hangar share ${imageId} PROJECT`);
    await screenshot(alice, 'image');
  });

  it('lets the other project accept the share, and then lists it', async () => {
    const bob = await browser.newPage();
    await signIn(bob, t.url, t.tokens.bob);
    // Not accepted yet: Glance's default list leaves it out, the pending box offers it.
    const pending = bob.getByRole('region', { name: 'Shared with your project, awaiting your answer' });
    await expect.poll(() => pending.textContent()).toContain('cirros');
    expect(await bob.locator('table.catalogue tbody').textContent()).not.toContain('cirros');
    await screenshot(bob, 'shared-pending');
    await pending.getByRole('link', { name: 'cirros' }).click();
    const shared = bob.getByRole('region', { name: 'Shared with your project' });
    await expect.poll(() => shared.locator('.member-status').textContent()).toBe('pending');
    // A consumer may not change the image: the service's refusal is shown in words.
    await bob.getByLabel('Property').fill('x_note');
    await bob.getByLabel('Value').fill('mine');
    await bob.getByRole('button', { name: 'Set property' }).click();
    await expect
      .poll(() => bob.getByRole('region', { name: 'Extra properties' }).getByRole('alert').textContent())
      .toMatch(/not permitted to modify image .*\(HTTP 403\)/);
    await shared.getByRole('button', { name: 'Accept' }).click();
    await expect.poll(() => shared.locator('.member-status').textContent()).toBe('accepted');
    await bob.getByRole('link', { name: 'Images', exact: true }).click();
    await expect.poll(() => bob.locator('table.catalogue tbody').textContent()).toContain('cirros');
    expect(await bob.locator('tr', { hasText: 'cirros' }).textContent()).toContain('projA');
    const members = (await (
      await t.request('GET', `/v2/images/${imageId}/members`, {
        token: t.tokens.alice,
        headers: { accept: 'application/json' },
      })
    ).json()) as { members: Array<{ member_id: string; status: string }> };
    expect(members.members).toEqual([expect.objectContaining({ member_id: 'projB', status: 'accepted' })]);
  });

  it('deactivates, reactivates, protects and deletes an image, each confirmed', async () => {
    // bob's tab was opened last: a background tab's animation frames are throttled.
    await alice.bringToFront();
    await alice.goto(`${t.url}/console/images/${imageId}`);
    await alice.getByRole('heading', { name: 'cirros' }).waitFor();
    const badge = alice.locator('.page-head .badge');
    const confirm = async (button: string, inDialog = button) => {
      await alice.getByRole('button', { name: button, exact: true }).click();
      await alice.getByRole('dialog').getByRole('button', { name: inDialog, exact: true }).click();
    };
    await confirm('Deactivate');
    await expect.poll(() => badge.textContent()).toBe('deactivated');
    await confirm('Reactivate');
    await expect.poll(() => badge.textContent()).toBe('active');
    await confirm('Protect');
    await expect.poll(() => alice.locator('dl.props').first().textContent()).toMatch(/protectedtrue/);
    // A protected image: the service refuses the delete, and the dialog says why.
    await confirm('Delete', 'Delete image');
    await expect
      .poll(() => alice.getByRole('dialog').getByRole('alert').textContent())
      .toContain('(HTTP 403)');
    await alice.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    await confirm('Unprotect');
    await expect.poll(() => alice.locator('dl.props').first().textContent()).toMatch(/protectedfalse/);
    await confirm('Delete', 'Delete image');
    await alice.getByRole('heading', { name: 'Images' }).waitFor();
    const gone = await t.request('GET', `/v2/images/${imageId}`, { token: t.tokens.alice });
    expect(gone.status).toBe(404);
  });
});
