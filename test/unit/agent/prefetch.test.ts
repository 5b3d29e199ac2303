/**
 * The prefetch pass against a tiny node:http service (references, Glance image documents and image bytes),
 * through the agent's real ServiceClient and a real ImageCache: resolution of name:tag and ids, skips that
 * are logged and not fatal, one download per image, and pinning against eviction.
 * Images are 'raw' (any bytes are a valid raw image), inspected by the real qemu-img.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../../../agent/src/image-cache.ts';
import { formatImageTarget, parseImageTarget } from '../../../agent/src/image-reference.ts';
import { createLogger, type Logger } from '../../../agent/src/log.ts';
import { Prefetcher, type PrefetchOutcome } from '../../../agent/src/prefetch.ts';
import { ServiceClient } from '../../../agent/src/service-client.ts';

const TOKEN = 'host-token';
const sha512 = (bytes: Buffer) => createHash('sha512').update(bytes).digest('hex');

const FEDORA_40 = '0b7e3c52-1f0e-4a55-9d0c-0b6a3c1f2e41';
const FEDORA_41 = '0b7e3c52-1f0e-4a55-9d0c-0b6a3c1f2e42';
const ALPINE = '0b7e3c52-1f0e-4a55-9d0c-0b6a3c1f2e43';
const BY_ID = '0b7e3c52-1f0e-4a55-9d0c-0b6a3c1f2e44';
const QUEUED = '0b7e3c52-1f0e-4a55-9d0c-0b6a3c1f2e45';
const DEACTIVATED = '0b7e3c52-1f0e-4a55-9d0c-0b6a3c1f2e46';
const OTHER_1 = '0b7e3c52-1f0e-4a55-9d0c-0b6a3c1f2e47';
const OTHER_2 = '0b7e3c52-1f0e-4a55-9d0c-0b6a3c1f2e48';
const MISSING = '0b7e3c52-1f0e-4a55-9d0c-0b6a3c1f2e49';

interface FakeImage {
  id: string;
  status: string;
  bytes: Buffer;
  /** Glance renders unset hashes as null (a queued image has none yet). */
  hashed: boolean;
}

