/**
 * A backend really killed (SIGKILL) mid-upload, mid-stage and mid-import, then restarted on the
 * same data directory (disk storage): the start-up lease sweep must put the image back to queued
 * with the reason, fail the task, release the import lock and remove the partial bytes, so a
 * retry succeeds and the data directory holds nothing but the final blob.
 *
 * Image bytes are files of the fs blob store (the runner's default), written to `<key>.partial`
 * until complete: the bytes a crash leaves are visible on disk. Staged bytes are in s3rver; the
 * bodies carry a Content-Length, so each partial object is one streamed PutObject that s3rver
 * writes straight to its file. (s3rver
 * 3.7.1 ignores AbortMultipartUpload, so parts of a chunked upload would stay whatever Hangar
 * asks; that the lease names and aborts the multipart upload is covered by the unit tests.)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MiB = 1024 * 1024;

interface Main {
  child: ChildProcess;
  url: string;
  token: string;
  pids: number[];
  exit: Promise<unknown>;
  log: () => string;
}

/** This process's environment minus what in-process backends may have set in it. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('HANGAR_') && !key.startsWith('AWS_')),
  );
}

const spawned: ChildProcess[] = [];
afterAll(() => {
  for (const child of spawned)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** local/main.ts as its own node process (no tsx wrapper, so SIGKILL hits the backend itself). */
async function startMain(dataDir: string, env: Record<string, string> = {}): Promise<Main> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'local/main.ts'], {
    cwd: ROOT,
    env: {
      ...cleanEnv(),
      HANGAR_PORT: '0',
      HANGAR_DATA_DIR: dataDir,
      HANGAR_STORAGE: 'disk',
      HANGAR_LOG_LEVEL: 'info',
      HANGAR_WEB_DOWNLOAD_ALLOW: '127.0.0.1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  spawned.push(child);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => {
    out += s;
  });
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    err += s;
  });
  const exit = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 90_000;
  let url: string | undefined;
  while (!url) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`main did not start:\n${out}\n${err}`);
    url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
    if (!url) await sleep(100);
  }
  const token = /development admin token: (\S+)/.exec(out)?.[1];
  if (!token) throw new Error(`no admin token:\n${out}`);
  const started = err
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { message: string; dynamodb?: { pid: number }; s3?: { pid: number } })
    .find((line) => line.message === 'backend started');
  const pids = [started?.dynamodb?.pid, started?.s3?.pid].filter((p): p is number => typeof p === 'number');
  return { child, url, token, pids, exit, log: () => err };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** kill -9 the backend; the kernel takes its stand-ins with it (pdeathsig). */
async function crash(main: Main): Promise<void> {
  main.child.kill('SIGKILL');
  await main.exit;
  const deadline = Date.now() + 15_000;
  while (main.pids.some(isAlive) && Date.now() < deadline) await sleep(100);
  expect(main.pids.filter(isAlive)).toEqual([]);
}

/**
 * Bytes of object data on disk, by path: s3rver's objects (and multipart parts; metadata files
 * excluded) and the image files of the fs blob store (partial files of unfinished writes included).
 */
function storedBytes(dataDir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (
        !/\._S3rver_(metadata\.json|object\.md5|cors\.xml)$/.test(entry.name) &&
        !entry.name.endsWith('.md5')
      )
        out.set(path.slice(dataDir.length), statSync(path).size);
    }
  };
  walk(join(dataDir, 's3'));
  if (existsSync(join(dataDir, 'blobs'))) walk(join(dataDir, 'blobs'));
  return out;
}

function total(bytes: Map<string, number>, match: string): number {
  let sum = 0;
  for (const [path, size] of bytes) if (path.includes(match)) sum += size;
  return sum;
}

