/**
 * Image data through HTTP against the local stand-ins: the status machine around PUT /file,
 * digests of multi-block bodies, failed and interrupted uploads (back to queued, no object left
 * in the images bucket), the size cap, and ranged downloads.
 */
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import {
  abortedUpload,
  chunkedUpload,
  eventually,
  expectError,
  ImagesApi,
  type ImageView,
  imageObjects,
  peek,
} from '../helpers/images.ts';

const MiB = 1024 * 1024;
/** Small enough to exceed cheaply, large enough for the 20 MiB multi-block upload. */
const SIZE_CAP = 21 * MiB;

let t: TestBackend;
let api: ImagesApi;

beforeAll(async () => {
  t = await startTestBackend({ env: { HANGAR_IMAGE_SIZE_CAP: String(SIZE_CAP) } });
  api = new ImagesApi(t);
});
afterAll(async () => {
  await t?.stop();
});

const md5 = (bytes: Uint8Array) => createHash('md5').update(bytes).digest('hex');
const sha512 = (bytes: Uint8Array) => createHash('sha512').update(bytes).digest('hex');

function queuedImage(persona: 'alice' | 'bob' = 'alice'): Promise<ImageView> {
  return api.create(persona, { disk_format: 'raw', container_format: 'bare' });
}

/** After a failed upload: queued again, no size, no digests, and nothing in the images bucket. */
async function expectCleanQueued(id: string): Promise<void> {
  const image = await api.show('alice', id);
  expect(image).toMatchObject({
    status: 'queued',
    size: null,
    virtual_size: null,
    checksum: null,
    os_hash_algo: null,
    os_hash_value: null,
  });
  expect(await imageObjects(`images/${id}/`)).toEqual([]);
  const download = await api.download('alice', id);
  expect(download.status).toBe(204);
}

/** Reads a response body fully as bytes. */
async function bytesOf(response: Response): Promise<Buffer> {
  return Buffer.from(await response.arrayBuffer());
}