describe('image prefetch', { timeout: 30_000 }, () => {
  let server: Server;
  let baseUrl: string;
  const images = new Map<string, FakeImage>();
  /** `name:tag` in the public namespace -> image id. */
  const references = new Map<string, string>();
  const fileRequests = new Map<string, number>();
  const apiRequests: string[] = [];
  let failApi = false;
  let dir: string;
  let logs: Array<Record<string, unknown>>;
  let log: Logger;

  const image = (id: string, options: { status?: string; size?: number; hashed?: boolean } = {}) => {
    images.set(id, {
      id,
      status: options.status ?? 'active',
      bytes: randomBytes(options.size ?? 100_000),
      hashed: options.hashed ?? true,
    });
  };
  /** The Glance image entity, as functions/core/images/view.ts renders it. */
  const render = (img: FakeImage) => ({
    name: `image ${img.id}`,
    disk_format: 'raw',
    container_format: 'bare',
    visibility: 'public',
    size: img.hashed ? img.bytes.length : null,
    virtual_size: null,
    status: img.status,
    checksum: img.hashed ? createHash('md5').update(img.bytes).digest('hex') : null,
    protected: false,
    min_ram: 0,
    min_disk: 0,
    owner: 'admin',
    os_hidden: false,
    os_hash_algo: img.hashed ? 'sha512' : null,
    os_hash_value: img.hashed ? sha512(img.bytes) : null,
    id: img.id,
    created_at: '2026-01-01T00:00:00Z',
    updated_at: '2026-01-01T00:00:00Z',
    tags: [],
    self: `/v2/images/${img.id}`,
    file: `/v2/images/${img.id}/file`,
    schema: '/v2/schemas/image',
  });
  const cacheFor = (maxBytes = 1024 * 1024 * 1024, inUse: () => Set<string> = () => new Set()) =>
    new ImageCache({
      dir,
      maxBytes,
      source: new ServiceClient({ baseUrl, hostId: 'host-a', token: TOKEN }),
      imagesInUse: async () => inUse(),
    });
  const prefetcher = (entries: string[], cache: ImageCache) =>
    new Prefetcher({
      entries,
      resolver: new ServiceClient({ baseUrl, hostId: 'host-a', token: TOKEN }),
      cache,
      log,
      intervalMs: 50,
    });
  const byEntry = (outcomes: PrefetchOutcome[]) =>
    Object.fromEntries(outcomes.map((o) => [o.entry, o.status]));
  const cachedIds = async (cache: ImageCache) => (await cache.entries()).map((e) => e.id).sort();

  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = req.url ?? '';
      const json = (status: number, body?: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(body === undefined ? undefined : JSON.stringify(body));
      };
      if (req.headers['x-auth-token'] !== TOKEN) return json(401, { error: 'unauthorized' });
      const file = /^\/v2\/images\/([^/]+)\/file$/.exec(url)?.[1];
      if (file) {
        const img = images.get(file);
        if (!img) return json(404);
        fileRequests.set(file, (fileRequests.get(file) ?? 0) + 1);
        res.writeHead(200, { 'content-length': img.bytes.length });
        // Two halves with a pause between: a concurrent build really overlaps with the prefetch download.
        res.write(img.bytes.subarray(0, img.bytes.length >> 1));
        setTimeout(() => res.end(img.bytes.subarray(img.bytes.length >> 1)), 50);
        return;
      }
      apiRequests.push(url);
      if (failApi) return json(503, { error: 'unavailable' });
      const id = /^\/v2\/images\/([^/]+)$/.exec(url)?.[1];
      if (id) {
        const img = images.get(id);
        return img ? json(200, render(img)) : json(404);
      }
      const text = /^\/v1\/references\/([^/]+)$/.exec(url)?.[1];
      if (text) {
        const target = references.get(text);
        const img = target ? images.get(target) : undefined;
        if (!target || !img) return json(404);
        const [name, tag] = text.split(':');
        // functions/api/references.ts: render(reference) plus the full image.
        return json(200, {
          reference: text,
          namespace: 'public',
          name,
          tag,
          image_id: target,
          created_at: '2026-01-01T00:00:00Z',
          updated_at: '2026-01-01T00:00:00Z',
          updated_by: 'admin@admin',
          version: 1,
          self: `/v1/references/${text}`,
          image: render(img),
        });
      }
      return json(404);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-prefetch-'));
    images.clear();
    references.clear();
    fileRequests.clear();
    apiRequests.length = 0;
    failApi = false;
    logs = [];
    log = createLogger({ level: 'debug', write: (line) => logs.push(JSON.parse(line)) });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('parses prefetch entries: UUIDs are ids, a bare name means name:latest, anything else is refused', () => {
    expect(parseImageTarget(FEDORA_40)).toEqual({ kind: 'id', id: FEDORA_40 });
    expect(parseImageTarget('fedora:40')).toEqual({ kind: 'reference', name: 'fedora', tag: '40' });
    expect(formatImageTarget(parseImageTarget('fedora') ?? { kind: 'id', id: '' })).toBe('fedora:latest');
    expect(parseImageTarget('my.os_x-y:v1.0-rc_2')).toMatchObject({ name: 'my.os_x-y', tag: 'v1.0-rc_2' });
    for (const bad of [
      '',
      'Fedora:40',
      'fedora:',
      ':40',
      'fedora:.x',
      'fedora:-x',
      'a..b',
      'a/b:1',
      'a:b:c',
    ]) {
      expect(parseImageTarget(bad), bad).toBeUndefined();
    }
    expect(parseImageTarget(`${'a'.repeat(129)}:1`)).toBeUndefined();
    expect(parseImageTarget(`fedora:${'t'.repeat(129)}`)).toBeUndefined();
  });

  it('resolves name:tag and ids, skips a 404 and images it cannot cache, and downloads each image once', async () => {
    // Prepare
    image(FEDORA_40);
    image(ALPINE);
    image(BY_ID);
    image(QUEUED, { status: 'queued', hashed: false });
    image(DEACTIVATED, { status: 'deactivated' });
    references.set('fedora:40', FEDORA_40);
    references.set('alpine:latest', ALPINE);
    references.set('old:1', DEACTIVATED);
    const cache = cacheFor();
    await cache.init();
    const p = prefetcher(
      ['fedora:40', 'alpine', 'alpine:latest', BY_ID, 'nothing:here', MISSING, QUEUED, 'old:1'],
      cache,
    );

    // Act
    const first = await p.pass(new AbortController().signal);
    const second = await p.pass(new AbortController().signal);

    // Assess: `alpine` and `alpine:latest` are one entry
    expect(p.entries).toHaveLength(7);
    expect(byEntry(first)).toEqual({
      'fedora:40': 'downloaded',
      'alpine:latest': 'downloaded',
      [BY_ID]: 'downloaded',
      'nothing:here': 'not_found',
      [MISSING]: 'not_found',
      [QUEUED]: 'skipped',
      'old:1': 'skipped',
    });
    expect(first.find((o) => o.entry === 'fedora:40')).toMatchObject({
      image_id: FEDORA_40,
      resolved_from: 'public/fedora:40',
    });
    expect(first.find((o) => o.entry === QUEUED)?.reason).toContain('queued, not active');
    expect(first.find((o) => o.entry === 'old:1')?.reason).toContain('deactivated, not active');
    expect(byEntry(second)).toMatchObject({
      'fedora:40': 'cached',
      'alpine:latest': 'cached',
      [BY_ID]: 'cached',
    });
    expect(Object.fromEntries(fileRequests)).toEqual({ [FEDORA_40]: 1, [ALPINE]: 1, [BY_ID]: 1 });
    expect(await cachedIds(cache)).toEqual([FEDORA_40, ALPINE, BY_ID].sort());
    expect(apiRequests).toContain('/v1/references/fedora:40');
    expect(apiRequests).toContain(`/v2/images/${BY_ID}`);
    // Skips are logged (warn) per entry, and the pass is summarised.
    const warned = logs.filter((l) => l.level === 'warn').map((l) => l.entry);
    expect(warned).toEqual(expect.arrayContaining(['nothing:here', MISSING, QUEUED, 'old:1']));
    expect(logs.filter((l) => l.message === 'prefetch pass done')).toHaveLength(2);
  });

  it('shares its download with a build that wants the same image at the same time', async () => {
    // Prepare
    image(FEDORA_40, { size: 2_000_000 });
    references.set('fedora:40', FEDORA_40);
    const cache = cacheFor();
    await cache.init();
    const p = prefetcher(['fedora:40'], cache);
    const img = images.get(FEDORA_40) as FakeImage;
    const ref = {
      id: FEDORA_40,
      disk_format: 'raw',
      size: img.bytes.length,
      os_hash_algo: 'sha512' as const,
      os_hash_value: sha512(img.bytes),
    };

    // Act: the build asks while the prefetch download is under way
    const pass = p.pass(new AbortController().signal);
    while (!fileRequests.has(FEDORA_40)) await sleep(5);
    const [outcomes, built] = await Promise.all([pass, cache.ensure(ref)]);

    // Assess
    expect(outcomes[0]?.status).toBe('downloaded');
    expect(built.sha512).toBe(ref.os_hash_value);
    expect(fileRequests.get(FEDORA_40)).toBe(1);
  });

  it('pins the images the pass resolved against eviction; a moved reference unpins the old image', async () => {
    // Prepare: room for two 100 kB images; fedora:40 is prefetched first, so it is the least recently used
    for (const id of [FEDORA_40, FEDORA_41, OTHER_1, OTHER_2]) image(id);
    references.set('fedora:40', FEDORA_40);
    const cache = cacheFor(250_000);
    await cache.init();
    const p = prefetcher(['fedora:40'], cache);
    const refOf = (id: string) => {
      const img = images.get(id) as FakeImage;
      return {
        id,
        disk_format: 'raw',
        size: img.bytes.length,
        os_hash_algo: 'sha512' as const,
        os_hash_value: sha512(img.bytes),
      };
    };
    await p.pass(new AbortController().signal);
    await sleep(5);
    await cache.ensure(refOf(OTHER_1));
    await sleep(5);

    // Act: a build needs a third image; the LRU one is pinned, so the other one goes
    await cache.ensure(refOf(OTHER_2));

    // Assess
    expect(await cachedIds(cache)).toEqual([FEDORA_40, OTHER_2].sort());

    // Act: the reference moves; the next pass pins the new image, and the old one is evicted for it
    references.set('fedora:40', FEDORA_41);
    const outcomes = await p.pass(new AbortController().signal);

    // Assess
    expect(outcomes[0]).toMatchObject({ status: 'downloaded', image_id: FEDORA_41 });
    expect(p.pinned()).toEqual(new Set([FEDORA_41]));
    expect(await cachedIds(cache)).toEqual([FEDORA_41, OTHER_2].sort());
    expect(
      logs.some((l) => l.message === 'prefetch: reference moved, the old image is no longer pinned'),
    ).toBe(true);
  });

  it('keeps the last pin when the service fails, drops it on a 404, and never throws', async () => {
    // Prepare
    image(FEDORA_40);
    references.set('fedora:40', FEDORA_40);
    const cache = cacheFor();
    await cache.init();
    const p = prefetcher(['fedora:40', BY_ID], cache);
    await p.pass(new AbortController().signal);

    // Act: the service answers 503 to everything
    failApi = true;
    const during = await p.pass(new AbortController().signal);
    const pinnedDuring = p.pinned();
    failApi = false;
    references.delete('fedora:40');
    const after = await p.pass(new AbortController().signal);

    // Assess
    expect(byEntry(during)).toEqual({ 'fedora:40': 'failed', [BY_ID]: 'failed' });
    expect(during[0]?.reason).toContain('HTTP 503');
    expect(pinnedDuring).toEqual(new Set([FEDORA_40]));
    expect(byEntry(after)).toEqual({ 'fedora:40': 'not_found', [BY_ID]: 'not_found' });
    expect(p.pinned()).toEqual(new Set());
  });

  it('runs a pass at once and then every interval until aborted, surviving an unreachable service', async () => {
    // Prepare
    image(FEDORA_40);
    references.set('fedora:40', FEDORA_40);
    const cache = cacheFor();
    await cache.init();
    const unreachable = new Prefetcher({
      entries: ['fedora:40'],
      resolver: new ServiceClient({ baseUrl: 'http://127.0.0.1:1', hostId: 'host-a', token: TOKEN }),
      cache,
      log,
      intervalMs: 20,
    });
    const p = prefetcher(['fedora:40'], cache);
    const controller = new AbortController();

    // Act
    const runs = Promise.all([p.run(controller.signal), unreachable.run(controller.signal)]);
    while (apiRequests.length < 3) await sleep(10);
    await sleep(50);
    controller.abort(new Error('stop'));
    await runs;

    // Assess
    expect(fileRequests.get(FEDORA_40)).toBe(1);
    expect(
      logs.filter((l) => l.message === 'prefetch: cannot resolve, skipped this pass').length,
    ).toBeGreaterThan(1);
    expect(logs.some((l) => l.level === 'error')).toBe(false);
  });
});
