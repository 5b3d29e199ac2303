/**
 * Helpers for the import/export integration tests: the upload and other buckets through the real
 * SDK, waiting for an import to settle, disk images made with qemu-img, and a loopback HTTP server
 * for web-download.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { expect } from 'vitest';
import { serviceConfig } from '#platform/config';
import { standInS3 } from './aws.ts';
import type { Persona, TestBackend } from './backend.ts';
import { type ImageView, imageObjects, peek } from './images.ts';

export const run = promisify(execFile);

/** An SDK client for the running test backend's S3 stand-in, configured as the service's is. */
export function s3Client(): S3Client {
  return standInS3();
}

export type BucketName = 'images' | 'uploads' | 'staging' | 'exports';

/** Every key in a bucket under `prefix`. */
export async function listKeys(bucket: BucketName, prefix = ''): Promise<string[]> {
  // The images "bucket" is a directory with HANGAR_BLOB_STORE=fs.
  if (bucket === 'images') return imageObjects(prefix);
  const s3 = s3Client();
  try {
    const out = await s3.send(
      new ListObjectsV2Command({ Bucket: serviceConfig().buckets[bucket], Prefix: prefix }),
    );
    return (out.Contents ?? []).map((o) => o.Key ?? '');
  } finally {
    s3.destroy();
  }
}

export async function putUpload(
  key: string,
  body: Uint8Array,
  metadata?: Record<string, string>,
): Promise<void> {
  const s3 = s3Client();
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: serviceConfig().buckets.uploads,
        Key: key,
        Body: body,
        ContentLength: body.length,
        ...(metadata ? { Metadata: metadata } : {}),
      }),
    );
  } finally {
    s3.destroy();
  }
}

export function md5(bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('hex');
}

export function sha512(bytes: Uint8Array): string {
  return createHash('sha512').update(bytes).digest('hex');
}

/** Deterministic non-trivial bytes (xorshift: faster than random, and reproducible). */
export function patternBytes(size: number, seed = 1): Buffer {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    words[i] = x;
  }
  return Buffer.from(words.buffer, 0, size);
}

export async function showImage(t: TestBackend, id: string, persona: Persona = 'admin'): Promise<ImageView> {
  const response = await t.request('GET', `/v2/images/${id}`, { token: t.tokens[persona] });
  expect(response.status, await peek(response)).toBe(200);
  return (await response.json()) as ImageView;
}

/**
 * Waits until the image's import has settled (active, or back without a lock after a failure)
 * and every trigger and execution has finished.
 */
export async function waitForImport(t: TestBackend, id: string, timeoutMs = 60_000): Promise<ImageView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // An image an upload creates (new/...) appears only once the trigger has run.
    const response = await t.request('GET', `/v2/images/${id}`, { token: t.tokens.admin });
    if (response.status === 404 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    expect(response.status, await peek(response)).toBe(200);
    const image = (await response.json()) as ImageView;
    const settled =
      image.status === 'active' ||
      (!('os_glance_import_task' in image) &&
        typeof image.os_glance_failed_import === 'string' &&
        image.os_glance_failed_import !== '');
    if (settled) {
      await t.backend.idle();
      return showImage(t, id);
    }
    if (Date.now() > deadline) throw new Error(`import of ${id} did not settle: ${JSON.stringify(image)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface TaskView {
  id: string;
  type: string;
  status: string;
  message: string;
  result: Record<string, unknown> | null;
  expires_at: string | null;
  created_at: string;
  updated_at: string;
  image_id: string | null;
  [key: string]: unknown;
}

export async function imageTasks(
  t: TestBackend,
  id: string,
  persona: Persona = 'admin',
): Promise<TaskView[]> {
  const response = await t.request('GET', `/v2/images/${id}/tasks`, { token: t.tokens[persona] });
  expect(response.status, await peek(response)).toBe(200);
  return ((await response.json()) as { tasks: TaskView[] }).tasks;
}

/** Polls GET /v2/tasks/{id} (admin) until the task has finished. */
export async function waitForTask(t: TestBackend, id: string, timeoutMs = 120_000): Promise<TaskView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await t.request('GET', `/v2/tasks/${id}`, { token: t.tokens.admin });
    expect(response.status, await peek(response)).toBe(200);
    const task = (await response.json()) as TaskView;
    if (task.status === 'success' || task.status === 'failure') {
      await t.backend.idle();
      return task;
    }
    if (Date.now() > deadline) throw new Error(`task ${id} did not finish: ${JSON.stringify(task)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Runs qemu-img with the arguments; throws with stderr on failure. */
export async function qemuImg(...args: string[]): Promise<string> {
  const { stdout } = await run('qemu-img', args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/**
 * Writes `dir`/b.qcow2, a 1 MiB qcow2 that names /etc/passwd as its raw backing file (the
 * dangerous image every upload and import path must refuse), and returns its path.
 */
export async function qcow2WithBackingFile(dir: string): Promise<string> {
  const path = join(dir, 'b.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-u', '-b', '/etc/passwd', '-F', 'raw', path, '1M');
  return path;
}

export interface LoopbackServer {
  readonly port: number;
  readonly url: string;
  readonly requests: string[];
  close(): Promise<void>;
}

/** A tiny HTTP server on 127.0.0.1 for web-download; `handle` answers each request. */
export async function loopbackServer(
  handle: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<LoopbackServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(req.url ?? '');
    handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
