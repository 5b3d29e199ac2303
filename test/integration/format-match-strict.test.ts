/**
 * The default, strict format match (Glance's require_image_format_match = True) and the allowed
 * disk and container formats (HANGAR_DISK_FORMATS / HANGAR_CONTAINER_FORMATS, Glance's
 * [image_format] lists) through HTTP against the local stand-ins.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetServiceConfig, setServiceEnvironment } from '#platform/config';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { expectError, ImagesApi, imageObjects, peek } from '../helpers/images.ts';
import { putUpload, waitForImport } from '../helpers/imports.ts';

const SCHEMA = "Provided object does not match schema 'image': ";

let t: TestBackend;
let api: ImagesApi;

beforeAll(async () => {
  t = await startTestBackend({
    env: { HANGAR_DISK_FORMATS: 'raw,qcow2,iso', HANGAR_CONTAINER_FORMATS: 'bare,ovf' },
  });
  api = new ImagesApi(t);
});
afterAll(async () => {
  await t?.stop();
});

async function publish(imageId: string, reference: string): Promise<{ status: string; message?: string }> {
  const started = await t.request('POST', `/v1/references/${reference}/publish`, {
    token: t.tokens.alice,
    body: { image_id: imageId },
  });
  expect(started.status, await peek(started)).toBe(202);
  const taskId = ((await started.json()) as { id: string }).id;
  for (let i = 0; i < 300; i++) {
    const shown = await t.request('GET', `/v1/publications/${taskId}`, { token: t.tokens.alice });
    const task = (await shown.json()) as { status: string; message?: string };
    if (task.status === 'success' || task.status === 'failure') return task;
    await sleep(100);
  }
  throw new Error(`publication ${taskId} did not finish`);
}

describe('the format match, required by default', () => {
  it('refuses random bytes declared qcow2 on PUT /file, leaving the image queued and no object', async () => {
    const image = await api.create('alice', { disk_format: 'qcow2', container_format: 'bare' });
    const response = await api.upload('alice', image.id, randomBytes(2048));
    await expectError(response, 400, 'image content is raw but disk_format is qcow2');
    expect(await api.show('alice', image.id)).toMatchObject({ status: 'queued', size: null });
    expect(await imageObjects(`images/${image.id}/`)).toEqual([]);
  });

  it('fails an S3-upload import of random bytes declared qcow2', async () => {
    const image = await api.create('alice', { disk_format: 'qcow2', container_format: 'bare' });
    await putUpload(`images/${image.id}`, randomBytes(2048));
    const done = await waitForImport(t, image.id);
    expect(done.status).toBe('queued');
    expect(done.os_glance_failed_import).toContain('image content is raw but disk_format is qcow2');
  });

  it('refuses at publish verify an image let in while the match was off', async () => {
    // Prepare: in with the match off ...
    setServiceEnvironment({ HANGAR_REQUIRE_IMAGE_FORMAT_MATCH: 'false' });
    let imageId: string;
    try {
      const image = await api.create('alice', { disk_format: 'qcow2', container_format: 'bare' });
      expect((await api.upload('alice', image.id, randomBytes(2048))).status).toBe(204);
      imageId = image.id;
    } finally {
      // ... then the operator turns it back on (the default).
      delete process.env.HANGAR_REQUIRE_IMAGE_FORMAT_MATCH;
      resetServiceConfig();
    }
    // Act
    const task = await publish(imageId, 'strict:one');
    // Assess
    expect(task.status).toBe('failure');
    expect(task.message).toContain('image content is raw but disk_format is qcow2');
  });
});

describe('allowed disk and container formats', () => {
  it('answers 400 to a create with a disk_format or container_format outside the lists', async () => {
    const diskRefused = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      body: { disk_format: 'vmdk', container_format: 'bare' },
    });
    await expectError(diskRefused, 400, `${SCHEMA}'vmdk' is not one of [None, 'raw', 'qcow2', 'iso']`);
    const containerRefused = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      body: { disk_format: 'raw', container_format: 'docker' },
    });
    await expectError(containerRefused, 400, `${SCHEMA}'docker' is not one of [None, 'bare', 'ovf']`);
    // The listed ones are fine.
    expect(await api.create('alice', { disk_format: 'iso', container_format: 'ovf' })).toMatchObject({
      disk_format: 'iso',
      container_format: 'ovf',
    });
  });

  it('answers 400 to a PATCH that sets a format outside the list, and changes nothing', async () => {
    const image = await api.create('alice', { disk_format: 'raw', container_format: 'bare' });
    const response = await api.patch('alice', image.id, [
      { op: 'replace', path: '/disk_format', value: 'vhd' },
    ]);
    await expectError(response, 400, `${SCHEMA}'vhd' is not one of [None, 'raw', 'qcow2', 'iso']`);
    await api.expectUnchanged(image);
    const ok = await api.patch('alice', image.id, [{ op: 'replace', path: '/disk_format', value: 'qcow2' }]);
    expect(ok.status, await peek(ok)).toBe(200);
    expect((await api.show('alice', image.id)).disk_format).toBe('qcow2');
  });

  it('serves the lists as the enums of GET /v2/schemas/image and /v2/schemas/images', async () => {
    for (const path of ['/v2/schemas/image', '/v2/schemas/images']) {
      const response = await t.request('GET', path, { token: t.tokens.alice });
      expect(response.status).toBe(200);
      // biome-ignore lint/suspicious/noExplicitAny: a JSON-Schema document, read field by field.
      const document = (await response.json()) as any;
      const properties = path.endsWith('images')
        ? document.properties.images.items.properties
        : document.properties;
      expect(properties.disk_format.enum).toEqual([null, 'raw', 'qcow2', 'iso']);
      expect(properties.container_format.enum).toEqual([null, 'bare', 'ovf']);
    }
  });
});
