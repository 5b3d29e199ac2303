/**
 * The host agent's prefetch against the real local backend: with its own host token the agent
 * resolves a public name:tag reference and an image id through the HTTP API, downloads both into
 * its verified cache, and follows the reference when it is published to a new image.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageCache } from '../../agent/src/image-cache.ts';
import { createLogger } from '../../agent/src/log.ts';
import { Prefetcher } from '../../agent/src/prefetch.ts';
import { ServiceClient } from '../../agent/src/service-client.ts';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';

const HOST = 'h-prefetch';

describe('agent prefetch against the service', () => {
  let t: TestBackend;
  let dir: string;

  beforeAll(async () => {
    t = await startTestBackend({ hosts: [HOST] });
    dir = await mkdtemp(join(tmpdir(), 'hangar-prefetch-'));
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function json(persona: Persona, method: string, path: string, body?: object) {
    const response = await t.request(method, path, {
      token: t.tokens[persona],
      headers: { accept: 'application/json' },
      ...(body ? { body } : {}),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  }

  /** A public raw image of the admin's with these bytes. */
  async function publicImage(bytes: Buffer): Promise<string> {
    const created = await json('admin', 'POST', '/v2/images', {
      name: 'base',
      disk_format: 'raw',
      container_format: 'bare',
      visibility: 'public',
    });
    expect(created.status).toBe(201);
    const upload = await t.request('PUT', `/v2/images/${created.body.id}/file`, {
      token: t.tokens.admin,
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(upload.status).toBe(204);
    return created.body.id;
  }

  it('resolves name:tag and ids with its host token, caches them verified, and follows a publish', async () => {
    // Prepare: base:1 in the public namespace, and a private image of alice's named by id
    const first = Buffer.alloc(64 * 1024, 1);
    const second = Buffer.alloc(64 * 1024, 2);
    const firstId = await publicImage(first);
    const made = await json('admin', 'POST', '/v1/references', {
      reference: 'base:1',
      image_id: firstId,
      namespace: 'public',
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const privateImage = await json('alice', 'POST', '/v2/images', {
      name: 'own',
      disk_format: 'raw',
      container_format: 'bare',
    });
    await t.request('PUT', `/v2/images/${privateImage.body.id}/file`, {
      token: t.tokens.alice,
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(4096, 7),
    });
    const client = () => new ServiceClient({ baseUrl: t.url, hostId: HOST, token: t.hostTokens[HOST] ?? '' });
    const cache = new ImageCache({
      dir: join(dir, 'cache'),
      maxBytes: 1024 * 1024 * 1024,
      source: client(),
      imagesInUse: async () => new Set(),
    });
    await cache.init();
    const prefetcher = new Prefetcher({
      entries: ['base:1', privateImage.body.id, 'missing:1'],
      resolver: client(),
      cache,
      log: createLogger({ level: 'error', write: () => undefined }),
      intervalMs: 60_000,
    });
    const signal = new AbortController().signal;

    // Act
    const outcomes = await prefetcher.pass(signal);

    // Assess: both downloaded and verified; the unknown reference is reported, not fatal
    const status = Object.fromEntries(outcomes.map((o) => [o.entry, o.status]));
    expect(status).toEqual({
      'base:1': 'downloaded',
      [privateImage.body.id]: 'downloaded',
      'missing:1': 'not_found',
    });
    expect(outcomes.find((o) => o.entry === 'base:1')).toMatchObject({ image_id: firstId });
    const cached = await cache.ensure({
      id: firstId,
      disk_format: 'raw',
      size: first.length,
      os_hash_algo: 'sha512',
      os_hash_value: createHash('sha512').update(first).digest('hex'),
    });
    expect(
      createHash('sha512')
        .update(await readFile(cached.path))
        .digest('hex'),
    ).toBe(createHash('sha512').update(first).digest('hex'));

    // Act: publish base:1 to a new build; the next pass follows the reference
    const secondId = await publicImage(second);
    const published = await json('admin', 'POST', '/v1/references/base:1/publish?namespace=public', {
      image_id: secondId,
    });
    expect(published.status, JSON.stringify(published.body)).toBe(202);
    for (let i = 0; i < 100; i++) {
      const shown = await json('admin', 'GET', `/v1/publications/${published.body.id}`);
      if (shown.body.status === 'success') break;
      expect(shown.body.status).not.toBe('failure');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const next = await prefetcher.pass(signal);

    // Assess
    expect(next.find((o) => o.entry === 'base:1')).toMatchObject({
      status: 'downloaded',
      image_id: secondId,
    });
    expect((await cache.entries()).map((e) => e.id).sort()).toEqual(
      [firstId, secondId, privateImage.body.id].sort(),
    );
  });
});
