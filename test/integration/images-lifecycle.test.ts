/**
 * The images API through HTTP against the local stand-ins: create, show, delete, deactivate and
 * reactivate, authentication, error shapes and request ids. Every refusal is followed by a
 * re-read that shows nothing changed.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import {
  expectError,
  GLANCE_BASE_KEYS,
  ImagesApi,
  type ImageView,
  imageObjects,
  peek,
} from '../helpers/images.ts';

let t: TestBackend;
let api: ImagesApi;

beforeAll(async () => {
  t = await startTestBackend();
  api = new ImagesApi(t);
});
afterAll(async () => {
  await t?.stop();
});

/** Images visible to admin, for "nothing was created" checks. */
async function allImageIds(): Promise<string[]> {
  return (await api.list('admin', 'limit=1000')).images.map((image) => image.id);
}

describe('POST /v2/images', () => {
  it('creates a queued image with 201, Location, import methods and Glance’s key set', async () => {
    // Act
    const response = await t.request('POST', '/v2/images', { token: t.tokens.alice, body: {} });
    // Assess
    expect(response.status).toBe(201);
    const body = (await response.json()) as ImageView;
    expect(response.headers.get('location')).toBe(`${t.url}/v2/images/${body.id}`);
    expect(response.headers.get('openstack-image-import-methods')).toBe('glance-direct,web-download');
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.headers.get('x-openstack-request-id')).toMatch(/^req-[0-9a-f-]{36}$/);
    // Same keys in the same order as Glance 25's answer to the same request (transcript #20).
    expect(Object.keys(body)).toEqual([...GLANCE_BASE_KEYS]);
    expect(body).toMatchObject({
      name: null,
      disk_format: null,
      container_format: null,
      visibility: 'shared',
      size: null,
      virtual_size: null,
      status: 'queued',
      checksum: null,
      protected: false,
      min_ram: 0,
      min_disk: 0,
      owner: 'projA',
      os_hidden: false,
      os_hash_algo: null,
      os_hash_value: null,
      tags: [],
      self: `/v2/images/${body.id}`,
      file: `/v2/images/${body.id}/file`,
      schema: '/v2/schemas/image',
    });
    expect(body.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(body.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(body.updated_at).toBe(body.created_at);
    // The Location is where the image now is.
    expect(await api.show('alice', body.id)).toEqual(body);
  });

  it('takes a given id, all writable attributes and extra properties (extra keys first, as Glance #41)', async () => {
    // Prepare
    const id = randomUUID();
    // Act
    const image = await api.create('alice', {
      id,
      name: 'full',
      disk_format: 'qcow2',
      container_format: 'bare',
      visibility: 'private',
      protected: true,
      os_hidden: true,
      min_ram: 128,
      min_disk: 1,
      tags: ['t1', 't2', 't1'],
      os_distro: 'debian',
      custom_prop: 'v1',
    });
    // Assess
    expect(Object.keys(image)).toEqual(['os_distro', 'custom_prop', ...GLANCE_BASE_KEYS]);
    expect(image).toMatchObject({
      id,
      name: 'full',
      disk_format: 'qcow2',
      container_format: 'bare',
      visibility: 'private',
      protected: true,
      os_hidden: true,
      min_ram: 128,
      min_disk: 1,
      tags: ['t1', 't2'],
      os_distro: 'debian',
      custom_prop: 'v1',
      owner: 'projA',
    });
    expect(await api.show('alice', id)).toEqual(image);
  });

  it('lets an admin create a public image for another project', async () => {
    const image = await api.create('admin', { visibility: 'public', owner: 'projB' });
    expect(image).toMatchObject({ visibility: 'public', owner: 'projB' });
    expect((await api.show('carol', image.id)).id).toBe(image.id);
  });

  it.each([
    ['status', { status: 'active' }, "Attribute 'status' is read-only."],
    ['checksum', { checksum: 'abc' }, "Attribute 'checksum' is read-only."],
    ['size', { size: 5 }, "Attribute 'size' is read-only."],
    ['os_hash_value', { os_hash_value: 'x' }, "Attribute 'os_hash_value' is read-only."],
    ['created_at', { created_at: '2020-01-01T00:00:00Z' }, "Attribute 'created_at' is read-only."],
    ['self (disallowed)', { self: '/x' }, "Attribute 'self' is read-only."],
    ['os_glance_x (reserved)', { os_glance_x: 'v' }, "Attribute 'os_glance_x' is reserved."],
    ['locations (reserved)', { locations: [] }, "Attribute 'locations' is reserved."],
    ['deleted (reserved)', { deleted: 'x' }, "Attribute 'deleted' is reserved."],
    [
      'public by a member',
      { visibility: 'public' },
      'You are not authorized to complete publicize_image action.',
    ],
    [
      'another project as owner',
      { owner: 'projB' },
      "You are not permitted to create images owned by 'projB'.",
    ],
  ])('refuses %s with 403 and creates nothing', async (_, body, message) => {
    // Prepare
    const before = await allImageIds();
    // Act
    const response = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      body: { name: 'refused', ...body },
    });
    // Assess
    await expectError(response, 403, message);
    expect(await allImageIds()).toEqual(before);
  });

  it.each([
    [
      'a bad id',
      { id: 'not-a-uuid' },
      /^Provided object does not match schema 'image': 'not-a-uuid' does not match/,
    ],
    [
      'a bad disk_format',
      { disk_format: 'bogus' },
      "Provided object does not match schema 'image': 'bogus' is not one of [None, 'ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop']",
    ],
    [
      'a bad visibility',
      { visibility: 'bogus' },
      "Provided object does not match schema 'image': 'bogus' is not one of ['community', 'public', 'private', 'shared']",
    ],
    [
      'a negative min_ram',
      { min_ram: -1 },
      "Invalid value '-1' for parameter 'min_ram': Cannot be a negative value",
    ],
    [
      'a negative min_disk',
      { min_disk: -2 },
      "Invalid value '-2' for parameter 'min_disk': Cannot be a negative value",
    ],
    [
      'a 256-character name',
      { name: 'n'.repeat(256) },
      /^Provided object does not match schema 'image': 'n+' is too long$/,
    ],
    [
      'a numeric name',
      { name: 5 },
      "Provided object does not match schema 'image': 5 is not of type 'null', 'string'",
    ],
    [
      'tags that are not a list',
      { tags: 'abc' },
      "Provided object does not match schema 'image': 'abc' is not of type 'array'",
    ],
    [
      'a non-string extra property',
      { os_distro: 5 },
      "Provided object does not match schema 'image': 5 is not of type 'string'",
    ],
    [
      'a 256-character property name',
      { ['k'.repeat(256)]: 'v' },
      'Custom property should not be greater than 255 characters.',
    ],
  ])('refuses %s with 400 and creates nothing', async (_, body, message) => {
    const before = await allImageIds();
    const response = await t.request('POST', '/v2/images', { token: t.tokens.alice, body });
    await expectError(response, 400, message);
    expect(await allImageIds()).toEqual(before);
  });

  it('accepts a 255-character name', async () => {
    const image = await api.create('alice', { name: 'n'.repeat(255) });
    expect(image.name).toHaveLength(255);
  });

  it.each([
    ['malformed JSON', '{"name": ', 'Malformed JSON in request body.'],
    [
      'a list',
      '[{"name": "x"}]',
      "Provided object does not match schema 'image': [{'name': 'x'}] is not of type 'object'",
    ],
    ['a string', '"x"', "Provided object does not match schema 'image': 'x' is not of type 'object'"],
  ])('refuses a body that is %s with 400 (Glance 500s on a list)', async (_, body, message) => {
    const before = await allImageIds();
    const response = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      headers: { 'content-type': 'application/json' },
      body,
    });
    await expectError(response, 400, message);
    expect(await allImageIds()).toEqual(before);
  });

  it('refuses a duplicate id with 409, also after the first image was deleted', async () => {
    // Prepare
    const id = randomUUID();
    const first = await api.create('alice', { id, name: 'first' });
    // Act
    const duplicate = await t.request('POST', '/v2/images', {
      token: t.tokens.bob,
      body: { id, name: 'second' },
    });
    // Assess
    await expectError(duplicate, 409, `Image ID ${id} already exists!`);
    await api.expectUnchanged(first);

    // Act: the id stays taken after a delete (Glance keeps the row as deleted).
    expect((await t.request('DELETE', `/v2/images/${id}`, { token: t.tokens.alice })).status).toBe(204);
    const again = await t.request('POST', '/v2/images', { token: t.tokens.alice, body: { id } });
    // Assess
    await expectError(again, 409, `Image ID ${id} already exists!`);
    expect((await t.request('GET', `/v2/images/${id}`, { token: t.tokens.admin })).status).toBe(404);
  });

  it('refuses 129 extra properties with 413 and accepts 128', async () => {
    // Prepare
    const props = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, 'v']));
    const before = await allImageIds();
    // Act
    const over = await t.request('POST', '/v2/images', { token: t.tokens.alice, body: props(129) });
    // Assess
    await expectError(
      over,
      413,
      'The limit has been exceeded on the number of allowed image properties. Attempted: 129, Maximum: 128',
    );
    expect(await allImageIds()).toEqual(before);
    const atQuota = await api.create('alice', props(128));
    expect(Object.keys(atQuota)).toHaveLength(128 + GLANCE_BASE_KEYS.length);
  });

  it('refuses 129 tags with 413 and accepts 128 (duplicates count once)', async () => {
    const tags = (n: number) => Array.from({ length: n }, (_, i) => `tag-${i}`);
    const before = await allImageIds();
    const over = await t.request('POST', '/v2/images', { token: t.tokens.alice, body: { tags: tags(129) } });
    await expectError(
      over,
      413,
      'The limit has been exceeded on the number of allowed image tags. Attempted: 129, Maximum: 128',
    );
    expect(await allImageIds()).toEqual(before);
    const atQuota = await api.create('alice', { tags: [...tags(128), 'tag-0'] });
    expect(atQuota.tags).toEqual(tags(128));
  });
});