describe('PUT /v2/images/{id}/file: the status machine', () => {
  it('makes a queued image active with size and digests, and a second upload is a 409', async () => {
    // Prepare
    const image = await queuedImage();
    const bytes = randomBytes(1024 * 1024 + 7);
    // Act
    const response = await api.upload('alice', image.id, bytes);
    // Assess
    expect(response.status, await peek(response)).toBe(204);
    expect(response.headers.get('x-openstack-request-id')).toMatch(/^req-/);
    const active = await api.show('alice', image.id);
    expect(active).toMatchObject({
      status: 'active',
      size: bytes.length,
      checksum: md5(bytes),
      os_hash_algo: 'sha512',
      os_hash_value: sha512(bytes),
    });
    expect(Date.parse(active.updated_at)).toBeGreaterThanOrEqual(Date.parse(image.updated_at));
    expect(await imageObjects(`images/${image.id}/`)).toHaveLength(1);

    // Act: upload again
    const again = await api.upload('alice', image.id, Buffer.from('other bytes'));
    // Assess
    await expectError(again, 409, 'Image status transition from active to saving is not allowed');
    await api.expectUnchanged(active);
    expect(md5(await bytesOf(await api.download('alice', image.id)))).toBe(md5(bytes));
  });

  it('refuses data for an image without formats with 400', async () => {
    for (const [body, message] of [
      [{}, 'Properties disk_format, container_format must be set prior to saving data.'],
      [{ disk_format: 'raw' }, 'Property container_format must be set prior to saving data.'],
      [{ container_format: 'bare' }, 'Property disk_format must be set prior to saving data.'],
    ] as const) {
      const image = await api.create('alice', body);
      await expectError(await api.upload('alice', image.id, Buffer.from('data')), 400, message);
      await api.expectUnchanged(image);
    }
  });

  it('refuses a body that is not application/octet-stream with 415', async () => {
    const image = await queuedImage();
    for (const contentType of ['application/json', 'text/plain']) {
      const response = await api.upload('alice', image.id, Buffer.from('{}'), {
        'content-type': contentType,
      });
      await expectError(
        response,
        415,
        `The request media type ${contentType} is not supported by this server.`,
      );
    }
    await api.expectUnchanged(image);
  });

  it('refuses uploads to another project’s image (404) and to a public image of another project (403)', async () => {
    const hidden = await queuedImage();
    await expectError(
      await api.upload('bob', hidden.id, Buffer.from('x')),
      404,
      `No image found with ID ${hidden.id}`,
    );
    await api.expectUnchanged(hidden);
    const visible = await api.create('admin', {
      owner: 'projA',
      visibility: 'public',
      disk_format: 'raw',
      container_format: 'bare',
    });
    await expectError(
      await api.upload('bob', visible.id, Buffer.from('x')),
      403,
      `You are not permitted to modify image ${visible.id}.`,
    );
    await api.expectUnchanged(visible);
  });

  it('takes a zero-byte upload: active, size 0, and the download is 200 and empty', async () => {
    // Prepare
    const image = await queuedImage();
    // Act
    const response = await api.upload('alice', image.id, new Uint8Array(0));
    // Assess
    expect(response.status, await peek(response)).toBe(204);
    expect(await api.show('alice', image.id)).toMatchObject({
      status: 'active',
      size: 0,
      checksum: md5(new Uint8Array(0)),
      os_hash_value: sha512(new Uint8Array(0)),
    });
    const download = await api.download('alice', image.id);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-length')).toBe('0');
    expect(download.headers.get('content-md5')).toBe(md5(new Uint8Array(0)));
    expect(await bytesOf(download)).toHaveLength(0);
  });

  it('answers 204 with no body to a download of a queued image', async () => {
    const image = await queuedImage();
    const response = await api.download('alice', image.id);
    expect(response.status).toBe(204);
    expect(response.headers.get('x-openstack-request-id')).toMatch(/^req-/);
    expect(await response.text()).toBe('');
  });
});

describe('PUT /v2/images/{id}/file: digests of a multi-block body', () => {
  it('stores 20 MiB (three 8 MiB blocks) with the right md5/sha512, and downloads the same bytes with Content-MD5', async () => {
    // Prepare
    const image = await queuedImage();
    const bytes = randomBytes(20 * MiB);
    // Act
    const response = await api.upload('alice', image.id, bytes);
    // Assess
    expect(response.status, await peek(response)).toBe(204);
    const active = await api.show('alice', image.id);
    expect(active).toMatchObject({
      status: 'active',
      size: bytes.length,
      checksum: md5(bytes),
      os_hash_algo: 'sha512',
      os_hash_value: sha512(bytes),
    });
    const download = await api.download('alice', image.id);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toBe('application/octet-stream');
    expect(download.headers.get('content-length')).toBe(String(bytes.length));
    expect(download.headers.get('content-md5')).toBe(md5(bytes));
    const body = await bytesOf(download);
    expect(body.length).toBe(bytes.length);
    expect(body.equals(bytes)).toBe(true);
  });

  it('hashes a chunked body with odd chunk sizes the same way', async () => {
    // Prepare: chunks that straddle the 8 MiB block boundaries
    const image = await queuedImage();
    const bytes = randomBytes(17 * MiB + 3);
    const chunks: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 777_777) chunks.push(bytes.subarray(at, at + 777_777));
    // Act
    const { status } = await chunkedUpload(t, t.tokens.alice, image.id, chunks);
    // Assess
    expect(status).toBe(204);
    expect(await api.show('alice', image.id)).toMatchObject({
      status: 'active',
      size: bytes.length,
      checksum: md5(bytes),
      os_hash_value: sha512(bytes),
    });
    expect((await bytesOf(await api.download('alice', image.id))).equals(bytes)).toBe(true);
  });
});

