/**
 * The agent's side of the hosts/jobs HTTP contract, and the image download (Glance GET /v2/images/{id}/file).
 * Every response body is parsed with zod; a 409 on a lease call becomes LeaseLostError.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { SAFE_ID } from './config.ts';
import { LeaseLostError, ServiceError } from './errors.ts';
import type { ImageSource } from './image-cache.ts';

export const JOB_KINDS = [
  'build',
  'start',
  'stop',
  'sleep',
  'wake',
  'reboot',
  'destroy',
  'upgrade',
  'rollback',
  'snapshot',
] as const;
export type JobKind = (typeof JOB_KINDS)[number];

export const ImageRefSchema = z.object({
  id: z.string().regex(SAFE_ID),
  disk_format: z.string(),
  size: z.number().int().nonnegative().nullish(),
  os_hash_algo: z.literal('sha512'),
  os_hash_value: z.string().regex(/^[0-9a-fA-F]{128}$/),
});

/**
 * An image as the Glance API renders it (GET /v2/images/{id}, and the `image` of a resolved reference), reduced
 * to what the cache needs. Glance renders unset attributes as null; a queued image has no format or hash yet.
 */
export const ServiceImageSchema = z
  .object({
    id: z.string().regex(SAFE_ID),
    status: z.string(),
    disk_format: z.string().nullish(),
    size: z.number().int().nonnegative().nullish(),
    os_hash_algo: z.string().nullish(),
    os_hash_value: z.string().nullish(),
    checksum: z.string().nullish(),
  })
  .loose();
export type ServiceImage = z.infer<typeof ServiceImageSchema>;

/** GET /v1/references/{name:tag}: the reference it resolved to (own namespace, then public) with its image. */
export const ResolvedReferenceSchema = z
  .object({
    reference: z.string(),
    namespace: z.string(),
    image_id: z.string(),
    image: ServiceImageSchema,
  })
  .loose();
export type ResolvedReference = z.infer<typeof ResolvedReferenceSchema>;

/** What the prefetcher needs from the service: null means 404 (no such image, or nothing to resolve). */
export interface ImageResolver {
  getImage(imageId: string, signal?: AbortSignal): Promise<ServiceImage | null>;
  resolveReference(reference: string, signal?: AbortSignal): Promise<ResolvedReference | null>;
}

export const JobSchema = z.object({
  id: z.string().regex(SAFE_ID),
  kind: z.enum(JOB_KINDS),
  lease_token: z.string().min(1),
  lease_expires_at: z.string(),
  attempt: z.number().int().nonnegative(),
  instance: z.object({
    id: z.string().regex(SAFE_ID),
    name: z.string(),
    hostname: z.string().min(1).max(253),
    vcpus: z.number().int().positive(),
    ram_mb: z.number().int().min(16),
    disk_gb: z.number().int().nonnegative(),
    user_data: z.string().nullable(),
    // The instance's own boot check (a publish gate's marker), over the agent's boot_marker.
    boot_check: z
      .object({ marker: z.string().min(1).max(200), timeout_seconds: z.number().int().positive() })
      .nullish(),
    // Only a build needs the image; other kinds tolerate its absence.
    image: ImageRefSchema.nullish(),
    // An upgrade's new image; the image of the previous disk a rollback returns to.
    upgrade_image: ImageRefSchema.nullish(),
    previous_image: ImageRefSchema.nullish(),
  }),
  // A snapshot job's target image and the grant that lets this host upload that image's data only.
  snapshot: z
    .object({
      image_id: z.string().regex(SAFE_ID),
      upload: z.enum(['put', 'multipart']),
      upload_grant: z.string().min(1).max(512),
    })
    .nullish(),
});
export type Job = z.infer<typeof JobSchema>;

/** POST /v2/images/{id}/multipart-upload's answer (docs/import-export.md), as far as the agent uses it. */
const MultipartSessionSchema = z.object({
  upload_id: z.string().min(1),
  part_size: z.number().int().positive(),
  parts: z.array(z.object({ part_number: z.number().int().positive(), url: z.string().url() })).min(1),
});

