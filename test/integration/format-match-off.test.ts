/**
 * HANGAR_REQUIRE_IMAGE_FORMAT_MATCH=false (Glance's require_image_format_match = False, as
 * tempest's standard run needs): content that is not the declared disk_format is let in on every
 * path that checks it (PUT /file, imports, publish verify), while unsafe content stays refused.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { expectError, ImagesApi, imageObjects, peek } from '../helpers/images.ts';
import { putUpload, qcow2WithBackingFile, waitForImport } from '../helpers/imports.ts';

/** tempest.conf's [image] disk_formats and container_formats in the reference configuration. */
const TEMPEST_DISK_FORMATS = [
  'raw',
  'qcow2',
  'vhd',
  'vhdx',
  'vmdk',
  'vdi',
  'iso',
  'ploop',
  'aki',
  'ari',
  'ami',
];
const TEMPEST_CONTAINER_FORMATS = ['bare', 'ami', 'ari', 'aki', 'ovf', 'ova', 'docker', 'compressed'];
/** Formats whose match is unrecognised content anyway: their virtual size is the byte count. */
const TAKES_ANY_BYTES = ['raw', 'ami', 'ari', 'aki', 'ploop'];

let t: TestBackend;
let api: ImagesApi;
let scratch: string;
let backingQcow2: Buffer;

beforeAll(async () => {
  t = await startTestBackend({ env: { HANGAR_REQUIRE_IMAGE_FORMAT_MATCH: 'false' } });
  api = new ImagesApi(t);
  scratch = mkdtempSync(join(tmpdir(), 'hangar-format-off-'));
  backingQcow2 = readFileSync(await qcow2WithBackingFile(scratch));
});
afterAll(async () => {
  await t?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('PUT /file with the format match off', () => {
  it.each(TEMPEST_DISK_FORMATS)(
    'stores random bytes declared %s, as tempest uploads them',
    async (diskFormat) => {
      // Prepare: like ListUserImagesTest, 1024..4096 random bytes.
      const bytes = randomBytes(1024 + Math.floor(Math.random() * 3072));
      const image = await api.create('alice', { disk_format: diskFormat, container_format: 'bare' });
      // Act
      const response = await api.upload('alice', image.id, bytes);
      // Assess
      expect(response.status, await peek(response)).toBe(204);
      expect(await api.show('alice', image.id)).toMatchObject({
        status: 'active',
        size: bytes.length,
        disk_format: diskFormat,
        // A mismatch let through has no virtual size (as in Glance): the content's own would be wrong.
        virtual_size: TAKES_ANY_BYTES.includes(diskFormat) ? bytes.length : null,
      });
    },
  );

  it("takes tempest's container formats with random bytes too", async () => {
    for (const containerFormat of TEMPEST_CONTAINER_FORMATS) {
      const image = await api.create('alice', { disk_format: 'qcow2', container_format: containerFormat });
      const response = await api.upload('alice', image.id, randomBytes(2048));
      expect(response.status, `${containerFormat}: ${await peek(response)}`).toBe(204);
    }
  });

  it('still refuses unsafe content, whatever it is declared as, and keeps nothing', async () => {
    for (const diskFormat of ['qcow2', 'raw', 'vmdk', 'ploop']) {
      const image = await api.create('alice', { disk_format: diskFormat, container_format: 'bare' });
      const response = await api.upload('alice', image.id, backingQcow2);
      await expectError(response, 400, 'qcow2 image has a backing file');
      expect((await api.show('alice', image.id)).status).toBe('queued');
      expect(await imageObjects(`images/${image.id}/`)).toEqual([]);
    }
  });
});

describe('imports with the format match off', () => {
  it('activates an S3-upload import of random bytes declared qcow2', async () => {
    const bytes = randomBytes(3000);
    const image = await api.create('alice', { disk_format: 'qcow2', container_format: 'bare' });
    await putUpload(`images/${image.id}`, bytes);
    const done = await waitForImport(t, image.id);
    expect(done).toMatchObject({ status: 'active', size: bytes.length, virtual_size: null });
  });

  it('still fails the import of a qcow2 naming a backing file', async () => {
    const image = await api.create('alice', { disk_format: 'vmdk', container_format: 'bare' });
    await putUpload(`images/${image.id}`, backingQcow2);
    const done = await waitForImport(t, image.id);
    expect(done.status).toBe('queued');
    expect(done.os_glance_failed_import).toContain('qcow2 image has a backing file');
  });
});

describe('publish verify with the format match off', () => {
  it('publishes an image that was let in with a mismatch (the same setting applies)', async () => {
    const image = await api.create('alice', { name: 'pub', disk_format: 'vhdx', container_format: 'bare' });
    expect((await api.upload('alice', image.id, randomBytes(4096))).status).toBe(204);
    const started = await t.request('POST', '/v1/references/fmt:off/publish', {
      token: t.tokens.alice,
      body: { image_id: image.id },
    });
    expect(started.status, await peek(started)).toBe(202);
    const taskId = ((await started.json()) as { id: string }).id;
    let task: { status: string; message?: string } = { status: 'pending' };
    for (let i = 0; i < 300 && task.status !== 'success' && task.status !== 'failure'; i++) {
      await sleep(100);
      const shown = await t.request('GET', `/v1/publications/${taskId}`, { token: t.tokens.alice });
      task = (await shown.json()) as typeof task;
    }
    expect(task.status, task.message).toBe('success');
  });
});
