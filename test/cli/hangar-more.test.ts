/**
 * `hangar publish`, `retention`, `import` (web-download and s3://), `hosts` and `ps --watch`,
 * black-box: the real binary against the embedded backend, the test playing the host agent over
 * the real hosts API where one is needed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';
import {
  freshConfigDir,
  type HangarOptions,
  hangar,
  hangarAs,
  hangarJson,
  startHangar,
} from '../helpers/hangar.ts';
import { type LoopbackServer, loopbackServer, s3Client } from '../helpers/imports.ts';

const sha512 = (bytes: Buffer) => createHash('sha512').update(bytes).digest('hex');

describe('hangar publish, retention, import, hosts, ps --watch', () => {
  let t: TestBackend;
  let dir: string;
  let web: LoopbackServer;
  const served = randomBytes(150_000);

  beforeAll(async () => {
    t = await startTestBackend({ hosts: ['h-more'], env: { HANGAR_WEB_DOWNLOAD_ALLOW: '127.0.0.1' } });
    dir = mkdtempSync(join(tmpdir(), 'hangar-cli-more-'));
    web = await loopbackServer((req, res) => {
      if (req.url === '/disk.raw') res.writeHead(200, { 'content-length': served.length }).end(served);
      else res.writeHead(404).end('no such file');
    });
  });
  afterAll(async () => {
    await web?.close();
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const as = (persona: Persona, args: string[], options: HangarOptions = {}) =>
    hangarAs(t, persona, args, options);
  const json = <T = Record<string, unknown>>(persona: Persona, args: string[]) =>
    hangarJson<T>(t, persona, args);

  async function push(name: string, target: string, size = 2000): Promise<string> {
    const path = join(dir, name);
    writeFileSync(path, randomBytes(size));
    return (await json<{ image_id: string }>('alice', ['push', path, target])).image_id;
  }

  it('push prints a field/value summary, not JSON, as a table', async () => {
    const path = join(dir, 'summary.raw');
    const bytes = randomBytes(3000);
    writeFileSync(path, bytes);
    const pushed = await as('alice', ['push', path, 'summary:1']);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).not.toMatch(/[{}]/);
    expect(pushed.stdout).toMatch(/^reference\s+summary:1$/m);
    expect(pushed.stdout).toMatch(/^image\s+[0-9a-f-]{36}$/m);
    expect(pushed.stdout).toMatch(/^status\s+active$/m);
    expect(pushed.stdout).toMatch(/^size\s+2\.9 KiB$/m);
    expect(pushed.stdout).toContain(sha512(bytes));
  });

  it('a killed multipart push, run again, sends only the parts not stored and verifies', async () => {
    const MiB = 1024 * 1024;
    const path = join(dir, 'multi.raw');
    const bytes = randomBytes(16 * MiB + 12_345);
    writeFileSync(path, bytes);
    const config = freshConfigDir();
    const env = { HANGAR_URL: t.url, HANGAR_TOKEN: t.tokens.alice, HANGAR_CONFIG_DIR: config };
    const args = ['push', path, 'multi:1', '--multipart', '--part-size', '5M', '--parallel', '1'];
    const slow = startHangar([...args, '--limit-rate', '3M'], { env });
    const exited = new Promise((resolve) => slow.on('close', resolve));
    const states = join(config, 'pushes');
    const storedParts = () => {
      if (!existsSync(states)) return 0;
      const [name] = readdirSync(states).filter((file) => file.endsWith('.json'));
      if (!name) return 0;
      return Object.keys((JSON.parse(readFileSync(join(states, name), 'utf8')) as { etags: object }).etags)
        .length;
    };
    const deadline = Date.now() + 30_000;
    while (storedParts() < 1) {
      if (Date.now() > deadline) throw new Error('the multipart push never stored a part');
      await sleep(50);
    }
    slow.kill('SIGKILL');
    await exited;
    const stored = storedParts();
    expect(stored).toBeGreaterThanOrEqual(1);
    expect(stored).toBeLessThan(4);

    const again = await hangar([...args, '-o', 'json'], { env });
    expect(again.code, again.stderr).toBe(0);
    const result = JSON.parse(again.stdout) as {
      image: { os_hash_value: string; status: string; size: number };
      transfer: { parts: number; sent_parts: number; skipped_parts: number; sent_bytes: number };
    };
    expect(result.image).toMatchObject({
      status: 'active',
      size: bytes.length,
      os_hash_value: sha512(bytes),
    });
    expect(result.transfer).toEqual({
      method: 'multipart',
      parts: 4,
      sent_parts: 4 - stored,
      skipped_parts: stored,
      sent_bytes: bytes.length - stored * 5 * MiB,
    });
    expect(again.stderr).toMatch(new RegExp(`${stored} of 4 parts already stored`));
    // Done: no session left to resume.
    expect(readdirSync(states).filter((file) => file.endsWith('.json'))).toEqual([]);
  });

  it('publishes behind the gate, and a refused gate is exit 4 with its reason', async () => {
    const candidate = await push('cand.raw', 'app:build-1');
    const started = await json<{ id: string; status: string; type: string }>('alice', [
      'publish',
      'app:build-1',
      'app:stable',
    ]);
    expect(started).toMatchObject({ type: 'publish' });
    expect(['pending', 'processing', 'success']).toContain(started.status);

    // Without --wait the publish goes on in the service: app:stable appears once it has.
    const deadline = Date.now() + 30_000;
    while ((await as('alice', ['inspect', 'app:stable', '-o', 'name'])).stdout.trim() !== candidate) {
      if (Date.now() > deadline) throw new Error('the first publish never landed');
      await sleep(200);
    }
    const second = await push('cand2.raw', 'app:build-2');
    const waited = await as('alice', ['publish', second, 'app:stable', '--wait', '-o', 'json']);
    expect(waited.code, waited.stderr).toBe(0);
    const task = JSON.parse(waited.stdout) as { status: string; result: { image_id: string } };
    expect(task).toMatchObject({ status: 'success', result: { image_id: second } });
    expect(waited.stderr).toMatch(/publish app:stable: success/);
    expect((await as('alice', ['inspect', 'app:stable', '-o', 'name'])).stdout.trim()).toBe(second);
    const history = await json<{ action: string; to: string }[]>('alice', ['history', 'app:stable']);
    expect(history[0]).toMatchObject({ action: 'publish', to: second });
    expect(history.map((entry) => entry.to)).toContain(candidate);

    // A boot gate with no host that can take the instance: refused, the reference left alone.
    const third = await push('cand3.raw', 'app:build-3');
    const refused = await as('alice', [
      'publish',
      third,
      'app:stable',
      '--boot-marker',
      'login:',
      '--boot-timeout',
      '30s',
      '--wait',
      '--timeout',
      '60s',
    ]);
    expect(refused.code, refused.stderr).toBe(4);
    expect(refused.stderr).toMatch(/hangar: Not published/);
    expect((await as('alice', ['inspect', 'app:stable', '-o', 'name'])).stdout.trim()).toBe(second);

    // A stale --expect is a conflict before anything starts.
    expect((await as('alice', ['publish', third, 'app:stable', '--expect', candidate])).code).toBe(4);
    expect((await as('alice', ['publish', 'no:such', 'app:stable'])).code).toBe(3);
    expect((await as('alice', ['publish', third, 'app:stable', '--boot-timeout', '30s'])).code).toBe(2);
  });

  it('sets, shows and applies a retention policy', async () => {
    const v1 = await push('r1.raw', 'ret:1');
    await push('r2.raw', 'ret:2');
    expect((await as('alice', ['retention', 'ret'])).code).toBe(3);
    expect(await json('alice', ['retention', 'ret', '--keep', '1', '--grace', '2d'])).toEqual({
      name: 'ret',
      keep: 1,
      grace_seconds: 172_800,
    });
    // Only --keep changes: the grace period set before stays.
    expect(await json('alice', ['retention', 'ret', '--keep', '2'])).toMatchObject({
      grace_seconds: 172_800,
    });
    const table = await as('alice', ['retention', 'ret']);
    expect(table.stdout).toMatch(/^grace\s+2d$/m);

    // ret:1 no longer points to v1: with keep 1, the older version is hidden on apply.
    await push('r3.raw', 'ret:2');
    expect((await as('alice', ['untag', 'ret:1'])).code).toBe(0);
    const applied = await json<{ hidden: string[] }>('alice', ['retention', 'ret', '--keep', '1', '--apply']);
    expect(applied.hidden).toContain(v1);
    expect((await json<{ os_hidden: boolean }>('alice', ['inspect', v1])).os_hidden).toBe(true);

    expect((await as('alice', ['retention', 'ret:2', '--keep', '1'])).code).toBe(2);
    expect((await as('alice', ['retention', 'ret', '--keep', '0'])).code).toBe(2);
    // A reader may look but not set.
    expect((await as('dave', ['retention', 'ret'])).code).toBe(0);
    expect((await as('dave', ['retention', 'ret', '--keep', '3'])).code).toBe(1);
  });

  it('imports by web-download and from s3://, showing the task, and says why one failed', async () => {
    const imported = await as('alice', ['import', `${web.url}/disk.raw`, 'web:1', '--wait', '-o', 'json']);
    expect(imported.code, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({
      reference: 'web:1',
      image: { status: 'active', size: served.length, os_hash_value: sha512(served), disk_format: 'raw' },
    });
    expect(imported.stderr).toMatch(/import web:1: success, image active/);

    const failed = await as('alice', ['import', `${web.url}/gone.qcow2`, 'web:2', '--wait']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/import of .*gone\.qcow2 failed: .*404.*removed/);
    expect((await as('alice', ['inspect', 'web:2'])).code).toBe(3);

    // Without --wait: the import is started and its task shown; the reference comes later.
    const started = await json<{ type: string; image_id: string }>('alice', [
      'import',
      `${web.url}/disk.raw`,
      'web:3',
    ]);
    expect(started.type).toBe('api_image_import');

    // s3://: signed with the caller's own AWS credentials (here: the stand-ins' key pair).
    const object = randomBytes(90_000);
    await s3Client().send(
      new PutObjectCommand({ Bucket: 'hangar-exports', Key: 'mine/disk.qcow2.raw', Body: object }),
    );
    const aws = {
      AWS_SHARED_CREDENTIALS_FILE: t.backend.credentialsFile,
      AWS_PROFILE: 'hangar',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_S3: t.backend.endpoints.s3,
    };
    const fromS3 = await as(
      'alice',
      ['import', 's3://hangar-exports/mine/disk.qcow2.raw', 's3img:1', '--wait', '-o', 'json'],
      { env: aws },
    );
    expect(fromS3.code, fromS3.stderr).toBe(0);
    expect(JSON.parse(fromS3.stdout)).toMatchObject({ image: { os_hash_value: sha512(object) } });
    expect(fromS3.stderr).not.toMatch(/Warning/);

    const missing = await as('alice', ['import', 's3://hangar-exports/mine/none.raw', 's3img:2', '--wait'], {
      env: aws,
    });
    expect(missing.code).toBe(1);
    // The reason names the object, not the presigned URL with its signature.
    expect(missing.stderr).toMatch(/failed: .*s3:\/\/hangar-exports\/mine\/none\.raw/);
    expect(missing.stderr).not.toMatch(/X-Amz-Signature/);

    expect((await as('alice', ['import', 'ftp://example.com/x.raw', 'x:1'])).code).toBe(2);
    expect((await as('alice', ['import', `${web.url}/no-extension`, 'x:1'])).code).toBe(2);
  });

  it('lists hosts for admins (use, heartbeat, images), and ps --watch prints each change', async () => {
    const hostToken = t.hostTokens['h-more'] ?? '';
    const registered = await t.request('PUT', '/v1/hosts/h-more', {
      token: hostToken,
      headers: { accept: 'application/json' },
      body: {
        vcpus: 8,
        ram_mb: 8192,
        disk_gb: 100,
        architecture: 'x86_64',
        hypervisor_type: 'qemu',
        hypervisor_version: 9_000_000,
      },
    });
    expect(registered.status).toBe(200);
    expect(
      (await t.request('POST', '/v1/hosts/h-more/heartbeat', { token: hostToken, body: {} })).status,
    ).toBe(204);
    await push('guest.raw', 'guest:1', 4096);

    // The watch starts on an empty list and prints again once the instance appears.
    const watch = startHangar(['ps', '--watch', '--interval', '300ms', '-o', 'json'], {
      env: { HANGAR_URL: t.url, HANGAR_TOKEN: t.tokens.alice, HANGAR_CONFIG_DIR: freshConfigDir() },
    });
    let watched = '';
    watch.stdout?.on('data', (chunk) => {
      watched += chunk;
    });
    const lines = () => watched.split('\n').filter(Boolean);
    const until = async (check: () => boolean) => {
      const deadline = Date.now() + 20_000;
      while (!check()) {
        if (Date.now() > deadline) throw new Error(`ps --watch printed: ${watched}`);
        await sleep(50);
      }
    };
    try {
      await until(() => lines().length >= 1);
      expect(JSON.parse(lines()[0] ?? '')).toEqual([]);
      const ran = await json<{ id: string }>('alice', [
        'run',
        'guest:1',
        '--name',
        'w1',
        '--cpus',
        '2',
        '--memory',
        '512M',
        '--disk',
        '2G',
      ]);
      await until(() => lines().length >= 2);
      expect(JSON.parse(lines()[1] ?? '')).toEqual([
        expect.objectContaining({ id: ran.id, stage: 'Building' }),
      ]);
      await sleep(1000);
      // Nothing changed: nothing more printed.
      expect(lines()).toHaveLength(2);
    } finally {
      watch.kill('SIGTERM');
    }

    const hosts = await json<
      {
        id: string;
        used: { vcpus: number };
        instances: number;
        images: string[];
        heartbeat_age_seconds: number;
      }[]
    >('admin', ['hosts']);
    expect(hosts).toEqual([
      expect.objectContaining({ id: 'h-more', used: expect.objectContaining({ vcpus: 2 }), instances: 1 }),
    ]);
    expect(hosts[0]?.images).toEqual(['guest:1']);
    expect(hosts[0]?.heartbeat_age_seconds).toBeLessThan(60);
    const table = await as('admin', ['hosts']);
    expect(table.stdout).toMatch(/^HOST\s+ARCH\s+CPUS\s+MEMORY\s+DISK\s+INSTANCES\s+HEARTBEAT\s+IMAGES$/m);
    expect(table.stdout).toMatch(
      /h-more\s+x86_64\s+2\/8\s+512\.0 MiB\/8\.0 GiB\s+2\.0 GiB\/100\.0 GiB\s+1\s+\d+s ago\s+guest:1/,
    );
    expect((await as('alice', ['hosts'])).code).toBe(1);
  });
});