export const ServiceInstanceSchema = z.object({ id: z.string(), stage: z.string() }).loose();
export type ServiceInstance = z.infer<typeof ServiceInstanceSchema>;

export type ObservedState = 'running' | 'shutoff' | 'saved' | 'missing';

export interface HostRegistration {
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  architecture: string;
  hypervisor_type: 'qemu' | 'kvm';
  hypervisor_version: number;
}

export interface SnapshotReport {
  size: number;
  checksum: string;
  os_hash_value: string;
  /** How long the guest was paused (null: it was not running). */
  paused_ms: number | null;
}

export interface JobResult {
  console_log?: string;
  domain_uuid?: string;
  snapshot?: SnapshotReport;
}

/** What was sent, as the agent counted and hashed it on the way out. */
export interface SentDigests {
  size: number;
  md5: string;
  sha512: string;
}

/** Snapshot uploads: the service's own upload path, with the job's grant. */
export interface ImageUploader {
  /** PUT /v2/images/{id}/file streaming `path`, with X-Hangar-Upload-Grant. */
  uploadImageFile(imageId: string, grant: string, path: string, signal: AbortSignal): Promise<SentDigests>;
  /**
   * The presigned multipart path (where the API cannot carry the body): start with the grant, PUT
   * each part to its URL, complete with the grant, then wait for the import to activate the image.
   */
  uploadImageMultipart(
    imageId: string,
    grant: string,
    path: string,
    signal: AbortSignal,
    activeTimeoutMs?: number,
  ): Promise<SentDigests>;
  getImage(imageId: string, signal?: AbortSignal): Promise<ServiceImage | null>;
}

/** What the worker and reconcile need from the service (the e2e/bench fakes implement the HTTP side). */
export interface ServicePort extends ImageSource {
  registerHost(body: HostRegistration, signal?: AbortSignal): Promise<void>;
  heartbeatHost(signal?: AbortSignal): Promise<void>;
  claimJob(
    leaseSeconds: number,
    signal?: AbortSignal,
  ): Promise<Job | null | { invalid: unknown; error: string }>;
  heartbeatJob(jobId: string, leaseToken: string, signal?: AbortSignal): Promise<string>;
  completeJob(jobId: string, leaseToken: string, result: JobResult, signal?: AbortSignal): Promise<void>;
  failJob(jobId: string, leaseToken: string, reason: string, signal?: AbortSignal): Promise<void>;
  listInstances(signal?: AbortSignal): Promise<ServiceInstance[]>;
  reportObserved(
    instanceId: string,
    state: ObservedState,
    reason?: string,
    signal?: AbortSignal,
  ): Promise<void>;
}

export interface ServiceClientOptions {
  baseUrl: string;
  hostId: string;
  token: string;
  timeoutMs?: number;
}

export class ServiceClient implements ServicePort, ImageResolver, ImageUploader {
  private readonly timeoutMs: number;

  constructor(private readonly options: ServiceClientOptions) {
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  private hostPath(suffix = ''): string {
    return `/v1/hosts/${encodeURIComponent(this.options.hostId)}${suffix}`;
  }

  private async request(
    method: string,
    path: string,
    options: { body?: unknown; signal?: AbortSignal; timeoutMs?: number; stream?: boolean } = {},
  ): Promise<Response> {
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const headers: Record<string, string> = {
      'X-Auth-Token': this.options.token,
      Accept: 'application/json',
    };
    if (options.body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(`${this.options.baseUrl}${path}`, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal,
      });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      throw new ServiceError(
        `${method} ${path}: ${timeout.aborted ? 'timed out' : 'request failed'}`,
        undefined,
        {
          cause: error,
        },
      );
    }
    return response;
  }

  private async expect(response: Response, method: string, path: string, ok: number[]): Promise<void> {
    if (ok.includes(response.status)) return;
    const text = await response.text().catch(() => '');
    throw new ServiceError(
      `${method} ${path}: HTTP ${response.status} ${text.slice(0, 300)}`,
      response.status,
    );
  }