describe('POST /v2/images: sizes the storage cannot hold', () => {
  it('refuses a JSON body over 1 MiB with 413 (not 500) and creates nothing', async () => {
    const before = await allImageIds();
    const response = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      body: { big: 'x'.repeat(2 * 1024 * 1024) },
    });
    await expectError(response, 413, 'The request body is larger than 1048576 bytes.');
    expect(await allImageIds()).toEqual(before);
  });

  it('refuses metadata too large for one DynamoDB item with 413 (not 500), and takes 300 KB', async () => {
    const before = await allImageIds();
    const response = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      body: { big: 'x'.repeat(450 * 1024) },
    });
    await expectError(
      response,
      413,
      /^Image metadata is too large: \d+ bytes, at most 393216 bytes are allowed\.$/,
    );
    expect(await allImageIds()).toEqual(before);
    const large = await api.create('alice', { big: 'y'.repeat(300 * 1024) });
    expect((await api.show('alice', large.id)).big).toHaveLength(300 * 1024);
  });
});

describe('paths', () => {
  it('treats a malformed percent-escape in an id as a plain (unknown) id: 404, not 500', async () => {
    for (const [method, path, message] of [
      ['GET', '/v2/images/%ZZ', 'No image found with ID %ZZ'],
      ['GET', '/v2/images/%E0%A4%A', 'No image found with ID %E0%A4%A'],
      ['DELETE', '/v2/images/%ZZ', 'Failed to find image %ZZ to delete'],
    ] as const) {
      await expectError(await t.request(method, path, { token: t.tokens.alice }), 404, message);
    }
    const image = await api.create('alice');
    await expectError(
      await t.request('DELETE', `/v2/images/${image.id}/tags/%ZZ`, { token: t.tokens.alice }),
      404,
      'The resource could not be found.',
    );
    expect(
      (await t.request('PUT', `/v2/images/${image.id}/tags/%ZZ`, { token: t.tokens.alice })).status,
    ).toBe(204);
    expect((await api.show('alice', image.id)).tags).toEqual(['%ZZ']);
  });
});