describe('PUT /v2/images/{id}/file: failed uploads leave a clean queued image', () => {
  it.each([
    ['a small body with a too-large Content-Length', 100_000, { contentLength: 1_000_000 }],
    ['a multi-block body with a too-large Content-Length', 12 * MiB, { contentLength: 20 * MiB }],
    ['a small chunked body', 100_000, 'chunked'],
    ['a multi-block chunked body', 17 * MiB, 'chunked'],
  ] as const)('returns to queued with no object when the client goes away: %s', async (_, sent, framing) => {
    // Prepare
    const image = await queuedImage();
    // Act
    await abortedUpload(t, t.tokens.alice, image.id, randomBytes(sent), framing);
    // Assess: the server notices, restores the image and removes what it had stored.
    await eventually(async () => (await api.show('alice', image.id)).status === 'queued');
    await expectCleanQueued(image.id);
    // A retry starts clean and succeeds.
    const retry = Buffer.from('retry after abort');
    expect((await api.upload('alice', image.id, retry)).status).toBe(204);
    expect(await api.show('alice', image.id)).toMatchObject({ status: 'active', size: retry.length });
    expect(await imageObjects(`images/${image.id}/`)).toHaveLength(1);
  });

  it.each([
    ['shorter', 100, 64],
    ['longer', 100, 164],
    ['multi-block longer', 9 * MiB, 9 * MiB + 1],
  ])(
    'refuses a body %s than x-openstack-image-size with 400 and goes back to queued',
    async (_, declared, actual) => {
      // Prepare
      const image = await queuedImage();
      // Act
      const response = await api.upload('alice', image.id, randomBytes(actual), {
        'x-openstack-image-size': String(declared),
      });
      // Assess
      await expectError(response, 400, /^Image size mismatch: x-openstack-image-size says \d+ bytes/);
      await expectCleanQueued(image.id);
    },
  );

  it.each([
    ['shorter', 100, 64],
    ['longer', 100, 164],
    ['multi-block shorter', 9 * MiB, 9 * MiB - 1],
  ])(
    'refuses a chunked body %s than x-openstack-image-size with 400 and goes back to queued',
    async (_, declared, actual) => {
      const image = await queuedImage();
      const bytes = randomBytes(actual);
      const response = await chunkedUpload(
        t,
        t.tokens.alice,
        image.id,
        [bytes.subarray(0, 10), bytes.subarray(10)],
        {
          'x-openstack-image-size': String(declared),
        },
      );
      expect(response.status, response.body).toBe(400);
      expect(response.body).toContain('Image size mismatch: x-openstack-image-size says');
      await expectCleanQueued(image.id);
    },
  );

  it('refuses a non-numeric x-openstack-image-size with 400 without touching the image', async () => {
    const image = await queuedImage();
    const response = await api.upload('alice', image.id, Buffer.from('x'), {
      'x-openstack-image-size': 'ten',
    });
    await expectError(response, 400, "x-openstack-image-size must be a non-negative integer, not 'ten'");
    await api.expectUnchanged(image);
  });

  it('accepts a body that matches x-openstack-image-size', async () => {
    const image = await queuedImage();
    const bytes = randomBytes(4096);
    const response = await api.upload('alice', image.id, bytes, { 'x-openstack-image-size': '4096' });
    expect(response.status, await peek(response)).toBe(204);
    expect((await api.show('alice', image.id)).size).toBe(4096);
  });

  it('refuses more than the image size cap with 413, declared or streamed, and goes back to queued', async () => {
    // Prepare
    const image = await queuedImage();
    // Act: declared too large: refused before any byte is read
    const declared = await api.upload('alice', image.id, Buffer.from('x'), {
      'x-openstack-image-size': String(SIZE_CAP + 1),
    });
    // Assess
    await expectError(
      declared,
      413,
      `Image exceeds the storage quota: the image size cap is ${SIZE_CAP} bytes.`,
    );
    await api.expectUnchanged(image);

    // Act: streamed past the cap without a declared size
    const streamed = await api.upload('alice', image.id, randomBytes(SIZE_CAP + 1));
    // Assess
    await expectError(
      streamed,
      413,
      `Image exceeds the storage quota: the image size cap is ${SIZE_CAP} bytes.`,
    );
    await expectCleanQueued(image.id);

    // Exactly the cap is fine.
    const exact = randomBytes(SIZE_CAP);
    expect((await api.upload('alice', image.id, exact)).status).toBe(204);
    expect(await api.show('alice', image.id)).toMatchObject({
      status: 'active',
      size: SIZE_CAP,
      checksum: md5(exact),
    });
  });
});