  private async json(response: Response, method: string, path: string): Promise<unknown> {
    try {
      return await response.json();
    } catch (error) {
      throw new ServiceError(`${method} ${path}: response is not JSON`, response.status, { cause: error });
    }
  }

  async registerHost(body: HostRegistration, signal?: AbortSignal): Promise<void> {
    const path = this.hostPath();
    const response = await this.request('PUT', path, { body, signal });
    await this.expect(response, 'PUT', path, [200, 201]);
    await response.body?.cancel();
  }

  async heartbeatHost(signal?: AbortSignal): Promise<void> {
    const path = this.hostPath('/heartbeat');
    const response = await this.request('POST', path, { signal });
    await this.expect(response, 'POST', path, [200, 204]);
    await response.body?.cancel();
  }

  /** null = no work (204). A job that fails the schema is handed back raw so the worker can fail it. */
  async claimJob(
    leaseSeconds: number,
    signal?: AbortSignal,
  ): Promise<Job | null | { invalid: unknown; error: string }> {
    const path = this.hostPath('/jobs/claim');
    const response = await this.request('POST', path, { body: { lease_seconds: leaseSeconds }, signal });
    if (response.status === 204) {
      await response.body?.cancel();
      return null;
    }
    await this.expect(response, 'POST', path, [200]);
    const body = await this.json(response, 'POST', path);
    const raw = (body as { job?: unknown } | null)?.job;
    const parsed = JobSchema.safeParse(raw);
    if (!parsed.success) return { invalid: raw, error: z.prettifyError(parsed.error) };
    return parsed.data;
  }

  async heartbeatJob(jobId: string, leaseToken: string, signal?: AbortSignal): Promise<string> {
    const path = `/v1/jobs/${encodeURIComponent(jobId)}/heartbeat`;
    const response = await this.request('POST', path, { body: { lease_token: leaseToken }, signal });
    if (response.status === 409) {
      await response.body?.cancel();
      throw new LeaseLostError(`job ${jobId}: lease lost`);
    }
    await this.expect(response, 'POST', path, [200]);
    const body = z
      .object({ lease_expires_at: z.string() })
      .safeParse(await this.json(response, 'POST', path));
    if (!body.success) throw new ServiceError(`POST ${path}: unexpected body`, 200);
    return body.data.lease_expires_at;
  }

  async completeJob(
    jobId: string,
    leaseToken: string,
    result: JobResult,
    signal?: AbortSignal,
  ): Promise<void> {
    const path = `/v1/jobs/${encodeURIComponent(jobId)}/complete`;
    const response = await this.request('POST', path, { body: { lease_token: leaseToken, result }, signal });
    if (response.status === 409) {
      await response.body?.cancel();
      throw new LeaseLostError(`job ${jobId}: lease lost before completion`);
    }
    await this.expect(response, 'POST', path, [200, 204]);
    await response.body?.cancel();
  }

  async failJob(jobId: string, leaseToken: string, reason: string, signal?: AbortSignal): Promise<void> {
    const path = `/v1/jobs/${encodeURIComponent(jobId)}/fail`;
    const response = await this.request('POST', path, { body: { lease_token: leaseToken, reason }, signal });
    if (response.status === 409) {
      await response.body?.cancel();
      throw new LeaseLostError(`job ${jobId}: lease lost before failing it`);
    }
    await this.expect(response, 'POST', path, [200, 204]);
    await response.body?.cancel();
  }

  async listInstances(signal?: AbortSignal): Promise<ServiceInstance[]> {
    const path = this.hostPath('/instances');
    const response = await this.request('GET', path, { signal });
    await this.expect(response, 'GET', path, [200]);
    const parsed = z
      .object({ instances: z.array(ServiceInstanceSchema) })
      .safeParse(await this.json(response, 'GET', path));
    if (!parsed.success)
      throw new ServiceError(`GET ${path}: unexpected body: ${z.prettifyError(parsed.error)}`, 200);
    return parsed.data.instances;
  }

