/**
 * The one HTTP client of `hangar`: JSON calls parsed with zod, and the two byte streams (upload,
 * ranged download). HTTP errors become CliErrors whose exit code follows the status.
 */
import type { Readable } from 'node:stream';
import type { z } from 'zod';
import { CliError, exitCodeForStatus } from './errors.ts';
import {
  BuildListSchema,
  BuildSchema,
  ErrorBodySchema,
  HistorySchema,
  HostListSchema,
  type Image,
  ImageListSchema,
  ImageSchema,
  InstanceListSchema,
  InstanceSchema,
  MemberListSchema,
  MemberSchema,
  MultipartSessionSchema,
  ReferenceListSchema,
  ReferenceSchema,
  ResolvedReferenceSchema,
  RetentionPolicySchema,
  RetentionRunSchema,
  SnapshotAnswerSchema,
  TaskListSchema,
  TaskSchema,
  UploadInfoSchema,
} from './schemas.ts';

export class ApiError extends CliError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message, exitCodeForStatus(status));
  }
}

/** An image id as Glance makes them; anything else on the command line is a name:tag reference. */
const IMAGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isImageId = (ref: string) => IMAGE_ID.test(ref);

const enc = encodeURIComponent;

/** A token, or how to get one when the first request needs it (a Keystone password login). */
export type TokenSource = string | undefined | (() => Promise<string>);

export class ApiClient {
  private token: Promise<string | undefined> | undefined;

  constructor(
    readonly baseUrl: string,
    private readonly tokenSource: TokenSource,
  ) {}

  private async headers(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    // Asked once per run: every later request reuses the token.
    const source = this.tokenSource;
    this.token ??= typeof source === 'function' ? source() : Promise.resolve(source);
    const token = await this.token;
    return { accept: 'application/json', ...(token ? { 'x-auth-token': token } : {}), ...extra };
  }

  /** fetch, with an unreachable server said in words. */
  async fetch(path: string, init: RequestInit & { duplex?: 'half' } = {}): Promise<Response> {
    const url = /^https?:\/\//.test(path) ? path : `${this.baseUrl.replace(/\/+$/, '')}${path}`;
    const headers = await this.headers(init.headers as Record<string, string>);
    try {
      return await fetch(url, { ...init, headers });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(`Cannot reach ${this.baseUrl}: ${cause?.code ?? cause?.message ?? String(error)}`);
    }
  }

  /** Throws the server's message when the answer is not 2xx. */
  async check(response: Response, what: string): Promise<Response> {
    if (response.ok || (response.status >= 300 && response.status < 400)) return response;
    const text = await response.text();
    let message = text.trim();
    try {
      message = ErrorBodySchema.parse(JSON.parse(text)).message;
    } catch {
      // Not Glance's JSON error body: the text is the message.
    }
    // The server's sentence first; the request after it, for whoever debugs.
    throw new ApiError(
      `${message || response.statusText} (${response.status} from ${what})`,
      response.status,
    );
  }