describe('PUT /v2/images/{id}/file: the image is deleted during the upload', () => {
  it.each([
    ['a single-block body', 1024],
    ['a multi-block body', 9 * MiB],
  ])('answers 410 Gone and leaves no object behind: %s', async (_, firstPart) => {
    // Prepare: an upload that has started (image saving) and is still sending
    const image = await queuedImage();
    const req = httpRequest(`${t.url}/v2/images/${image.id}/file`, {
      method: 'PUT',
      headers: {
        'x-auth-token': t.tokens.alice,
        'content-type': 'application/octet-stream',
        'transfer-encoding': 'chunked',
      },
    });
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
    });
    req.write(randomBytes(firstPart));
    await eventually(async () => (await api.show('alice', image.id)).status === 'saving');
    // Act
    const deleted = await t.request('DELETE', `/v2/images/${image.id}`, { token: t.tokens.alice });
    req.end(randomBytes(100));
    const upload = await answer;
    // Assess
    expect(deleted.status).toBe(204);
    expect(upload.status, upload.body).toBe(410);
    expect(upload.body).toContain(
      `Image ${image.id} could not be found after upload. The image may have been deleted during the upload.`,
    );
    expect((await t.request('GET', `/v2/images/${image.id}`, { token: t.tokens.admin })).status).toBe(404);
    expect(await imageObjects(`images/${image.id}/`)).toEqual([]);
  });
});

describe('GET /v2/images/{id}/file: ranges', () => {
  let image: ImageView;
  const bytes = randomBytes(1000);

  beforeAll(async () => {
    image = await api.createActive('alice', bytes);
  });

  it.each([
    ['bytes=0-9', 0, 9],
    ['bytes=-5', 995, 999],
    ['bytes=10-', 10, 999],
    ['bytes=990-5000', 990, 999],
    ['bytes=999-999', 999, 999],
  ])('answers Range %s with 206, Content-Range and those bytes', async (range, start, end) => {
    const response = await api.download('alice', image.id, { range });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/1000`);
    expect(response.headers.get('content-length')).toBe(String(end - start + 1));
    expect(response.headers.get('content-md5')).toBe(md5(bytes));
    expect((await bytesOf(response)).equals(bytes.subarray(start, end + 1))).toBe(true);
  });

  it('honours Glance’s legacy Content-Range request header', async () => {
    const response = await api.download('alice', image.id, { 'content-range': 'bytes 0-9/*' });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe('bytes 0-9/1000');
    expect((await bytesOf(response)).equals(bytes.subarray(0, 10))).toBe(true);
  });

  it.each(['bytes=1000-', 'bytes=5000-6000', 'bytes=-0', 'bytes=20-10'])(
    'answers the unsatisfiable Range %s with 416 and Content-Range bytes */size',
    async (range) => {
      const response = await api.download('alice', image.id, { range });
      await expectError(response, 416, 'Requested range not satisfiable');
      expect(response.headers.get('content-range')).toBe('bytes */1000');
    },
  );

  it('answers any Range on an empty image with 416', async () => {
    const empty = await api.createActive('alice', new Uint8Array(0));
    const response = await api.download('alice', empty.id, { range: 'bytes=0-0' });
    expect(response.status).toBe(416);
    expect(response.headers.get('content-range')).toBe('bytes */0');
  });
});
