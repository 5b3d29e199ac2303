/**
 * Glance's interoperable import against the running service: glance-direct (stage + import),
 * web-download from a loopback server (allow-listed) and its SSRF refusals, the import lock, and
 * the legacy tasks-API import. Glance 25's answers are quoted by transcript number.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SafeWebFetcher } from '#adapters/web-fetch';
import { parseAllowList } from '#core/transfer/url-filter';
import { setServiceEnvironment } from '#platform/config';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { errorMessage, expectError, ImagesApi, peek } from '../helpers/images.ts';
import {
  imageTasks,
  type LoopbackServer,
  listKeys,
  loopbackServer,
  md5,
  patternBytes,
  qcow2WithBackingFile,
  sha512,
  showImage,
  waitForImport,
  waitForTask,
} from '../helpers/imports.ts';

const MiB = 1024 * 1024;
const blob = patternBytes(3 * MiB, 29);

let t: TestBackend;
let api: ImagesApi;
let server: LoopbackServer;
let scratch: string;
let badQcow2: Buffer;
let releaseSlow: () => void = () => {};
let slowStarted: Promise<void>;
let markSlowStarted: () => void = () => {};

function allow(list: string): void {
  setServiceEnvironment({ HANGAR_WEB_DOWNLOAD_ALLOW: list });
}

beforeAll(async () => {
  t = await startTestBackend({ env: { HANGAR_WEB_DOWNLOAD_ALLOW: '' } });
  api = new ImagesApi(t);
  scratch = mkdtempSync(join(tmpdir(), 'hangar-interop-'));
  badQcow2 = readFileSync(await qcow2WithBackingFile(scratch));
  const release = new Promise<void>((resolve) => {
    releaseSlow = resolve;
  });
  slowStarted = new Promise<void>((resolve) => {
    markSlowStarted = resolve;
  });
  server = await loopbackServer((req, res) => {
    const port = server.port;
    switch (req.url) {
      case '/blob.img':
        res.writeHead(200, { 'content-length': blob.length }).end(blob);
        return;
      case '/bad.qcow2':
        res.writeHead(200).end(badQcow2);
        return;
      case '/slow.img':
        // Half the body, then nothing until the test lets it finish.
        res.writeHead(200, { 'content-length': blob.length });
        res.write(blob.subarray(0, MiB));
        markSlowStarted();
        void release.then(() => res.end(blob.subarray(MiB)));
        return;
      case '/relative-redirect':
        res.writeHead(302, { location: '/blob.img' }).end();
        return;
      case '/redirect-loopback':
        res.writeHead(302, { location: `http://127.0.0.2:${port}/blob.img` }).end();
        return;
      case '/redirect-encoded':
        res.writeHead(301, { location: `http://0x7f000002:${port}/blob.img` }).end();
        return;
      case '/redirect-metadata':
        res.writeHead(307, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
        return;
      case '/redirect-loop':
        res.writeHead(302, { location: '/redirect-loop' }).end();
        return;
      default:
        res.writeHead(404).end('not here');
    }
  });
});

afterAll(async () => {
  releaseSlow();
  await server?.close();
  await t?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function importRequest(id: string, body: unknown, persona: 'alice' | 'bob' | 'admin' = 'alice') {
  return t.request('POST', `/v2/images/${id}/import`, { token: t.tokens[persona], body: body as object });
}

function stage(id: string, bytes: Uint8Array, headers: Record<string, string> = {}) {
  return t.request('PUT', `/v2/images/${id}/stage`, {
    token: t.tokens.alice,
    headers: { 'content-type': 'application/octet-stream', ...headers },
    body: bytes,
  });
}

async function queued(name: string) {
  return api.create('alice', { name, disk_format: 'raw', container_format: 'bare' });
}

describe('GET /v2/info/import (#206)', () => {
  it('lists the import methods', async () => {
    const response = await t.request('GET', '/v2/info/import', { token: t.tokens.alice });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      'import-methods': {
        description: 'Import methods available.',
        type: 'array',
        value: ['glance-direct', 'web-download'],
      },
    });
  });
});

describe('glance-direct', () => {
  it('stages, imports and activates as Glance does (#207-#219)', async () => {
    const bytes = patternBytes(MiB + 7, 31);
    const image = await queued('gd');
    await expectError(
      await importRequest(image.id, { method: { name: 'glance-direct' } }),
      409,
      "Image needs to be staged before 'glance-direct' method can be used",
    );

    const staged = await stage(image.id, bytes);
    expect(staged.status, await peek(staged)).toBe(204);
    expect(await showImage(t, image.id)).toMatchObject({
      status: 'uploading',
      size: bytes.length,
      checksum: null,
    });
    await expectError(
      await stage(image.id, bytes),
      409,
      'Image status transition from uploading to uploading is not allowed',
    );
    expect((await api.download('alice', image.id)).status).toBe(204);
    await expectError(
      await importRequest(image.id, { method: { name: 'bogus' } }),
      400,
      "Unknown import method name 'bogus'.",
    );
    await expectError(await importRequest(image.id, {}), 400, "Import request requires a 'method' field.");
    await expectError(await importRequest(image.id, { method: { name: 'glance-direct' } }, 'bob'), 404);

    await expectError(
      await importRequest(image.id, { method: { name: 'glance-direct' }, all_stores_must_succeed: false }),
      400,
      'All_stores_must_succeed can only be set with enabled_backends.',
    );

    // Single-store, as Glance without enabled_backends: `stores` is ignored.
    const accepted = await importRequest(image.id, { method: { name: 'glance-direct' }, stores: ['any'] });
    expect(accepted.status, await peek(accepted)).toBe(202);
    const done = await waitForImport(t, image.id);

    expect(done).toMatchObject({
      status: 'active',
      size: bytes.length,
      virtual_size: bytes.length,
      checksum: md5(bytes),
      os_hash_value: sha512(bytes),
      os_glance_failed_import: '',
      os_glance_importing_to_stores: '',
    });
    expect(await listKeys('staging', image.id)).toEqual([]);
    const [task] = await imageTasks(t, image.id, 'alice');
    expect(task).toMatchObject({
      type: 'api_image_import',
      status: 'success',
      owner: 'projA',
      user_id: 'alice',
      input: { image_id: image.id, import_req: { method: { name: 'glance-direct' } }, backend: [null] },
      result: { image_id: image.id },
      message: 'Copied 1 MiB',
    });
    await expectError(
      await importRequest(image.id, { method: { name: 'glance-direct' } }),
      409,
      'Image with status active cannot be target for import',
    );
  });

  it('refuses a staged body that is not octet-stream, or larger than declared', async () => {
    const image = await queued('gd-bad');
    const wrongType = await stage(image.id, blob, { 'content-type': 'application/json' });
    expect(wrongType.status).toBe(415);
    const mismatch = await stage(image.id, patternBytes(100), { 'x-openstack-image-size': '10' });
    expect(mismatch.status).toBe(400);
    expect((await showImage(t, image.id)).status).toBe('queued');
    expect(await listKeys('staging', image.id)).toEqual([]);
  });

  it('puts a staged image that fails inspection back to queued, with the reason, and no data anywhere', async () => {
    const image = await api.create('alice', { disk_format: 'qcow2', container_format: 'bare' });
    expect((await stage(image.id, badQcow2)).status).toBe(204);
    expect((await importRequest(image.id, { method: { name: 'glance-direct' } })).status).toBe(202);
    const done = await waitForImport(t, image.id);
    expect(done).toMatchObject({
      status: 'queued',
      size: null,
      os_glance_failed_import: 'qcow2 image has a backing file',
    });
    expect(await listKeys('staging', image.id)).toEqual([]);
    expect(await listKeys('images', `images/${image.id}`)).toEqual([]);
  });
});

describe('web-download', () => {
  it('downloads from an allow-listed loopback server', async () => {
    allow('127.0.0.1');
    const image = await queued('wd');
    const accepted = await importRequest(image.id, {
      method: { name: 'web-download', uri: `${server.url}/blob.img` },
    });
    expect(accepted.status, await peek(accepted)).toBe(202);
    const done = await waitForImport(t, image.id);
    expect(done).toMatchObject({
      status: 'active',
      size: blob.length,
      checksum: md5(blob),
      os_hash_value: sha512(blob),
    });
    const [task] = await imageTasks(t, image.id);
    expect(task).toMatchObject({
      status: 'success',
      input: { import_req: { method: { name: 'web-download', uri: `${server.url}/blob.img` } } },
    });
  });

  it('follows a redirect that stays on allowed addresses', async () => {
    allow('127.0.0.1');
    const image = await queued('wd-redirect');
    expect(
      (
        await importRequest(image.id, {
          method: { name: 'web-download', uri: `${server.url}/relative-redirect` },
        })
      ).status,
    ).toBe(202);
    expect(await waitForImport(t, image.id)).toMatchObject({ status: 'active', checksum: md5(blob) });
  });

  it.each([
    ['loopback', (port: number) => `http://127.0.0.1:${port}/blob.img`],
    ['localhost (resolves to loopback)', (port: number) => `http://localhost:${port}/blob.img`],
    ['decimal 2130706433', (port: number) => `http://2130706433:${port}/blob.img`],
    ['octal 0177.0.0.1', (port: number) => `http://0177.0.0.1:${port}/blob.img`],
    ['hex 0x7f.1', (port: number) => `http://0x7f.1:${port}/blob.img`],
    ['short 127.1', (port: number) => `http://127.1:${port}/blob.img`],
    ['IPv6 loopback', (port: number) => `http://[::1]:${port}/blob.img`],
    ['IPv4-mapped IPv6 loopback', (port: number) => `http://[::ffff:127.0.0.1]:${port}/blob.img`],
    ['the unspecified address', (port: number) => `http://0.0.0.0:${port}/blob.img`],
    ['cloud metadata', () => 'http://169.254.169.254/latest/meta-data/'],
    ['IPv6 cloud metadata', () => 'http://[fd00:ec2::254]/latest/meta-data/'],
    ['a private network', () => 'http://10.1.2.3/x.img'],
    ['a link-local address', () => 'http://169.254.1.1/x.img'],
    ['an ftp URL (#222)', () => 'ftp://example.com/x'],
    ['a file URL', () => 'file:///etc/passwd'],
  ])('refuses %s when it is not allow-listed', async (_name, uri) => {
    allow('');
    const image = await queued('wd-refused');
    const target = uri(server.port);
    const before = server.requests.length;
    await expectError(
      await importRequest(image.id, { method: { name: 'web-download', uri: target } }),
      400,
      `URI for web-download does not pass filtering: ${target}`,
    );
    // Refused before any connection, and the image untouched.
    expect(server.requests.length).toBe(before);
    const after = await showImage(t, image.id);
    expect(after.status).toBe('queued');
    expect(after).not.toHaveProperty('os_glance_import_task');
    expect(await imageTasks(t, image.id)).toEqual([]);
  });

  it('refuses a missing URI as Glance does (#221)', async () => {
    const image = await queued('wd-none');
    await expectError(
      await importRequest(image.id, { method: { name: 'web-download' } }),
      400,
      'URI for web-download does not pass filtering: None',
    );
  });

  it('allows only what is listed: 127.0.0.1 does not open the rest of 127/8', async () => {
    allow('127.0.0.1');
    const image = await queued('wd-other-loopback');
    const target = `http://127.0.0.2:${server.port}/blob.img`;
    await expectError(
      await importRequest(image.id, { method: { name: 'web-download', uri: target } }),
      400,
      `URI for web-download does not pass filtering: ${target}`,
    );
  });

  it.each([
    ['to another loopback address', '/redirect-loopback', '127.0.0.2, a loopback address'],
    ['to an encoded loopback address', '/redirect-encoded', '127.0.0.2, a loopback address'],
    ['to the metadata service', '/redirect-metadata', '169.254.169.254, a cloud metadata address'],
    ['in a loop', '/redirect-loop', 'more than 5 redirects'],
  ])('refuses a redirect %s, failing the import with the reason', async (_name, path, reason) => {
    allow('127.0.0.1');
    const image = await queued('wd-redirect-refused');
    expect(
      (await importRequest(image.id, { method: { name: 'web-download', uri: `${server.url}${path}` } }))
        .status,
    ).toBe(202);
    const done = await waitForImport(t, image.id);
    expect(done.status).toBe('queued');
    expect(done.os_glance_failed_import).toContain(reason);
    const [task] = await imageTasks(t, image.id);
    expect(task).toMatchObject({ status: 'failure' });
    expect(task?.message).toContain(reason);
    expect(await listKeys('images', `images/${image.id}`)).toEqual([]);
  });

  it('fails the import when the server answers an error (#224-#228)', async () => {
    allow('127.0.0.1');
    const image = await queued('wd-404');
    expect(
      (await importRequest(image.id, { method: { name: 'web-download', uri: `${server.url}/missing.img` } }))
        .status,
    ).toBe(202);
    const done = await waitForImport(t, image.id);
    expect(done).toMatchObject({
      status: 'queued',
      os_glance_failed_import: `HTTP 404 from ${server.url}/missing.img`,
    });
    expect((await imageTasks(t, image.id))[0]).toMatchObject({ status: 'failure', result: null });
  });

  it('inspects downloaded content like any other', async () => {
    allow('127.0.0.1');
    const image = await api.create('alice', { disk_format: 'qcow2', container_format: 'bare' });
    expect(
      (await importRequest(image.id, { method: { name: 'web-download', uri: `${server.url}/bad.qcow2` } }))
        .status,
    ).toBe(202);
    const done = await waitForImport(t, image.id);
    expect(done).toMatchObject({
      status: 'queued',
      os_glance_failed_import: 'qcow2 image has a backing file',
    });
    expect(await listKeys('images', `images/${image.id}`)).toEqual([]);
  });
});

describe('the web-download client', () => {
  it('connects to the address it vetted, whatever DNS answers next (rebinding)', async () => {
    // Prepare: a name only this resolver knows, loopback first, then another address.
    let lookups = 0;
    const fetcher = new SafeWebFetcher(parseAllowList(['127.0.0.1']), async () => {
      lookups++;
      return [{ address: lookups === 1 ? '127.0.0.1' : '127.0.0.2', family: 4 }];
    });
    // Act
    const fetched = await fetcher.open(`http://rebind.test:${server.port}/blob.img`);
    const body = Buffer.concat((await fetched.body.toArray()) as Buffer[]);
    // Assess: one lookup, and the bytes came from the vetted address.
    expect(lookups).toBe(1);
    expect(md5(body)).toBe(md5(blob));
  });

  it('refuses a name when any one of its addresses is not allowed', async () => {
    const fetcher = new SafeWebFetcher([], async () => [
      { address: '93.184.216.34', family: 4 },
      { address: '127.0.0.1', family: 4 },
    ]);
    await expect(fetcher.vet('http://mixed.test/x')).rejects.toThrow(
      'mixed.test resolves to 127.0.0.1, a loopback address',
    );
  });
});

describe('import lock', () => {
  it('refuses a second import (409) while one holds os_glance_import_task', async () => {
    allow('127.0.0.1');
    const image = await queued('locked');
    expect(
      (await importRequest(image.id, { method: { name: 'web-download', uri: `${server.url}/slow.img` } }))
        .status,
    ).toBe(202);
    await slowStarted;
    const held = await showImage(t, image.id);
    expect(held.status).toBe('importing');
    const lock = held.os_glance_import_task as string;
    expect(lock).toMatch(/^[0-9a-f-]{36}$/);

    const second = await importRequest(image.id, {
      method: { name: 'web-download', uri: `${server.url}/blob.img` },
    });
    expect(second.status).toBe(409);
    expect(await errorMessage(second)).toMatch(
      /prior operation is still in progress|cannot be target for import/,
    );
    const upload = await t.request('POST', `/v2/images/${image.id}/multipart-upload`, {
      token: t.tokens.alice,
      body: { size: 10 },
    });
    expect(upload.status).toBe(409);
    const patch = await api.patch('alice', image.id, [
      { op: 'add', path: '/os_glance_import_task', value: 'x' },
    ]);
    expect(patch.status).toBe(403);

    releaseSlow();
    const done = await waitForImport(t, image.id);
    expect(done).toMatchObject({ status: 'active', checksum: md5(blob) });
    expect(await imageTasks(t, image.id)).toHaveLength(1);
  });
});

describe('legacy tasks-API import (#239-#243)', () => {
  it('creates the image and imports it from the URL', async () => {
    allow('127.0.0.1');
    const created = await t.request('POST', '/v2/tasks', {
      token: t.tokens.admin,
      body: {
        type: 'import',
        input: {
          import_from: `${server.url}/blob.img`,
          import_from_format: 'raw',
          image_properties: { name: 'task-img', disk_format: 'raw', container_format: 'bare' },
        },
      },
    });
    expect(created.status, await peek(created)).toBe(201);
    const task = (await created.json()) as { id: string; status: string; type: string };
    expect(task).toMatchObject({ type: 'import', status: 'pending' });
    expect(created.headers.get('location')).toBe(`${t.url}/v2/tasks/${task.id}`);
    const done = await waitForTask(t, task.id);
    expect(done.status, done.message).toBe('success');
    const imageId = (done.result as { image_id: string }).image_id;
    expect(await showImage(t, imageId)).toMatchObject({
      name: 'task-img',
      status: 'active',
      checksum: md5(blob),
    });
  });

  it('filters its URI too (#240)', async () => {
    allow('');
    const uri = `${server.url}/blob.img`;
    await expectError(
      await t.request('POST', '/v2/tasks', {
        token: t.tokens.admin,
        body: { type: 'import', input: { import_from: uri, image_properties: { name: 'x' } } },
      }),
      400,
      `URI for legacy import task does not pass filtering: ${uri}`,
    );
  });
});
