/**
 * The embedded gateway's /console/: hashed assets cached for good, index.html revalidated, deep
 * links answered with index.html, traversal refused, and the API beside it untouched.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConsolePath } from '../../local/console-static.ts';
import { type Gateway, startGateway } from '../../local/gateway.ts';

/** A raw request: fetch would normalise `..` and `%2e%2e` away before sending. */
function raw(gateway: Gateway, method: string, path: string) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
    (resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: gateway.port, method, path }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    },
  );
}

describe('the console on the embedded gateway', () => {
  let dir: string;
  let outside: string;
  let gateway: Gateway;
  let empty: Gateway;

  beforeAll(async () => {
    const base = mkdtempSync(join(tmpdir(), 'hangar-console-'));
    dir = join(base, 'dist');
    outside = join(base, 'secret.txt');
    mkdirSync(join(dir, 'assets'), { recursive: true });
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>console</title>');
    writeFileSync(join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
    writeFileSync(outside, 'do not serve');
    // The embedded S3's origin, where the console's multipart parts go (local/backend.ts passes it).
    gateway = await startGateway({
      host: '127.0.0.1',
      port: 0,
      consoleDir: dir,
      consoleConnect: ['http://127.0.0.1:4569'],
    });
    empty = await startGateway({ host: '127.0.0.1', port: 0, consoleDir: join(base, 'missing') });
  });
  afterAll(async () => {
    await gateway?.close(0);
    await empty?.close(0);
    rmSync(join(dir, '..'), { recursive: true, force: true });
  });

  it('serves index.html uncached and hashed assets immutable', async () => {
    const index = await raw(gateway, 'GET', '/console/');
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.headers['cache-control']).toBe('no-cache');
    expect(index.body).toContain('<title>console</title>');
    // The page may talk to its own origin and to the S3 of its presigned part URLs, nothing else.
    expect(index.headers['content-security-policy']).toContain("connect-src 'self' http://127.0.0.1:4569;");
    expect(index.headers['content-security-policy']).toContain("default-src 'self';");
    const asset = await raw(gateway, 'GET', '/console/assets/index-abc123.js');
    expect(asset.status).toBe(200);
    expect(asset.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(asset.body).toBe('console.log(1)');
    const head = await raw(gateway, 'HEAD', '/console/assets/index-abc123.js');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it('answers deep links with index.html, a missing asset with 404, /console with a redirect', async () => {
    for (const path of ['/console/images/1234', '/console/references/fedora:40', '/console/instances?x=1']) {
      const page = await raw(gateway, 'GET', path);
      expect(page.status, path).toBe(200);
      expect(page.headers['cache-control']).toBe('no-cache');
      expect(page.body).toContain('<title>console</title>');
    }
    expect((await raw(gateway, 'GET', '/console/assets/index-old999.js')).status).toBe(404);
    const bare = await raw(gateway, 'GET', '/console');
    expect(bare.status).toBe(301);
    expect(bare.headers.location).toBe('/console/');
  });

  it('refuses traversal, however it is spelled', async () => {
    for (const path of [
      '/console/../secret.txt',
      '/console/%2e%2e/secret.txt',
      '/console/assets/%2E%2E/%2E%2E/secret.txt',
      '/console/..%2fsecret.txt',
      '/console/..%5csecret.txt',
      '/console/%00',
      '/console/%E0%A4%A',
    ]) {
      const answer = await raw(gateway, 'GET', path);
      expect(answer.status, path).toBe(400);
      expect(answer.body).not.toContain('do not serve');
    }
    expect(resolveConsolePath('/console/a/./b')).toEqual({
      kind: 'refused',
      status: 400,
      message: 'Bad console path.',
    });
    expect(resolveConsolePath('/console/a//b/')).toEqual({ kind: 'file', relative: 'a/b' });
  });

  it('takes only GET and HEAD, and says when the console is not built', async () => {
    const post = await raw(gateway, 'POST', '/console/');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    const missing = await raw(empty, 'GET', '/console/');
    expect(missing.status).toBe(503);
    expect(missing.body).toContain('npm run build:console');
  });

  it('leaves the API paths to the API', async () => {
    // `/consoles` is not under /console/: the API answers it (Glance's versions document).
    const versions = await raw(gateway, 'GET', '/consoles');
    expect(versions.status).not.toBe(503);
    expect(versions.body).not.toContain('<title>console</title>');
  });

  it('has no Keystone at /identity outside keystone mode (test/console/keystone.test.ts has it)', async () => {
    expect((await raw(gateway, 'GET', '/identity/v3')).status).toBe(404);
    expect((await raw(gateway, 'POST', '/identity/v3/auth/tokens')).status).toBe(404);
  });
});
