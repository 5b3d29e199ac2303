/**
 * Helpers for the images API integration tests: typed requests on top of TestBackend, error-body
 * parsing (HTML or JSON), and a look into the image store behind the service (the images bucket
 * through the real SDK, or the files of HANGAR_BLOB_STORE=fs).
 */
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { dirname, join, relative, sep } from 'node:path';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { expect } from 'vitest';
import type { ImageRecord } from '#core/images/image';
import { serviceConfig } from '#platform/config';
import { standInS3 } from './aws.ts';
import type { Persona, TestBackend } from './backend.ts';

/**
 * The API view of an image: the record's base attributes (status and visibility as the strings
 * on the wire), its links, and the extra properties (strings) beside them.
 */
export type ImageView = Omit<ImageRecord, 'status' | 'visibility' | InternalField> & {
  status: string;
  visibility: string;
  self: string;
  file: string;
  schema: string;
  [extra: string]: unknown;
};

/** What the record keeps that the API never shows as such (the properties are spread out). */
type InternalField = 'properties' | 'version' | 'blob_key' | 'member_statuses' | 'lease';

export interface ImageList {
  images: ImageView[];
  first: string;
  next?: string;
  schema: string;
}

export { GLANCE_BASE_KEYS } from './glance-keys.ts';

export const PATCH_V21 = 'application/openstack-images-v2.1-json-patch';
export const PATCH_V20 = 'application/openstack-images-v2.0-json-patch';

export class ImagesApi {
  constructor(readonly t: TestBackend) {}

  token(persona: Persona): string {
    return this.t.tokens[persona];
  }

  async create(persona: Persona, body: object = {}): Promise<ImageView> {
    const response = await this.t.request('POST', '/v2/images', { token: this.token(persona), body });
    expect(response.status, await peek(response)).toBe(201);
    return (await response.json()) as ImageView;
  }

  async show(persona: Persona, id: string): Promise<ImageView> {
    const response = await this.t.request('GET', `/v2/images/${id}`, { token: this.token(persona) });
    expect(response.status, await peek(response)).toBe(200);
    return (await response.json()) as ImageView;
  }

  async list(persona: Persona, query = ''): Promise<ImageList> {
    const response = await this.t.request('GET', `/v2/images${query ? `?${query}` : ''}`, {
      token: this.token(persona),
    });
    expect(response.status, `${query}: ${await peek(response)}`).toBe(200);
    return (await response.json()) as ImageList;
  }

  patch(
    persona: Persona,
    id: string,
    body: unknown,
    mediaType: string = PATCH_V21,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    return this.t.request('PATCH', `/v2/images/${id}`, {
      token: this.token(persona),
      headers: { 'content-type': mediaType, ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  }

  upload(
    persona: Persona,
    id: string,
    bytes: Uint8Array,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    return this.t.request('PUT', `/v2/images/${id}/file`, {
      token: this.token(persona),
      headers: { 'content-type': 'application/octet-stream', ...headers },
      body: bytes,
    });
  }

  download(persona: Persona, id: string, headers: Record<string, string> = {}): Promise<Response> {
    return this.t.request('GET', `/v2/images/${id}/file`, { token: this.token(persona), headers });
  }

  /** A new image with formats set and `bytes` uploaded (active). */
  async createActive(persona: Persona, bytes: Uint8Array, body: object = {}): Promise<ImageView> {
    const image = await this.create(persona, { disk_format: 'raw', container_format: 'bare', ...body });
    const response = await this.upload(persona, image.id, bytes);
    expect(response.status, await peek(response)).toBe(204);
    return this.show(persona, image.id);
  }

  /** Asserts the image is exactly as `before` (a refused request changed nothing). */
  async expectUnchanged(before: ImageView): Promise<void> {
    expect(await this.show('admin', before.id)).toEqual(before);
  }
}

const QCOW2_MIN = 80;
const ISO_MIN = 36 * 1024;

/**
 * `size` bytes whose content is what `diskFormat` says, since uploads are checked against the
 * declared format: a qcow2 v2 header (with its end-of-extensions marker), an ISO 9660 volume
 * descriptor set, or plain bytes for the formats that take any content (raw, ami, ari, aki).
 */
export function imageBytes(diskFormat: string, size: number): Buffer {
  const bytes = Buffer.alloc(size, 0x5a);
  if (diskFormat === 'qcow2') {
    if (size < QCOW2_MIN) throw new Error(`a qcow2 image needs at least ${QCOW2_MIN} bytes`);
    bytes.fill(0, 0, QCOW2_MIN);
    bytes.write('QFI\xfb', 0, 'latin1');
    bytes.writeUInt32BE(2, 4); // version
    bytes.writeUInt32BE(16, 20); // cluster_bits: 64 KiB clusters
    bytes.writeBigUInt64BE(1n << 30n, 24); // virtual size: 1 GiB
    bytes.writeUInt32BE(2, 36); // l1_size: one entry maps 512 MiB, as qemu requires enough for the size
  } else if (diskFormat === 'iso') {
    if (size < ISO_MIN) throw new Error(`an ISO image needs at least ${ISO_MIN} bytes`);
    const pvd = 32 * 1024;
    bytes[pvd] = 1; // primary volume descriptor
    bytes.write('CD001', pvd + 1, 'latin1');
    bytes.writeUInt32LE(Math.ceil(size / 2048), pvd + 80); // volume space size in blocks
    bytes.writeUInt16LE(2048, pvd + 128); // logical block size
    bytes[pvd + 2048] = 255; // terminator
    bytes.write('CD001', pvd + 2048 + 1, 'latin1');
  } else if (!['raw', 'ami', 'ari', 'aki'].includes(diskFormat)) {
    throw new Error(`no sample content for disk_format ${diskFormat}`);
  }
  return bytes;
}

/** The smallest `imageBytes` size for a disk format. */
export function minImageSize(diskFormat: string): number {
  return diskFormat === 'qcow2' ? QCOW2_MIN : diskFormat === 'iso' ? ISO_MIN : 0;
}

/** A response's body text for assertion messages, without consuming the response. */
export async function peek(response: Response): Promise<string> {
  return `${response.status} ${await response.clone().text()}`;
}

/** The message of an error answer, from Glance's HTML page or from the JSON body. */
export async function errorMessage(response: Response): Promise<string> {
  const text = await response.text();
  if (response.headers.get('content-type')?.startsWith('application/json'))
    return String((JSON.parse(text) as { message: unknown }).message);
  const match = /<\/h1>\n {2}([\s\S]*?)<br \/><br \/>/.exec(text);
  if (!match?.[1]) throw new Error(`not a Glance error page: ${text}`);
  return match[1].replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)));
}