  async reportObserved(
    instanceId: string,
    state: ObservedState,
    reason?: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const path = this.hostPath(`/instances/${encodeURIComponent(instanceId)}/observed`);
    const response = await this.request('POST', path, {
      body: reason ? { state, reason } : { state },
      signal,
    });
    await this.expect(response, 'POST', path, [200, 204]);
    await response.body?.cancel();
  }

  private async getParsed<T>(path: string, schema: z.ZodType<T>, signal?: AbortSignal): Promise<T | null> {
    const response = await this.request('GET', path, { signal });
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    await this.expect(response, 'GET', path, [200]);
    const parsed = schema.safeParse(await this.json(response, 'GET', path));
    if (!parsed.success)
      throw new ServiceError(`GET ${path}: unexpected body: ${z.prettifyError(parsed.error)}`, 200);
    return parsed.data;
  }

  /** GET /v2/images/{id} (Glance); null on 404. */
  getImage(imageId: string, signal?: AbortSignal): Promise<ServiceImage | null> {
    return this.getParsed(`/v2/images/${encodeURIComponent(imageId)}`, ServiceImageSchema, signal);
  }

  /**
   * GET /v1/references/{name:tag}; null on 404. The caller passes a validated `name:tag`, whose characters
   * are all allowed in a path segment, so it is sent as it is (as the API documents it).
   */
  resolveReference(reference: string, signal?: AbortSignal): Promise<ResolvedReference | null> {
    if (!/^[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$/.test(reference))
      return Promise.reject(
        new ServiceError(`not a name:tag reference: ${JSON.stringify(reference)}`, undefined),
      );
    return this.getParsed(`/v1/references/${reference}`, ResolvedReferenceSchema, signal);
  }

  /**
   * Streams the file to PUT /v2/images/{id}/file (no buffering: fetch with a stream body), hashing
   * every chunk as it leaves, so the caller can compare with what the service computed.
   */
  async uploadImageFile(
    imageId: string,
    grant: string,
    path: string,
    signal: AbortSignal,
  ): Promise<SentDigests> {
    const urlPath = `/v2/images/${encodeURIComponent(imageId)}/file`;
    const { size } = await stat(path);
    const md5 = createHash('md5');
    const sha512 = createHash('sha512');
    let sent = 0;
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        md5.update(chunk);
        sha512.update(chunk);
        sent += chunk.length;
        done(null, chunk);
      },
    });
    const source = createReadStream(path).pipe(hashing);
    let response: Response;
    try {
      response = await fetch(`${this.options.baseUrl}${urlPath}`, {
        method: 'PUT',
        headers: {
          'X-Auth-Token': this.options.token,
          'X-Hangar-Upload-Grant': grant,
          'Content-Type': 'application/octet-stream',
          'Content-Length': String(size),
          Accept: 'application/json',
        },
        body: Readable.toWeb(source) as unknown as ReadableStream<Uint8Array>,
        // Node's fetch streams a request body only half-duplex.
        duplex: 'half',
        signal,
      } as RequestInit & { duplex: 'half' });
    } catch (error) {
      source.destroy();
      throw new ServiceError(`PUT ${urlPath}: request failed`, undefined, { cause: error });
    }
    await this.expect(response, 'PUT', urlPath, [204]);
    await response.body?.cancel();
    return { size: sent, md5: md5.digest('hex'), sha512: sha512.digest('hex') };
  }

  async uploadImageMultipart(
    imageId: string,
    grant: string,
    path: string,
    signal: AbortSignal,
    activeTimeoutMs = 30 * 60_000,
  ): Promise<SentDigests> {
    const base = `/v2/images/${encodeURIComponent(imageId)}/multipart-upload`;
    const { size } = await stat(path);
    const started = await this.grantedJson(base, grant, { size }, [201], signal);
    const session = MultipartSessionSchema.safeParse(started);
    if (!session.success)
      throw new ServiceError(`POST ${base}: unexpected body: ${z.prettifyError(session.error)}`, 201);
    const { upload_id, part_size, parts } = session.data;
    const md5 = createHash('md5');
    const sha512 = createHash('sha512');
    let sent = 0;
    try {
      const done: Array<{ part_number: number; etag: string }> = [];
      const file = await open(path, 'r');
      try {
        for (const part of parts) {
          // One part in memory at a time (8 MiB and up), hashed in order as it goes out.
          const length = Math.min(part_size, size - (part.part_number - 1) * part_size);
          const chunk = Buffer.alloc(Math.max(0, length));
          const { bytesRead } = await file.read(chunk, 0, chunk.length, (part.part_number - 1) * part_size);
          const bytes = chunk.subarray(0, bytesRead);
          md5.update(bytes);
          sha512.update(bytes);
          sent += bytes.length;
          const response = await fetch(part.url, { method: 'PUT', body: bytes, signal });
          if (!response.ok)
            throw new ServiceError(`PUT part ${part.part_number}: HTTP ${response.status}`, response.status);
          await response.body?.cancel();
          const etag = response.headers.get('etag');
          if (!etag) throw new ServiceError(`PUT part ${part.part_number}: no ETag`, response.status);
          done.push({ part_number: part.part_number, etag });
        }
      } finally {
        await file.close();
      }
      await this.grantedJson(`${base}/complete`, grant, { upload_id, parts: done }, [202], signal);
    } catch (error) {
      await this.grantedJson(`${base}/abort`, grant, { upload_id }, [204]).catch(() => undefined);
      throw error;
    }
    // The upload's object starts the import (digests, format inspection, activation): wait for it.
    const deadline = Date.now() + activeTimeoutMs;
    for (;;) {
      const image = await this.getImage(imageId, signal);
      if (image?.status === 'active') break;
      if (!image || image.status === 'killed' || image.status === 'deleted')
        throw new ServiceError(
          `image ${imageId} is ${image?.status ?? 'gone'} after the multipart upload`,
          undefined,
        );
      if (Date.now() > deadline)
        throw new ServiceError(
          `image ${imageId} still ${image.status} ${activeTimeoutMs} ms after the upload`,
          undefined,
        );
      await sleep(500, undefined, { signal });
    }
    return { size: sent, md5: md5.digest('hex'), sha512: sha512.digest('hex') };
  }

  private async grantedJson(
    path: string,
    grant: string,
    body: unknown,
    ok: number[],
    signal?: AbortSignal,
  ): Promise<unknown> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let response: Response;
    try {
      response = await fetch(`${this.options.baseUrl}${path}`, {
        method: 'POST',
        headers: {
          'X-Auth-Token': this.options.token,
          'X-Hangar-Upload-Grant': grant,
          'Content-Type': 'application/json',
          Accept: 'application/json',
        },
        body: JSON.stringify(body),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (error) {
      throw new ServiceError(`POST ${path}: request failed`, undefined, { cause: error });
    }
    await this.expect(response, 'POST', path, ok);
    const text = await response.text();
    return text ? (JSON.parse(text) as unknown) : undefined;
  }

  /** Streams GET /v2/images/{id}/file; the download's own signal (not the short request timeout) bounds it. */
  async open(imageId: string, signal: AbortSignal): Promise<{ body: Readable; contentLength?: number }> {
    const path = `/v2/images/${encodeURIComponent(imageId)}/file`;
    let response: Response;
    try {
      response = await fetch(`${this.options.baseUrl}${path}`, {
        headers: { 'X-Auth-Token': this.options.token, Accept: 'application/octet-stream' },
        signal,
      });
    } catch (error) {
      throw new ServiceError(`GET ${path}: request failed`, undefined, { cause: error });
    }
    await this.expect(response, 'GET', path, [200]);
    if (!response.body) throw new ServiceError(`GET ${path}: empty body`, response.status);
    const length = response.headers.get('content-length');
    return {
      body: Readable.fromWeb(response.body as unknown as WebReadableStream<Uint8Array>),
      contentLength: length === null ? undefined : Number(length),
    };
  }
}