async function api(main: Main, method: string, path: string, body?: unknown) {
  const response = await fetch(`${main.url}${path}`, {
    method,
    headers: {
      'x-auth-token': main.token,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  const isJson = response.headers.get('content-type')?.includes('json') && text !== '';
  return { status: response.status, json: isJson ? (JSON.parse(text) as Record<string, unknown>) : {}, text };
}

async function createImage(main: Main): Promise<string> {
  const created = await api(main, 'POST', '/v2/images', {
    name: 'crash-probe',
    disk_format: 'raw',
    container_format: 'bare',
  });
  expect(created.status).toBe(201);
  return String(created.json.id);
}

/**
 * Starts a PUT of `size` bytes with that Content-Length and sends only `sent` of them: the
 * request stays open, as a slow client's would, until the backend dies.
 */
function slowPut(
  main: Main,
  path: string,
  size: number,
  sent: number,
): { failed: Promise<unknown>; abandon: () => void } {
  const req = httpRequest(`${main.url}${path}`, {
    method: 'PUT',
    headers: {
      'x-auth-token': main.token,
      'content-type': 'application/octet-stream',
      'content-length': String(size),
    },
  });
  const failed = new Promise((resolve) => {
    req.on('error', resolve);
    req.on('response', resolve);
  });
  req.write(randomBytes(sent));
  return { failed, abandon: () => req.destroy() };
}

async function eventually(check: () => Promise<boolean> | boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function upload(main: Main, id: string, bytes: Buffer): Promise<number> {
  const response = await fetch(`${main.url}/v2/images/${id}/file`, {
    method: 'PUT',
    headers: { 'x-auth-token': main.token, 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  return response.status;
}

const dirs: string[] = [];
afterEach(() => {
  for (const child of spawned)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-crash-'));
  dirs.push(dir);
  return dir;
}

describe('a backend killed mid-upload', () => {
  it('comes back with the image queued and the reason, no partial bytes, and a retry that succeeds', async () => {
    // Prepare: 24 MiB of a 64 MiB upload have reached the blob when the backend is killed.
    const dir = dataDir();
    let main = await startMain(dir);
    const id = await createImage(main);
    const put = slowPut(main, `/v2/images/${id}/file`, 64 * MiB, 24 * MiB);
    await eventually(() => total(storedBytes(dir), `/images/${id}/`) >= 8 * MiB, 'the partial blob');
    expect((await api(main, 'GET', `/v2/images/${id}`)).json.status).toBe('saving');
    await crash(main);
    await put.failed;
    const leaked = total(storedBytes(dir), `/images/${id}/`);
    expect(leaked).toBeGreaterThanOrEqual(8 * MiB);

    // Act
    main = await startMain(dir);

    // Assess: recovered before the first request could meet the stale upload.
    const image = (await api(main, 'GET', `/v2/images/${id}`)).json;
    expect(image.status).toBe('queued');
    expect(image.size).toBeNull();
    expect(String(image.os_glance_failed_upload)).toMatch(
      /upload was interrupted: the server handling it stopped/,
    );
    expect(total(storedBytes(dir), `/images/${id}/`)).toBe(0);
    expect(main.log()).toContain('recovered interrupted uploads and imports');

    const retry = randomBytes(3 * MiB);
    expect(await upload(main, id, retry)).toBe(204);
    const active = (await api(main, 'GET', `/v2/images/${id}`)).json;
    expect(active.status).toBe('active');
    expect(active.size).toBe(3 * MiB);
    expect(active.os_glance_failed_upload).toBeUndefined();
    // Nothing anywhere in S3 or the image files but the final blob.
    const everything = [...storedBytes(dir).entries()];
    expect(everything).toEqual([[expect.stringContaining(`/images/${id}/`), 3 * MiB]]);
    main.child.kill('SIGTERM');
    await main.exit;
  });
});

describe('a backend killed mid-stage (glance-direct)', () => {
  it('comes back with the image queued, the staged bytes gone, and a stage + import that succeed', async () => {
    // Prepare
    const dir = dataDir();
    let main = await startMain(dir);
    const id = await createImage(main);
    const put = slowPut(main, `/v2/images/${id}/stage`, 48 * MiB, 16 * MiB);
    await eventually(() => total(storedBytes(dir), `staging`) >= 8 * MiB, 'the partial staged object');
    expect((await api(main, 'GET', `/v2/images/${id}`)).json.status).toBe('uploading');
    await crash(main);
    await put.failed;

    // Act
    main = await startMain(dir);

    // Assess
    const image = (await api(main, 'GET', `/v2/images/${id}`)).json;
    expect(image.status).toBe('queued');
    expect(String(image.os_glance_failed_upload)).toMatch(/stage \(glance-direct\) was interrupted/);
    expect(total(storedBytes(dir), 'staging')).toBe(0);
    const bytes = randomBytes(2 * MiB);
    const staged = await fetch(`${main.url}/v2/images/${id}/stage`, {
      method: 'PUT',
      headers: { 'x-auth-token': main.token, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(staged.status).toBe(204);
    const imported = await api(main, 'POST', `/v2/images/${id}/import`, {
      method: { name: 'glance-direct' },
    });
    expect(imported.status).toBe(202);
    await eventually(
      async () => (await api(main, 'GET', `/v2/images/${id}`)).json.status === 'active',
      'the import',
    );
    // The staged object is removed once the import has succeeded.
    await eventually(() => total(storedBytes(dir), 'staging') === 0, 'the staged object removed');
    const everything = [...storedBytes(dir).entries()];
    expect(everything).toEqual([[expect.stringContaining(`/images/${id}/`), 2 * MiB]]);
    main.child.kill('SIGTERM');
    await main.exit;
  });
});

describe('a backend killed mid-import (web-download)', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('comes back with the image queued, the task failed with the reason, the lock released and no bytes left', async () => {
    // Prepare: a web server that sends 24 MiB of 64 MiB at /slow and then stalls; /fast is whole.
    const fast = randomBytes(2 * MiB);
    server = createServer((req, res) => {
      if (req.url === '/fast') {
        res.writeHead(200, { 'content-length': String(fast.length) });
        res.end(fast);
        return;
      }
      res.writeHead(200, { 'content-length': String(64 * MiB) });
      res.write(randomBytes(24 * MiB));
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const dir = dataDir();
    let main = await startMain(dir);
    const id = await createImage(main);
    const started = await api(main, 'POST', `/v2/images/${id}/import`, {
      method: { name: 'web-download', uri: `http://127.0.0.1:${port}/slow` },
    });
    expect(started.status).toBe(202);
    await eventually(() => total(storedBytes(dir), `/images/${id}/`) >= 8 * MiB, 'the partial blob');
    const during = (await api(main, 'GET', `/v2/images/${id}`)).json;
    expect(during.status).toBe('importing');
    const taskId = String(during.os_glance_import_task);
    await crash(main);

    // Act
    main = await startMain(dir);

    // Assess
    const image = (await api(main, 'GET', `/v2/images/${id}`)).json;
    expect(image.status).toBe('queued');
    expect(image.os_glance_import_task).toBeUndefined();
    expect(String(image.os_glance_failed_import)).toMatch(
      new RegExp(`import \\(task ${taskId}\\) was interrupted`),
    );
    const task = (await api(main, 'GET', `/v2/tasks/${taskId}`)).json;
    expect(task.status).toBe('failure');
    expect(String(task.message)).toMatch(/interrupted/);
    expect(total(storedBytes(dir), `/images/${id}/`)).toBe(0);

    // A retry is no 409: the lock is free.
    const retried = await api(main, 'POST', `/v2/images/${id}/import`, {
      method: { name: 'web-download', uri: `http://127.0.0.1:${port}/fast` },
    });
    expect(retried.status).toBe(202);
    await eventually(
      async () => (await api(main, 'GET', `/v2/images/${id}`)).json.status === 'active',
      'the retried import',
    );
    expect([...storedBytes(dir).entries()]).toEqual([[expect.stringContaining(`/images/${id}/`), 2 * MiB]]);
    main.child.kill('SIGTERM');
    await main.exit;
  });
});

describe('DELETE of an image whose upload died', () => {
  it('frees the partial blob the lease names, even before any recovery', async () => {
    // Prepare: no sweep at all but the start-up one, which finds nothing yet.
    const dir = dataDir();
    const main = await startMain(dir, { HANGAR_LEASE_SWEEP_SECONDS: '0' });
    const id = await createImage(main);
    const put = slowPut(main, `/v2/images/${id}/file`, 64 * MiB, 24 * MiB);
    await eventually(() => total(storedBytes(dir), `/images/${id}/`) >= 8 * MiB, 'the partial blob');

    // Act: deleted while its bytes are still flowing.
    const deleted = await api(main, 'DELETE', `/v2/images/${id}`);
    expect(deleted.status, deleted.text).toBe(204);

    // Assess
    expect(total(storedBytes(dir), `/images/${id}/`)).toBe(0);
    put.abandon();
    await put.failed;
    await eventually(() => total(storedBytes(dir), `/images/${id}/`) === 0, 'nothing left');
    expect((await api(main, 'GET', `/v2/images/${id}`)).status).toBe(404);
    main.child.kill('SIGTERM');
    await main.exit;
  });
});
