/**
 * ImageCache against a tiny node:http image server (through the agent's real ServiceClient download):
 * verification, one download under concurrency, corruption re-fetch, mismatch never kept, LRU eviction.
 * Images are 'raw' (any bytes are a valid raw image), inspected by the real qemu-img.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageChecksumError, ImageDownloadError, ImageFormatError } from '../../../agent/src/errors.ts';
import { run } from '../../../agent/src/exec.ts';
import { ImageCache, type ImageRef } from '../../../agent/src/image-cache.ts';
import { ServiceClient } from '../../../agent/src/service-client.ts';

const sha512 = (bytes: Buffer) => createHash('sha512').update(bytes).digest('hex');

interface Served {
  bytes: Buffer;
  /** Serve different bytes than the ones hashed (a corrupted or tampered object). */
  override?: Buffer;
  delayMs?: number;
  contentLength?: number;
}

describe('ImageCache', { timeout: 30_000 }, () => {
  let server: Server;
  let baseUrl: string;
  const served = new Map<string, Served>();
  const requests = new Map<string, number>();
  let dir: string;
  let inUse: Set<string>;

  const ref = (id: string, extra: Partial<ImageRef> = {}): ImageRef => {
    const image = served.get(id);
    if (!image) throw new Error(`no served image ${id}`);
    return {
      id,
      disk_format: 'raw',
      size: image.bytes.length,
      os_hash_algo: 'sha512',
      os_hash_value: sha512(image.bytes),
      ...extra,
    };
  };
  const cache = (options: { maxBytes?: number; verify?: 'stamp' | 'always' } = {}) =>
    new ImageCache({
      dir,
      maxBytes: options.maxBytes ?? 1024 * 1024 * 1024,
      source: new ServiceClient({ baseUrl, hostId: 'host-a', token: 'tok' }),
      imagesInUse: async () => inUse,
      verify: options.verify,
    });

  beforeAll(async () => {
    server = createServer((req, res) => {
      const id = /^\/v2\/images\/([^/]+)\/file$/.exec(req.url ?? '')?.[1];
      const image = id ? served.get(id) : undefined;
      if (!id || !image || req.headers['x-auth-token'] !== 'tok') {
        res.statusCode = 404;
        res.end();
        return;
      }
      requests.set(id, (requests.get(id) ?? 0) + 1);
      const body = image.override ?? image.bytes;
      res.writeHead(200, { 'content-length': image.contentLength ?? body.length });
      // Two halves with a pause between: concurrent callers really overlap with one download in flight.
      res.write(body.subarray(0, body.length >> 1));
      setTimeout(() => res.end(body.subarray(body.length >> 1)), image.delayMs ?? 0);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-cache-'));
    served.clear();
    requests.clear();
    inUse = new Set();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('downloads, verifies and stores an image, then serves it from the cache', async () => {
    // Prepare
    // A multiple of 512: qemu reports a raw image's virtual size in whole sectors.
    served.set('img-a', { bytes: randomBytes(300 * 1024) });
    const c = cache();
    await c.init();

    // Act
    const first = await c.ensure(ref('img-a'));
    const second = await c.ensure(ref('img-a'));

    // Assess
    expect(first).toEqual(second);
    expect(first).toMatchObject({ id: 'img-a', format: 'raw', size: 307_200, virtualSize: 307_200 });
    expect(await readFile(first.path)).toEqual(served.get('img-a')?.bytes);
    expect(((await stat(first.path)).mode & 0o777).toString(8)).toBe('644');
    expect(requests.get('img-a')).toBe(1);
  });

  it('shares one download between concurrent requests for the same image', async () => {
    // Prepare
    served.set('img-a', { bytes: randomBytes(200_000), delayMs: 300 });
    const c = cache();
    await c.init();

    // Act
    const results = await Promise.all(Array.from({ length: 5 }, () => c.ensure(ref('img-a'))));

    // Assess
    expect(requests.get('img-a')).toBe(1);
    expect(new Set(results.map((r) => r.path)).size).toBe(1);
  });

  it('deletes a download whose sha512 does not match and never keeps it', async () => {
    // Prepare
    const good = randomBytes(100_000);
    const bad = Buffer.from(good);
    bad[500] = (bad[500] ?? 0) ^ 0xff;
    served.set('img-bad', { bytes: good, override: bad });
    const c = cache();
    await c.init();

    // Act
    const first = await c.ensure(ref('img-bad')).catch((e: unknown) => e);
    const second = await c.ensure(ref('img-bad')).catch((e: unknown) => e);

    // Assess
    expect(first).toBeInstanceOf(ImageChecksumError);
    expect(second).toBeInstanceOf(ImageChecksumError);
    expect(requests.get('img-bad')).toBe(2);
    expect(await readdir(dir)).toEqual([]);
  });

  it('re-hashes a cached file whose mtime changed, and fetches it again when corrupted', async () => {
    // Prepare
    const bytes = randomBytes(100_000);
    served.set('img-a', { bytes });
    const c = cache();
    await c.init();
    const { path } = await c.ensure(ref('img-a'));
    await sleep(20);
    const corrupted = Buffer.from(bytes);
    corrupted[1234] = (corrupted[1234] ?? 0) ^ 0x01;
    await writeFile(path, corrupted);

    // Act
    const again = await c.ensure(ref('img-a'));

    // Assess
    expect(requests.get('img-a')).toBe(2);
    expect(await readFile(again.path)).toEqual(bytes);
  });

  it('keeps a cached file whose mtime changed but whose bytes still match (no download)', async () => {
    // Prepare
    served.set('img-a', { bytes: randomBytes(50_000) });
    const c = cache();
    await c.init();
    const { path } = await c.ensure(ref('img-a'));
    await utimes(path, new Date(), new Date(Date.now() + 5_000));

    // Act
    await c.ensure(ref('img-a'));

    // Assess
    expect(requests.get('img-a')).toBe(1);
  });

  it("with verify 'always' catches corruption that kept size and mtime", async () => {
    // Prepare
    const bytes = randomBytes(80_000);
    served.set('img-a', { bytes });
    const c = cache({ verify: 'always' });
    await c.init();
    const { path } = await c.ensure(ref('img-a'));
    const before = await stat(path);
    const corrupted = Buffer.from(bytes);
    corrupted[10] = (corrupted[10] ?? 0) ^ 0x80;
    await writeFile(path, corrupted);
    await utimes(path, before.atime, before.mtime);

    // Act
    const again = await c.ensure(ref('img-a'));

    // Assess
    expect(requests.get('img-a')).toBe(2);
    expect(await readFile(again.path)).toEqual(bytes);
  });

  it('fetches again when the service publishes a new hash for the id', async () => {
    // Prepare
    served.set('img-a', { bytes: randomBytes(10_000) });
    const c = cache();
    await c.init();
    await c.ensure(ref('img-a'));
    served.set('img-a', { bytes: randomBytes(10_000) });

    // Act
    const again = await c.ensure(ref('img-a'));

    // Assess
    expect(requests.get('img-a')).toBe(2);
    expect(again.sha512).toBe(sha512(served.get('img-a')?.bytes ?? Buffer.alloc(0)));
  });

  it('evicts the least recently used image that no instance uses when over the cap', async () => {
    // Prepare: room for two 100 kB images
    for (const id of ['img-a', 'img-b', 'img-c']) served.set(id, { bytes: randomBytes(100_000) });
    const c = cache({ maxBytes: 250_000 });
    await c.init();
    await c.ensure(ref('img-a'));
    await sleep(5);
    await c.ensure(ref('img-b'));
    await sleep(5);
    await c.ensure(ref('img-a')); // a is now the most recently used

    // Act
    await c.ensure(ref('img-c'));

    // Assess
    expect((await c.entries()).map((e) => e.id).sort()).toEqual(['img-a', 'img-c']);
  });

  it('never evicts an image an instance uses, even if it is the least recently used', async () => {
    // Prepare
    for (const id of ['img-a', 'img-b', 'img-c']) served.set(id, { bytes: randomBytes(100_000) });
    const c = cache({ maxBytes: 250_000 });
    await c.init();
    await c.ensure(ref('img-a'));
    await sleep(5);
    await c.ensure(ref('img-b'));
    inUse = new Set(['img-a']);

    // Act
    await c.ensure(ref('img-c'));

    // Assess
    expect((await c.entries()).map((e) => e.id).sort()).toEqual(['img-a', 'img-c']);
  });

  it('fails a download whose size differs from the published size, keeping nothing', async () => {
    // Prepare
    served.set('img-a', { bytes: randomBytes(10_000) });
    const c = cache();
    await c.init();

    // Act
    const error = await c.ensure(ref('img-a', { size: 9_999 })).catch((e: unknown) => e);

    // Assess
    expect(error).toBeInstanceOf(ImageDownloadError);
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses an image with a backing file (it could name a host file as the guest disk)', async () => {
    // Prepare
    await writeFile(join(dir, 'host-secret'), 'secret');
    const evil = join(dir, 'evil.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', join(dir, 'host-secret'), evil]);
    served.set('img-evil', { bytes: await readFile(evil) });
    await rm(evil);
    await rm(join(dir, 'host-secret'));
    const c = cache();
    await c.init();

    // Act
    const error = await c.ensure(ref('img-evil', { disk_format: 'qcow2' })).catch((e: unknown) => e);

    // Assess
    expect(error).toBeInstanceOf(ImageFormatError);
    expect((error as Error).message).toContain('backing file');
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses formats that cannot back a disk before downloading anything', async () => {
    // Prepare
    served.set('img-iso', { bytes: randomBytes(1_000) });
    const c = cache();
    await c.init();

    // Act
    const error = await c.ensure(ref('img-iso', { disk_format: 'iso' })).catch((e: unknown) => e);

    // Assess
    expect(error).toBeInstanceOf(ImageFormatError);
    expect(requests.get('img-iso')).toBeUndefined();
  });

  it('drops partial downloads left behind by a killed agent at init', async () => {
    // Prepare
    await writeFile(join(dir, '.part-img-a-123-0'), 'half');

    // Act
    await cache().init();

    // Assess
    expect(await readdir(dir)).toEqual([]);
  });
});
