/**
 * `hangar push` picks its path from the service's GET /v2/info/upload (HANGAR_UPLOAD_METHOD):
 * presigned multipart where the service says it does not stream (AWS), PUT /file where it does,
 * and multipart after a 413 from a gateway that caps bodies in front of a service that said put.
 * The real binary against the embedded backend; the capping gateway is a loopback proxy.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setServiceEnvironment } from '#platform/config';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { hangarAs } from '../helpers/hangar.ts';
import { type LoopbackServer, loopbackServer } from '../helpers/imports.ts';

const MiB = 1024 * 1024;

interface Pushed {
  image_id: string;
  image: { id: string; status: string; size: number; os_hash_value: string };
  transfer: { method: string; parts?: number; sent_parts?: number; sent_bytes: number };
}

describe('hangar push: the upload method the service advertises', () => {
  let t: TestBackend;
  let dir: string;
  let file: string;
  let bytes: Buffer;
  let sha512: string;

  beforeAll(async () => {
    // What HANGAR_BLOB_DELIVERY=redirect (AWS) implies, on the embedded backend.
    t = await startTestBackend({ env: { HANGAR_UPLOAD_METHOD: 'multipart' } });
    dir = mkdtempSync(join(tmpdir(), 'hangar-cli-method-'));
    file = join(dir, 'disk.raw');
    // Three parts at the service's 8 MiB default.
    bytes = randomBytes(17 * MiB + 4321);
    writeFileSync(file, bytes);
    sha512 = createHash('sha512').update(bytes).digest('hex');
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const uploadMethods = async () => {
    const response = await t.request('GET', '/v2/info/upload', { token: t.tokens.alice });
    expect(response.status).toBe(200);
    return ((await response.json()) as { 'upload-methods': { value: string[] } })['upload-methods'].value;
  };
  /** How many tasks the image has: the multipart path ends in an import task, PUT /file in none. */
  const taskCount = async (id: string) => {
    const response = await t.request('GET', `/v2/images/${id}/tasks`, { token: t.tokens.alice });
    return ((await response.json()) as { tasks: unknown[] }).tasks.length;
  };
  async function push(
    target: string,
    extra: string[] = [],
    url = t.url,
  ): Promise<Pushed & { stderr: string }> {
    const result = await hangarAs(t, 'alice', ['push', file, target, ...extra, '-o', 'json'], {
      env: { HANGAR_URL: url },
    });
    expect(result.code, result.stderr).toBe(0);
    return { ...(JSON.parse(result.stdout) as Pushed), stderr: result.stderr };
  }

  it('goes multipart by itself where the service does not stream, and the image is active with its sha512', async () => {
    expect(await uploadMethods()).toEqual(['multipart']);
    const pushed = await push('auto-mp:1');
    expect(pushed.transfer).toEqual({
      method: 'multipart',
      parts: 3,
      sent_parts: 3,
      skipped_parts: 0,
      sent_bytes: bytes.length,
    });
    expect(pushed.image).toMatchObject({ status: 'active', size: bytes.length, os_hash_value: sha512 });
    expect(await taskCount(pushed.image.id)).toBe(1);
    const stored = await t.request('GET', `/v2/images/${pushed.image.id}`, { token: t.tokens.alice });
    expect(await stored.json()).toMatchObject({ status: 'active', os_hash_value: sha512 });
  });

  it('--no-multipart streams through PUT /file even there', async () => {
    const pushed = await push('forced-put:1', ['--no-multipart']);
    expect(pushed.transfer).toEqual({ method: 'put', sent_bytes: bytes.length });
    expect(pushed.image).toMatchObject({ status: 'active', os_hash_value: sha512 });
    expect(await taskCount(pushed.image.id)).toBe(0);
  });

  describe('where the service streams (the embedded default)', () => {
    let gateway: LoopbackServer;
    const refused: string[] = [];

    beforeAll(async () => {
      setServiceEnvironment({ HANGAR_UPLOAD_METHOD: 'put' });
      const backend = new URL(t.url);
      // API Gateway's body cap, in front of a service that says put: PUT /file answers 413.
      gateway = await loopbackServer((req, res) => {
        if (req.method === 'PUT' && /\/file$/.test(req.url ?? '')) {
          refused.push(req.url ?? '');
          req.resume();
          req.on('end', () =>
            res
              .writeHead(413, { 'content-type': 'application/json' })
              .end('{"message":"Request Entity Too Large"}'),
          );
          return;
        }
        const forwarded = httpRequest(
          {
            host: backend.hostname,
            port: backend.port,
            path: req.url,
            method: req.method,
            headers: req.headers,
          },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        req.pipe(forwarded);
      });
    });
    afterAll(async () => {
      await gateway?.close();
    });

    it('streams through PUT /file by default', async () => {
      expect(await uploadMethods()).toEqual(['put', 'multipart']);
      const pushed = await push('auto-put:1');
      expect(pushed.transfer).toEqual({ method: 'put', sent_bytes: bytes.length });
      expect(pushed.image).toMatchObject({ status: 'active', size: bytes.length, os_hash_value: sha512 });
      expect(await taskCount(pushed.image.id)).toBe(0);
    });

    it('switches to multipart when PUT /file answers 413, leaving no image of the refused try', async () => {
      const pushed = await push('capped:1', [], gateway.url);
      expect(refused).toHaveLength(1);
      expect(pushed.stderr).toMatch(
        /Request Entity Too Large \(413 from PUT .*\); sending it as presigned multipart/,
      );
      expect(pushed.transfer).toMatchObject({ method: 'multipart', parts: 3, sent_parts: 3 });
      expect(pushed.image).toMatchObject({ status: 'active', os_hash_value: sha512 });
      // The image the refused PUT was for is gone: only the multipart one is named capped.
      const list = await t.request('GET', '/v2/images?name=capped', { token: t.tokens.alice });
      const images = ((await list.json()) as { images: { id: string }[] }).images;
      expect(images.map((image) => image.id)).toEqual([pushed.image.id]);
      expect(refused[0]).not.toContain(pushed.image.id);
    });

    it('an explicit --no-multipart does not fall back: the 413 is the error', async () => {
      const result = await hangarAs(t, 'alice', ['push', file, 'capped-put:1', '--no-multipart'], {
        env: { HANGAR_URL: gateway.url },
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/413 from PUT/);
      expect(result.stderr).not.toMatch(/multipart parts/);
    });
  });
});