/** Asserts an error answer: status, request id, HTML content type, and the message. */
export async function expectError(
  response: Response,
  status: number,
  message?: string | RegExp,
): Promise<void> {
  expect(response.status, await peek(response)).toBe(status);
  expect(response.headers.get('x-openstack-request-id')).toMatch(/^req-[0-9a-f-]{36}$/);
  expect(response.headers.get('content-type')).toBe('text/html; charset=UTF-8');
  const text = await errorMessage(response);
  if (typeof message === 'string') expect(text).toBe(message);
  else if (message) expect(text).toMatch(message);
}

/**
 * Keys of the objects in the image store under `prefix`: through the real SDK, or (fs) every file
 * under the prefix, partial files of unfinished writes (`<key>.partial`) included.
 */
export async function imageObjects(prefix: string): Promise<string[]> {
  const store = serviceConfig().blobStore;
  if (store.kind === 'fs') {
    const entries = await readdir(store.directory, { recursive: true, withFileTypes: true }).catch(
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return [];
        throw error;
      },
    );
    return entries
      .filter((entry) => entry.isFile())
      .map((entry) => relative(store.directory, join(entry.parentPath, entry.name)).split(sep).join('/'))
      .filter((key) => key.startsWith(prefix))
      .sort();
  }
  // Configured as the service's client is (endpoint, key pair, region).
  const s3 = standInS3();
  try {
    const out = await s3.send(
      new ListObjectsV2Command({ Bucket: serviceConfig().buckets.images, Prefix: prefix }),
    );
    return (out.Contents ?? []).map((o) => o.Key ?? '');
  } finally {
    s3.destroy();
  }
}

/**
 * Writes `body` under `key` in the image store behind the service's back: what someone with
 * access to the bucket (or the directory) can do, or (`partial`) what a server that died
 * mid-upload leaves there (an object on S3, the unfinished `<key>.partial` file on fs).
 */
export async function writeImageObject(key: string, body: Buffer, options: { partial?: boolean } = {}) {
  const store = serviceConfig().blobStore;
  if (store.kind === 'fs') {
    const file = join(store.directory, ...key.split('/')) + (options.partial ? '.partial' : '');
    await mkdir(dirname(file), { recursive: true });
    // The store leaves its files read-only; the owner can still change that.
    await chmod(file, 0o600).catch(() => undefined);
    await writeFile(file, body);
    if (!options.partial) await chmod(file, 0o400);
    return;
  }
  const s3 = standInS3();
  try {
    await s3.send(new PutObjectCommand({ Bucket: serviceConfig().buckets.images, Key: key, Body: body }));
  } finally {
    s3.destroy();
  }
}

/** PUT /file with a chunked body (no Content-Length), written piece by piece. */
export function chunkedUpload(
  t: TestBackend,
  token: string,
  id: string,
  chunks: Buffer[],
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${t.url}/v2/images/${id}/file`, {
      method: 'PUT',
      headers: {
        'x-auth-token': token,
        'content-type': 'application/octet-stream',
        'transfer-encoding': 'chunked',
        ...headers,
      },
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

/**
 * Starts a PUT /file with raw node:http, writes `sent` bytes of the body, then destroys the
 * socket: the client that goes away mid-upload. `framing` picks a too-large Content-Length or
 * chunked encoding.
 */
export function abortedUpload(
  t: TestBackend,
  token: string,
  id: string,
  sent: Buffer,
  framing: { contentLength: number } | 'chunked',
): Promise<void> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {
      'x-auth-token': token,
      'content-type': 'application/octet-stream',
    };
    if (framing === 'chunked') headers['transfer-encoding'] = 'chunked';
    else headers['content-length'] = String(framing.contentLength);
    const req = httpRequest(`${t.url}/v2/images/${id}/file`, { method: 'PUT', headers });
    req.on('response', (res) => reject(new Error(`unexpected answer ${res.statusCode} before the abort`)));
    req.on('error', () => undefined);
    req.write(sent, () => {
      // Give the server time to read what was sent, then vanish.
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 300);
    });
  });
}

/** Polls `probe` until it returns true or `timeoutMs` passes. */
export async function eventually(probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