describe('error shape, request ids and authentication', () => {
  it('answers errors as JSON {message, code, title} when the client accepts JSON, HTML otherwise', async () => {
    // Act
    const json = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      headers: { accept: 'application/json' },
      body: { status: 'active' },
    });
    const html = await t.request('POST', '/v2/images', { token: t.tokens.alice, body: { status: 'active' } });
    // Assess
    expect(json.status).toBe(403);
    expect(json.headers.get('content-type')).toBe('application/json');
    expect(json.headers.get('x-openstack-request-id')).toMatch(/^req-/);
    expect(await json.json()).toEqual({
      message: "Attribute 'status' is read-only.",
      code: '403 Forbidden',
      title: 'Forbidden',
    });
    expect(html.status).toBe(403);
    expect(html.headers.get('content-type')).toBe('text/html; charset=UTF-8');
    const page = await html.text();
    expect(page).toContain('<title>403 Forbidden</title>');
    expect(page).toContain('<h1>403 Forbidden</h1>');
    expect(page).toContain('Attribute &#39;status&#39; is read-only.');
  });

  it('answers errors in plain text to clients that accept neither JSON nor HTML (Glance #251-252)', async () => {
    const id = randomUUID();
    for (const accept of ['text/plain', 'None']) {
      const response = await t.request('GET', `/v2/images/${id}`, {
        token: t.tokens.alice,
        headers: { accept },
      });
      expect(response.status).toBe(404);
      expect(response.headers.get('content-type')).toBe('text/plain; charset=UTF-8');
      expect(await response.text()).toBe(`404 Not Found\n\nNo image found with ID ${id}\n\n   `);
    }
  });

  it("keeps the caller's X-Openstack-Request-Id, and refuses one over 64 characters with 431 (Glance #253)", async () => {
    const given = 'req-11111111-2222-3333-4444-555555555555';
    const kept = await t.request('GET', '/v2/images?limit=1', {
      token: t.tokens.alice,
      headers: { 'x-openstack-request-id': given },
    });
    expect(kept.status).toBe(200);
    expect(kept.headers.get('x-openstack-request-id')).toBe(given);
    const long = await t.request('GET', '/v2/images?limit=1', {
      token: t.tokens.alice,
      headers: { 'x-openstack-request-id': `req-${'x'.repeat(61)}`, accept: 'application/json' },
    });
    expect(long.status).toBe(431);
    expect(long.headers.get('x-openstack-request-id')).toMatch(/^req-[0-9a-f-]{36}$/);
  });

  it('serves /healthcheck without a token and /v2/info/usage with one (Glance #7, #19)', async () => {
    const health = await t.request('GET', '/healthcheck');
    expect(health.status).toBe(200);
    expect(health.headers.get('content-type')).toBe('text/plain; charset=UTF-8');
    expect(await health.text()).toBe('OK');
    const usage = await t.request('GET', '/v2/info/usage', { token: t.tokens.alice });
    expect(usage.status).toBe(200);
    expect(await usage.json()).toEqual({ usage: {} });
    expect((await t.request('GET', '/v2/info/usage')).status).toBe(401);
  });

  it('answers 401 without a token and with an unknown token, with a request id', async () => {
    for (const token of [undefined, 'no-such-token']) {
      for (const [method, path] of [
        ['GET', '/v2/images'],
        ['POST', '/v2/images'],
        ['GET', `/v2/images/${randomUUID()}`],
        ['DELETE', `/v2/images/${randomUUID()}`],
      ] as const) {
        const response = await t.request(method, path, token === undefined ? {} : { token });
        await expectError(
          response,
          401,
          'This server could not verify that you are authorized to access the document you requested.',
        );
      }
    }
    const json = await t.request('GET', '/v2/images', { headers: { accept: 'application/json' } });
    expect(json.status).toBe(401);
    expect(await json.json()).toMatchObject({ code: '401 Unauthorized', title: 'Unauthorized' });
  });

  it('gives every answer its own request id: success, 204, 404, 405 and gateway errors', async () => {
    const image = await api.create('alice');
    const responses = [
      await t.request('GET', `/v2/images/${image.id}`, { token: t.tokens.alice }),
      await t.request('GET', `/v2/images/${image.id}/file`, { token: t.tokens.alice }),
      await t.request('GET', `/v2/images/${randomUUID()}`, { token: t.tokens.alice }),
      await t.request('PUT', '/v2/images', { token: t.tokens.alice, body: {} }),
      await t.request('GET', '/v2/nope', { token: t.tokens.alice }),
    ];
    expect(responses.map((r) => r.status)).toEqual([200, 204, 404, 405, 404]);
    const ids = responses.map((r) => r.headers.get('x-openstack-request-id'));
    for (const id of ids) expect(id).toMatch(/^req-[0-9a-f-]{36}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('GET /v2/images/{id}: who sees what', () => {
  it.each(['private', 'shared'] as const)(
    'hides another project’s %s image (404), as for a missing id',
    async (visibility) => {
      // Prepare
      const image = await api.create('alice', { visibility });
      // Act / Assess
      for (const persona of ['bob', 'carol'] as const) {
        const response = await t.request('GET', `/v2/images/${image.id}`, { token: t.tokens[persona] });
        await expectError(response, 404, `No image found with ID ${image.id}`);
      }
      expect((await api.show('admin', image.id)).id).toBe(image.id);
      const missing = randomUUID();
      await expectError(
        await t.request('GET', `/v2/images/${missing}`, { token: t.tokens.alice }),
        404,
        `No image found with ID ${missing}`,
      );
      await expectError(
        await t.request('GET', '/v2/images/zzz', { token: t.tokens.alice }),
        404,
        'No image found with ID zzz',
      );
    },
  );

  it('shows a public or community image to every project, but only its owner or an admin may change it', async () => {
    for (const visibility of ['public', 'community'] as const) {
      // Prepare
      const image = await api.create('admin', { visibility, owner: 'projA', name: visibility });
      // Act / Assess
      expect(await api.show('bob', image.id)).toEqual(image);
      const patch = await api.patch('bob', image.id, [{ op: 'replace', path: '/name', value: 'x' }]);
      await expectError(patch, 403, `You are not permitted to modify image ${image.id}.`);
      const remove = await t.request('DELETE', `/v2/images/${image.id}`, { token: t.tokens.bob });
      await expectError(remove, 403, `You are not permitted to modify image ${image.id}.`);
      await api.expectUnchanged(image);
    }
  });
});

describe('DELETE /v2/images/{id}', () => {
  it('deletes: 204, then GET 404, DELETE again 404, and the image leaves the list', async () => {
    // Prepare
    const image = await api.createActive('alice', Buffer.from('some bytes'));
    // Act
    const response = await t.request('DELETE', `/v2/images/${image.id}`, { token: t.tokens.alice });
    // Assess
    expect(response.status).toBe(204);
    expect(response.headers.get('x-openstack-request-id')).toMatch(/^req-/);
    expect(await response.text()).toBe('');
    await expectError(
      await t.request('GET', `/v2/images/${image.id}`, { token: t.tokens.admin }),
      404,
      `No image found with ID ${image.id}`,
    );
    await expectError(
      await t.request('GET', `/v2/images/${image.id}/file`, { token: t.tokens.alice }),
      404,
      `No image found with ID ${image.id}`,
    );
    await expectError(
      await t.request('DELETE', `/v2/images/${image.id}`, { token: t.tokens.alice }),
      404,
      `Failed to find image ${image.id} to delete`,
    );
    expect(await allImageIds()).not.toContain(image.id);
    // The data went with it.
    expect(await imageObjects(`images/${image.id}/`)).toEqual([]);
  });

  it('refuses to delete a protected image with 403, even for an admin', async () => {
    // Prepare
    const image = await api.create('alice', { protected: true });
    // Act / Assess
    for (const persona of ['alice', 'admin'] as const) {
      const response = await t.request('DELETE', `/v2/images/${image.id}`, { token: t.tokens[persona] });
      await expectError(response, 403, `Image ${image.id} is protected and cannot be deleted.`);
    }
    await api.expectUnchanged(image);
    // Unprotected, it goes.
    const unprotect = await api.patch('alice', image.id, [
      { op: 'replace', path: '/protected', value: false },
    ]);
    expect(unprotect.status).toBe(200);
    expect((await t.request('DELETE', `/v2/images/${image.id}`, { token: t.tokens.alice })).status).toBe(204);
  });

  it('answers 404 for another project’s private image and for an unknown id', async () => {
    const image = await api.create('alice', { visibility: 'private' });
    await expectError(
      await t.request('DELETE', `/v2/images/${image.id}`, { token: t.tokens.bob }),
      404,
      `No image found with ID ${image.id}`,
    );
    await api.expectUnchanged(image);
    const missing = randomUUID();
    await expectError(
      await t.request('DELETE', `/v2/images/${missing}`, { token: t.tokens.admin }),
      404,
      `Failed to find image ${missing} to delete`,
    );
  });
});

describe('POST /v2/images/{id}/actions/{deactivate,reactivate}', () => {
  const action = (persona: 'alice' | 'bob' | 'admin', id: string, name: string) =>
    t.request('POST', `/v2/images/${id}/actions/${name}`, { token: t.tokens[persona] });

  it('refuses to deactivate or reactivate a queued image with 403', async () => {
    const image = await api.create('alice');
    await expectError(
      await action('alice', image.id, 'deactivate'),
      403,
      "Not allowed to deactivate image in status 'queued'",
    );
    await expectError(
      await action('alice', image.id, 'reactivate'),
      403,
      "Not allowed to reactivate image in status 'queued'",
    );
    await api.expectUnchanged(image);
  });

  it('deactivates and reactivates idempotently (204 each time) and gates the download', async () => {
    // Prepare
    const bytes = Buffer.from('deactivated bytes');
    const image = await api.createActive('alice', bytes);

    // Act: deactivate twice
    for (let i = 0; i < 2; i++) {
      const response = await action('alice', image.id, 'deactivate');
      expect(response.status, await peek(response)).toBe(204);
      expect(response.headers.get('x-openstack-request-id')).toMatch(/^req-/);
    }
    // Assess
    const deactivated = await api.show('alice', image.id);
    expect(deactivated.status).toBe('deactivated');
    // The owner (not admin) may not download; an admin may.
    await expectError(
      await api.download('alice', image.id),
      403,
      'The requested image has been deactivated. Image data download is forbidden.',
    );
    const adminDownload = await api.download('admin', image.id);
    expect(adminDownload.status).toBe(200);
    expect(Buffer.from(await adminDownload.arrayBuffer()).equals(bytes)).toBe(true);
    await api.expectUnchanged(deactivated);

    // Act: reactivate twice
    for (let i = 0; i < 2; i++) expect((await action('alice', image.id, 'reactivate')).status).toBe(204);
    // Assess
    expect((await api.show('alice', image.id)).status).toBe('active');
    const ownerDownload = await api.download('alice', image.id);
    expect(ownerDownload.status).toBe(200);
    expect(Buffer.from(await ownerDownload.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('hides another project’s image (404) and answers an unknown action with 404', async () => {
    const image = await api.createActive('alice', Buffer.from('x'));
    await expectError(await action('bob', image.id, 'deactivate'), 404, `No image found with ID ${image.id}`);
    await expectError(await action('alice', image.id, 'bogus'), 404, 'The resource could not be found.');
    await api.expectUnchanged(image);
  });
});