  async call<T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown): Promise<T> {
    const response = await this.send(method, path, body);
    const text = await response.text();
    const parsed = schema.safeParse(text ? JSON.parse(text) : undefined);
    if (!parsed.success)
      throw new CliError(
        `Unexpected answer to ${method} ${path}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      );
    return parsed.data;
  }

  async send(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<Response> {
    const response = await this.fetch(path, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': contentType } }),
    });
    return this.check(response, `${method} ${path}`);
  }

  // Images (Glance v2).
  listImages = (query: URLSearchParams) => this.call('GET', `/v2/images?${query}`, ImageListSchema);
  showImage = (id: string) => this.call('GET', `/v2/images/${enc(id)}`, ImageSchema);
  createImage = (body: Record<string, unknown>) => this.call('POST', '/v2/images', ImageSchema, body);
  deleteImage = async (id: string) => void (await this.send('DELETE', `/v2/images/${enc(id)}`));
  unprotect = (id: string) =>
    this.call('PATCH', `/v2/images/${enc(id)}`, ImageSchema, [
      { op: 'replace', path: '/protected', value: false },
    ]);

  async uploadImage(id: string, body: Readable, size: number): Promise<void> {
    const response = await this.fetch(`/v2/images/${enc(id)}/file`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'x-openstack-image-size': String(size) },
      body: body as unknown as ReadableStream,
      duplex: 'half',
    });
    await this.check(response, `PUT /v2/images/${id}/file`);
  }

  /**
   * The image's bytes from `offset` on. Streaming servers answer the Range themselves; a server
   * that hands out presigned URLs (AWS) answers 303, and the range goes to the URL it names.
   */
  async downloadImage(id: string, offset: number): Promise<{ response: Response; offset: number }> {
    const path = `/v2/images/${enc(id)}/file`;
    const range: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    let response = await this.fetch(path, { headers: range, redirect: 'manual' });
    // A redirecting server refuses ranges on its own URL: ask for the location, then range there.
    if (response.status === 400 && offset > 0) {
      await response.body?.cancel();
      response = await this.fetch(path, { redirect: 'manual' });
    }
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      response = await fetch(location, { headers: range });
    }
    await this.check(response, `GET ${path}`);
    if (offset > 0 && response.status !== 206) return { response, offset: 0 };
    return { response, offset };
  }

  // References (Hangar's /v1).
  resolveReference = (ref: string) => this.call('GET', `/v1/references/${enc(ref)}`, ResolvedReferenceSchema);
  listReferences = (namespace?: string) =>
    this.call('GET', `/v1/references${namespace ? `?namespace=${enc(namespace)}` : ''}`, ReferenceListSchema);
  createReference = (reference: string, imageId: string) =>
    this.call('POST', '/v1/references', ReferenceSchema, { reference, image_id: imageId });
  moveReference = (ref: string, imageId: string, expect?: string) =>
    this.call('POST', `/v1/references/${enc(ref)}/move`, ReferenceSchema, {
      image_id: imageId,
      ...(expect ? { expect } : {}),
    });
  rollbackReference = (ref: string, to?: string) =>
    this.call('POST', `/v1/references/${enc(ref)}/rollback`, ReferenceSchema, to ? { to } : {});
  deleteReference = async (ref: string) => void (await this.send('DELETE', `/v1/references/${enc(ref)}`));
  history = (ref: string) => this.call('GET', `/v1/references/${enc(ref)}/history`, HistorySchema);
  publish = (ref: string, body: Record<string, unknown>) =>
    this.call('POST', `/v1/references/${enc(ref)}/publish`, TaskSchema, body);
  publication = (id: string) => this.call('GET', `/v1/publications/${enc(id)}`, TaskSchema);
  startBuild = (body: Record<string, unknown>) => this.call('POST', '/v1/builds', BuildSchema, body);
  build = (id: string) => this.call('GET', `/v1/builds/${enc(id)}`, BuildSchema);
  builds = (target: string) =>
    this.call('GET', `/v1/builds?target=${encodeURIComponent(target)}`, BuildListSchema);
  retention = (name: string) => this.call('GET', `/v1/names/${enc(name)}/retention`, RetentionPolicySchema);
  setRetention = (name: string, keep: number, graceSeconds: number) =>
    this.call('PUT', `/v1/names/${enc(name)}/retention`, RetentionPolicySchema, {
      keep,
      grace_seconds: graceSeconds,
    });
  applyRetention = (name: string) =>
    this.call('POST', `/v1/names/${enc(name)}/retention/apply`, RetentionRunSchema);

  // Interoperable import (Glance v2) and the image's tasks.
  importImage = async (id: string, body: Record<string, unknown>) =>
    void (await this.send('POST', `/v2/images/${enc(id)}/import`, body));
  imageTasks = (id: string) => this.call('GET', `/v2/images/${enc(id)}/tasks`, TaskListSchema);

  /**
   * How the service wants image bytes: `put` (stream PUT /file) or `multipart` (presigned parts,
   * where the API cannot carry a large body, as on AWS). A service without GET /v2/info/upload
   * (Glance, an older Hangar) streams.
   */
  async uploadMethod(): Promise<'put' | 'multipart'> {
    try {
      const info = await this.call('GET', '/v2/info/upload', UploadInfoSchema);
      const known = info['upload-methods'].value.find(
        (method): method is 'put' | 'multipart' => method === 'put' || method === 'multipart',
      );
      return known ?? 'put';
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return 'put';
      throw error;
    }
  }

  // Presigned multipart uploads (Hangar's, for services that do not stream PUT /file).
  startMultipart = (id: string, size: number, partSize?: number) =>
    this.call('POST', `/v2/images/${enc(id)}/multipart-upload`, MultipartSessionSchema, {
      size,
      ...(partSize ? { part_size: partSize } : {}),
    });
  completeMultipart = async (id: string, uploadId: string, parts: { part_number: number; etag: string }[]) =>
    void (await this.send('POST', `/v2/images/${enc(id)}/multipart-upload/complete`, {
      upload_id: uploadId,
      parts,
    }));
  abortMultipart = async (id: string, uploadId: string) =>
    void (await this.send('POST', `/v2/images/${enc(id)}/multipart-upload/abort`, { upload_id: uploadId }));

  // Hosts (admins).
  listHosts = () => this.call('GET', '/v1/hosts', HostListSchema);

  // Members (Glance v2 sharing).
  addMember = (id: string, member: string) =>
    this.call('POST', `/v2/images/${enc(id)}/members`, MemberSchema, { member });
  removeMember = async (id: string, member: string) =>
    void (await this.send('DELETE', `/v2/images/${enc(id)}/members/${enc(member)}`));
  setMemberStatus = (id: string, member: string, status: 'accepted' | 'rejected' | 'pending') =>
    this.call('PUT', `/v2/images/${enc(id)}/members/${enc(member)}`, MemberSchema, { status });
  members = (id: string) => this.call('GET', `/v2/images/${enc(id)}/members`, MemberListSchema);

  // Instances (Hangar's /v1).
  createInstance = (body: Record<string, unknown>) =>
    this.call('POST', '/v1/instances', InstanceSchema, body);
  listInstances = (query: URLSearchParams) => this.call('GET', `/v1/instances?${query}`, InstanceListSchema);
  showInstance = (id: string) => this.call('GET', `/v1/instances/${enc(id)}`, InstanceSchema);
  instanceAction = (id: string, action: string, body?: Record<string, unknown>) =>
    this.call('POST', `/v1/instances/${enc(id)}/actions/${enc(action)}`, InstanceSchema, body);
  snapshotInstance = (id: string, body: Record<string, unknown>) =>
    this.call('POST', `/v1/instances/${enc(id)}/actions/snapshot`, SnapshotAnswerSchema, body);

  /** An image by id, or the image a name:tag reference resolves to. */
  async image(ref: string): Promise<Image> {
    if (isImageId(ref)) return this.showImage(ref);
    return (await this.resolveReference(ref)).image;
  }
}
