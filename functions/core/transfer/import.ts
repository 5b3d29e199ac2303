/**
 * Image import: every way of bringing image data in except PUT /file ends in the same import
 * state machine (state-machines/import.asl.json), whose steps are the methods at the bottom of
 * this class. The ways in:
 *   - S3 upload: an object written to the upload bucket (see parseUploadKey for the key
 *     convention), including Hangar's presigned multipart uploads; the S3 trigger calls onUpload.
 *   - glance-direct: PUT /stage into the staging bucket, then POST /import.
 *   - web-download: POST /import with an http(s) URL, fetched under the SSRF policy.
 *   - the legacy tasks API (`POST /v2/tasks` type import), a web-download into a new image.
 *
 * The image is locked for one import at a time by `os_glance_import_task` (as Glance does), set
 * with a conditional write. A failed import puts the image back to `queued` with the reason in
 * `os_glance_failed_import` and on the task, and removes whatever blob it had written.
 */
import { randomUUID } from 'node:crypto';
import {
  type FormatCheckOptions,
  type FormatDecision,
  FormatInspector,
  type InspectionResult,
  inspectAndCheck,
} from '../data/format-inspector.ts';
import { BLOCK_SIZE, rechunk } from '../data/image-data.ts';
import type { BlobStore, ObjectRef, ObjectStore, OpenedObject, StreamDigester } from '../data/ports.ts';
import { writable } from '../images/access.ts';
import { FAILED_UPLOAD, type ImageRecord } from '../images/image.ts';
import type { ImagesService } from '../images/images-service.ts';
import { assertLeaseHeld, LeaseHeartbeat, leaseExpiry, leaseLostError } from '../images/lease.ts';
import type { ImageRepository } from '../images/ports.ts';
import { requireFormatsForData, transitionImage } from '../images/status.ts';
import {
  BadRequestError,
  ConflictError,
  HangarError,
  NotFoundError,
  StaleWriteError,
  TooLargeError,
} from '../kernel/errors.ts';
import { makePrincipal, type Principal } from '../kernel/principal.ts';
import { isoSeconds } from '../kernel/time.ts';
import { advanceTask } from '../tasks/advance.ts';
import type { TaskRepository, WorkflowStarter } from '../tasks/ports.ts';
import { isFinished, newTask, type TaskRecord, transitionTask } from '../tasks/task.ts';
import type { EventMarkers, MultipartUploads, WebFetcher } from './ports.ts';
import { UrlRefused } from './url-filter.ts';

export const IMPORT_METHODS = ['glance-direct', 'web-download'] as const;
export type ImportMethod = (typeof IMPORT_METHODS)[number];

export const IMPORT_LOCK = 'os_glance_import_task';
export const FAILED_IMPORT = 'os_glance_failed_import';
export const IMPORTING_TO_STORES = 'os_glance_importing_to_stores';
/** Glance lets a lock be taken over after an hour without progress. */
export const LOCK_STALE_MS = 60 * 60 * 1000;

/** Imports are started by the service itself (S3 events, task steps): it acts as an admin. */
export const SYSTEM = makePrincipal('', 'hangar', ['admin']);

export type ImportSource =
  | { kind: 's3'; bucket: string; key: string; delete: boolean }
  | { kind: 'url'; uri: string };

/** The import state machine's input; every step receives it (plus what earlier steps added). */
export interface ImportInput {
  task_id: string;
  image_id: string;
  source: ImportSource;
}

export interface CopyResult {
  blob_key: string;
  size: number;
  /** null when the content is not the declared disk_format and the format match is off. */
  virtual_size: number | null;
  checksum: string;
  os_hash_algo: 'sha512';
  os_hash_value: string;
  /** The format the inspector recognised. */
  format: string;
}

/** How Step Functions hands a caught error on: Error is the error name, Cause its message or a Lambda error JSON. */
export interface StepError {
  Error?: string;
  Cause?: string;
}

/** An S3 ObjectCreated record, decoded. */
export interface UploadEvent {
  bucket: string;
  key: string;
  etag?: string;
  sequencer?: string;
  versionId?: string;
  requestId?: string;
}

/**
 * Key convention of the upload bucket:
 *   images/<image id>[/<any name>]  data for an existing, queued image (Hangar's presigned
 *                                   multipart uploads write images/<image id>);
 *   new/<any name>                  a new image, described by the object's user metadata:
 *                                   owner (required), name, disk-format, container-format
 *                                   (default bare), visibility, min-disk, min-ram, tags
 *                                   (comma-separated), id, and property-<key> for extra properties.
 * Anything else is ignored.
 */
export function parseUploadKey(key: string): { kind: 'existing'; imageId: string } | { kind: 'new' } | null {
  const existing = /^images\/([0-9a-fA-F-]{36})(?:\/.*)?$/s.exec(key);
  if (existing) return { kind: 'existing', imageId: (existing[1] as string).toLowerCase() };
  if (/^new\/./s.test(key)) return { kind: 'new' };
  return null;
}

/** The create body (POST /v2/images shape) an upload's metadata describes; the owner comes apart. */
export function createBodyFromMetadata(metadata: Record<string, string>): {
  owner: string;
  body: Record<string, unknown>;
} {
  const owner = metadata.owner;
  if (!owner) throw new BadRequestError('An upload under new/ needs the object metadata "owner".');
  const body: Record<string, unknown> = { container_format: 'bare' };
  for (const [key, value] of Object.entries(metadata)) {
    if (key === 'owner') continue;
    if (key === 'name' || key === 'visibility' || key === 'id') body[key] = value;
    else if (key === 'disk-format') body.disk_format = value;
    else if (key === 'container-format') body.container_format = value;
    else if (key === 'min-disk' || key === 'min-ram') {
      if (!/^\d+$/.test(value))
        throw new BadRequestError(`Upload metadata ${key} must be a non-negative integer.`);
      body[key.replace('-', '_')] = Number(value);
    } else if (key === 'tags')
      body.tags = value
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean);
    else if (key.startsWith('property-') && key.length > 'property-'.length) body[key.slice(9)] = value;
  }
  return { owner, body };
}

/** A readable reason from a caught step error (local runs give the message; Lambda a JSON envelope). */
export function describeStepError(error: StepError | undefined): string {
  if (!error) return 'The import failed.';
  const cause = error.Cause ?? '';
  let message = cause;
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    if (parsed && typeof parsed.errorMessage === 'string') message = parsed.errorMessage;
  } catch {
    // Not JSON: the cause is the message itself.
  }
  if (error.Error === 'States.Timeout') return 'The import took longer than its step may run.';
  return message || error.Error || 'The import failed.';
}

export interface ImportServiceDeps {
  repo: ImageRepository;
  images: ImagesService;
  tasks: TaskRepository;
  workflows: WorkflowStarter;
  markers: EventMarkers;
  /** The images bucket: where imported data ends up. */
  blobs: BlobStore;
  imagesBucket: string;
  /** The staging bucket's objects (glance-direct), written through this store. */
  staging: BlobStore;
  stagingBucket: string;
  uploadsBucket: string;
  objects: ObjectStore;
  multipart: MultipartUploads;
  fetcher: WebFetcher;
  digester: () => StreamDigester;
  sharedBlock: (size: number) => Buffer;
  sizeCap: number;
  /** Glance's require_image_format_match (default true): content must be the declared disk_format. */
  requireFormatMatch?: boolean;
  taskTtlHours: number;
  uploadUrlSeconds: number;
  /** HANGAR_LEASE_SECONDS, in milliseconds (default a minute). */
  leaseMs?: number;
  clock?: () => Date;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Part count cap for presigned uploads: keeps the answer (one URL a part) well under Lambda's 6 MB. */
const MAX_UPLOAD_PARTS = 1000;

export class ImportService {
  private readonly clock: () => Date;
  private readonly leaseMs: number;

  constructor(private readonly deps: ImportServiceDeps) {
    this.clock = deps.clock ?? (() => new Date());
    this.leaseMs = deps.leaseMs ?? 60_000;
  }

  private formatCheck(): FormatCheckOptions {
    return { requireMatch: this.deps.requireFormatMatch ?? true };
  }

  // -------------------------------------------------------------------------------------------
  // glance-direct staging

  /** PUT /stage: queued -> uploading, the body into the staging bucket, the size onto the image. */
  async stage(
    principal: Principal,
    id: string,
    body: AsyncIterable<Buffer>,
    /** contentLength: the request's, when the body is not chunked (one streamed PUT, no parts). */
    options: { declaredSize?: string; contentLength?: string },
  ): Promise<void> {
    const declared = parseDeclaredSize(options.declaredSize, this.deps.sizeCap);
    const key = stagingKey(id);
    const holder = randomUUID();
    await this.deps.images.mutate(principal, id, (current) => {
      if (current.properties[IMPORT_LOCK])
        throw new ConflictError(`Image ${id} has an import in progress; it cannot be staged now.`);
      const now = this.clock();
      return {
        ...transitionImage(current, 'uploading', now),
        lease: {
          holder,
          kind: 'stage',
          expires_at: leaseExpiry(now, this.leaseMs),
          source: { bucket: this.deps.stagingBucket, key },
        },
      };
    });
    const heartbeat = new LeaseHeartbeat(this.deps.repo, id, holder, this.leaseMs, this.clock).start();
    let size = 0;
    try {
      // A stage that died before its clean-up may have left an object behind.
      await this.deps.staging.delete(key);
      const length =
        options.contentLength !== undefined && /^\d+$/.test(options.contentLength)
          ? Number(options.contentLength)
          : undefined;
      await this.deps.staging.put(
        key,
        rechunk(body, BLOCK_SIZE, this.deps.sharedBlock),
        {
          onBlock: (block) => {
            heartbeat.check();
            size += block.length;
            if (size > this.deps.sizeCap) throw sizeCapError(this.deps.sizeCap);
            if (declared !== undefined && size > declared) throw sizeMismatch(declared, size);
          },
        },
        length,
      );
      if (declared !== undefined && size !== declared) throw sizeMismatch(declared, size);
      await heartbeat.stop();
      // Glance shows the staged size while the image is uploading (transcript #210). The data is
      // complete: the lease ends, and the image waits in `uploading` for POST /import, as in Glance.
      await this.deps.images.mutate(SYSTEM, id, (current) => {
        assertLeaseHeld(current, id, holder);
        const { lease: _done, ...rest } = current;
        const { [FAILED_UPLOAD]: _cleared, ...properties } = rest.properties;
        return { ...rest, properties, size, updated_at: isoSeconds(this.clock()) };
      });
    } catch (error) {
      await heartbeat.stop();
      await this.deps.staging.delete(key).catch(() => undefined);
      // Recovered or deleted under us: that is the answer, not whatever the store then said.
      if (!(error instanceof HangarError)) {
        const fresh = await this.deps.repo.get(id).catch(() => undefined);
        if (fresh !== undefined && fresh?.lease?.holder !== holder) throw leaseLostError(id, fresh?.status);
      }
      await this.deps.images
        .mutate(SYSTEM, id, (current) =>
          current.status === 'uploading' &&
          !current.properties[IMPORT_LOCK] &&
          current.lease?.holder === holder
            ? transitionImage(current, 'queued', this.clock())
            : null,
        )
        .catch(() => undefined);
      throw error;
    }
  }

  // -------------------------------------------------------------------------------------------
  // POST /v2/images/{id}/import

  async requestImport(
    principal: Principal,
    id: string,
    body: unknown,
    requestId: string,
  ): Promise<TaskRecord> {
    const method = parseImportRequest(body);
    const image = writable(await this.deps.repo.get(id), id, principal);
    let source: ImportSource;
    if (method.name === 'web-download') {
      await this.vetUri(method.uri, 'web-download');
      source = { kind: 'url', uri: method.uri as string };
    } else {
      source = { kind: 's3', bucket: this.deps.stagingBucket, key: stagingKey(id), delete: true };
    }
    assertImportable(image, method.name);
    const task = newTask(
      {
        type: 'api_image_import',
        owner: image.owner ?? principal.project,
        user_id: principal.user,
        request_id: requestId,
        image_id: id,
        input: { image_id: id, import_req: { method: method.raw }, backend: [null] },
      },
      this.clock(),
    );
    await this.lock(principal, id, task.id, source, (current) => assertImportable(current, method.name));
    return this.launch(task, source);
  }

  /** The legacy tasks-API import: a new image from `image_properties`, downloaded from `import_from`. */
  async legacyImport(principal: Principal, input: unknown, requestId: string): Promise<TaskRecord> {
    if (!isObject(input)) throw new BadRequestError('Input to the import task must be an object.');
    const uri = input.import_from;
    await this.vetUri(uri, 'legacy import task');
    const properties = input.image_properties ?? {};
    const image = await this.deps.images.create(principal, properties);
    const task = newTask(
      {
        type: 'import',
        owner: principal.project,
        user_id: principal.user,
        request_id: requestId,
        image_id: image.id,
        input,
      },
      this.clock(),
    );
    const source: ImportSource = { kind: 'url', uri: uri as string };
    await this.lock(principal, image.id, task.id, source, (current) =>
      assertImportable(current, 'web-download'),
    );
    return this.launch(task, source);
  }

  private async vetUri(uri: unknown, what: string): Promise<void> {
    const shown = typeof uri === 'string' ? uri : 'None';
    try {
      await this.deps.fetcher.vet(typeof uri === 'string' ? uri : '');
    } catch (error) {
      if (error instanceof UrlRefused)
        throw new BadRequestError(`URI for ${what} does not pass filtering: ${shown}`);
      throw error;
    }
  }

  // -------------------------------------------------------------------------------------------
  // S3 uploads

  /**
   * One ObjectCreated event in the upload bucket. Safe to run twice for the same event (S3
   * delivers at least once): the marker keeps the task and image ids, and a marker already
   * done means nothing is left to do.
   */
  async onUpload(upload: UploadEvent): Promise<'started' | 'duplicate' | 'refused' | 'ignored'> {
    if (upload.bucket !== this.deps.uploadsBucket) return 'ignored';
    const target = parseUploadKey(upload.key);
    if (!target) return 'ignored';
    const eventId = `${upload.bucket}/${upload.key}#${upload.versionId ?? ''}#${upload.sequencer ?? ''}#${upload.etag ?? ''}`;
    const marker = await this.deps.markers.claim({
      eventId,
      taskId: randomUUID(),
      imageId: target.kind === 'existing' ? target.imageId : randomUUID(),
      done: false,
    });
    if (marker.done) return 'duplicate';

    const ref: ObjectRef = { bucket: upload.bucket, key: upload.key };
    const source: ImportSource = { kind: 's3', bucket: upload.bucket, key: upload.key, delete: true };
    let imageId = marker.imageId;
    let owner = '';
    try {
      if (target.kind === 'new') {
        const head = await this.deps.objects.head(ref);
        if (!head) {
          // Already imported and removed by an earlier delivery, or deleted by its writer.
          await this.deps.markers.markDone(eventId);
          return 'ignored';
        }
        const described = createBodyFromMetadata(head.metadata);
        owner = described.owner;
        if (typeof described.body.id === 'string') imageId = described.body.id;
        else described.body.id = imageId;
        await this.createOnce(makePrincipal(owner, 's3-upload', ['admin']), described.body);
      }
      const image = await this.deps.repo.get(imageId);
      owner = image?.owner ?? owner;
      await this.lock(SYSTEM, imageId, marker.taskId, source, (current) => {
        if (current.status !== 'queued')
          throw new ConflictError(`Image with status ${current.status} cannot be target for import`);
        requireFormatsForData(current);
      });
    } catch (error) {
      if (!(error instanceof HangarError) || error instanceof StaleWriteError) throw error;
      // A refusal is final for this object: record it where the owner looks (the image's tasks).
      const refused = transitionTask(
        this.uploadTask(marker.taskId, imageId, owner, upload),
        'failure',
        this.clock(),
        this.deps.taskTtlHours,
        { message: error.message },
      );
      await this.createTaskOnce(refused);
      // Another import may be reading this very object; otherwise nothing will ever use it.
      if (!(error instanceof ImportLocked)) await this.deps.objects.delete(ref).catch(() => undefined);
      await this.deps.markers.markDone(eventId);
      return 'refused';
    }
    const task = this.uploadTask(marker.taskId, imageId, owner, upload);
    await this.createTaskOnce(task);
    await this.deps.workflows.start('import', task.id, importInput(task, source));
    await this.deps.markers.markDone(eventId);
    return 'started';
  }

  private uploadTask(taskId: string, imageId: string, owner: string, upload: UploadEvent): TaskRecord {
    return newTask(
      {
        id: taskId,
        type: 'api_image_import',
        owner,
        user_id: 's3-upload',
        request_id: upload.requestId ?? '',
        image_id: imageId,
        input: {
          image_id: imageId,
          import_req: { method: { name: 's3-upload', bucket: upload.bucket, key: upload.key } },
          backend: [null],
        },
      },
      this.clock(),
    );
  }

  private async createOnce(principal: Principal, body: Record<string, unknown>): Promise<void> {
    try {
      await this.deps.images.create(principal, body);
    } catch (error) {
      // A redelivered event finds the image its first delivery made.
      if (!(error instanceof ConflictError)) throw error;
    }
  }

  private async createTaskOnce(task: TaskRecord): Promise<void> {
    try {
      await this.deps.tasks.create(task);
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Presigned multipart uploads (Hangar's own API; see docs/import-export.md)

  async startMultipartUpload(principal: Principal, id: string, body: unknown) {
    if (!isObject(body) || !Number.isSafeInteger(body.size) || (body.size as number) < 0)
      throw new BadRequestError('The request needs "size": the image size in bytes.');
    const size = body.size as number;
    if (size > this.deps.sizeCap) throw sizeCapError(this.deps.sizeCap);
    const image = writable(await this.deps.repo.get(id), id, principal);
    assertImportable(image, 'web-download');
    if (image.properties[IMPORT_LOCK])
      throw new ConflictError(
        `Image ${id} has an import in progress: a prior operation is still in progress.`,
      );
    let partSize = Math.max(8 * MiB, Math.ceil(size / MAX_UPLOAD_PARTS / MiB) * MiB);
    if (body.part_size !== undefined) {
      if (!Number.isSafeInteger(body.part_size)) throw new BadRequestError('"part_size" must be an integer.');
      partSize = body.part_size as number;
    }
    const partCount = Math.max(1, Math.ceil(size / partSize));
    if (partSize < 5 * MiB || partSize > 5 * GiB)
      throw new BadRequestError('"part_size" must be between 5 MiB and 5 GiB.');
    if (partCount > MAX_UPLOAD_PARTS)
      throw new BadRequestError(
        `That makes ${partCount} parts; choose a "part_size" for at most ${MAX_UPLOAD_PARTS}.`,
      );
    const ref = this.uploadRef(id);
    const seconds = this.deps.uploadUrlSeconds;
    const { uploadId, partUrls } = await this.deps.multipart.start(ref, partCount, seconds);
    return {
      upload_id: uploadId,
      bucket: ref.bucket,
      key: ref.key,
      part_size: partSize,
      part_count: partCount,
      expires_at: new Date(this.clock().getTime() + seconds * 1000).toISOString(),
      parts: partUrls.map((url, i) => ({ part_number: i + 1, url })),
      complete: `/v2/images/${id}/multipart-upload/complete`,
    };
  }

  async completeMultipartUpload(principal: Principal, id: string, body: unknown): Promise<void> {
    writable(await this.deps.repo.get(id), id, principal);
    const uploadId = isObject(body) ? body.upload_id : undefined;
    const parts = isObject(body) ? body.parts : undefined;
    if (typeof uploadId !== 'string' || !Array.isArray(parts) || parts.length === 0)
      throw new BadRequestError('The request needs "upload_id" and "parts": [{"part_number", "etag"}, ...].');
    const list = parts.map((part: unknown) => {
      if (!isObject(part) || !Number.isSafeInteger(part.part_number) || typeof part.etag !== 'string')
        throw new BadRequestError(
          'Each part needs an integer "part_number" and the "etag" S3 returned for it.',
        );
      return { partNumber: part.part_number as number, etag: part.etag };
    });
    await this.deps.multipart.complete(this.uploadRef(id), uploadId, list);
  }

  async abortMultipartUpload(principal: Principal, id: string, body: unknown): Promise<void> {
    writable(await this.deps.repo.get(id), id, principal);
    const uploadId = isObject(body) ? body.upload_id : undefined;
    if (typeof uploadId !== 'string') throw new BadRequestError('The request needs "upload_id".');
    await this.deps.multipart.abort(this.uploadRef(id), uploadId);
  }

  private uploadRef(id: string): ObjectRef {
    return { bucket: this.deps.uploadsBucket, key: `images/${id}` };
  }

  // -------------------------------------------------------------------------------------------
  // Lock and launch

  /**
   * Sets os_glance_import_task to `taskId` with a conditional write; ImportLocked (409) while
   * another import holds it, unless that one finished or made no progress for an hour.
   */
  private async lock(
    principal: Principal,
    id: string,
    taskId: string,
    source: ImportSource,
    check: (image: ImageRecord) => void,
  ): Promise<void> {
    const image = writable(await this.deps.repo.get(id), id, principal);
    const holder = image.properties[IMPORT_LOCK];
    let stale: string | undefined;
    if (holder && holder !== taskId && (await this.isStaleLock(holder, image))) stale = holder;
    await this.deps.images.mutate(principal, id, (current) => {
      const held = current.properties[IMPORT_LOCK];
      if (held === taskId) return null;
      if (held && held !== stale) throw new ImportLocked(id, held);
      check(current);
      // The lease starts with the lock: a crash before the state machine runs is recovered too.
      const now = this.clock();
      return {
        ...current,
        properties: { ...current.properties, [IMPORT_LOCK]: taskId },
        updated_at: isoSeconds(now),
        lease: {
          holder: taskId,
          kind: 'import',
          task_id: taskId,
          expires_at: leaseExpiry(now, this.leaseMs),
          ...(source.kind === 's3' && source.delete
            ? { source: { bucket: source.bucket, key: source.key } }
            : {}),
        },
      };
    });
  }

  private async isStaleLock(holder: string, image: ImageRecord): Promise<boolean> {
    const task = await this.deps.tasks.get(holder);
    if (task && isFinished(task)) return true;
    const lastProgress = Date.parse(task?.updated_at ?? image.updated_at);
    return this.clock().getTime() - lastProgress > LOCK_STALE_MS;
  }

  /** Records the task and starts its execution; a failed start undoes the lock. */
  private async launch(task: TaskRecord, source: ImportSource): Promise<TaskRecord> {
    try {
      await this.deps.tasks.create(task);
      await this.deps.workflows.start('import', task.id, importInput(task, source));
    } catch (error) {
      await this.fail({
        ...importInput(task, source),
        error: { Error: 'StartFailed', Cause: 'The import could not be started.' },
      }).catch(() => undefined);
      throw error;
    }
    return task;
  }

  // -------------------------------------------------------------------------------------------
  // State machine steps (functions/tasks/import-*.ts). Each is safe to retry.

  /** Begin Import: task processing, image importing (from queued or uploading). */
  async begin(input: ImportInput): Promise<void> {
    await this.advance(input.task_id, 'processing');
    await this.deps.images.mutate(SYSTEM, input.image_id, (current) => {
      assertLockedBy(current, input.task_id);
      const now = this.clock();
      const moved = current.status === 'importing' ? current : transitionImage(current, 'importing', now);
      return { ...moved, lease: this.importLease(current, input.task_id, now) };
    });
  }

  /** The import's lease, renewed (or taken, on a record locked before leases existed). */
  private importLease(image: ImageRecord, taskId: string, now: Date) {
    const lease =
      image.lease?.holder === taskId
        ? image.lease
        : { holder: taskId, kind: 'import' as const, task_id: taskId };
    return { ...lease, expires_at: leaseExpiry(now, this.leaseMs) };
  }

  /**
   * Copy And Inspect: leaves the bytes under a new immutable key in the images bucket and reads
   * them once, hashing (md5 + sha512 on two threads) and inspecting every block. An S3 source is
   * copied server-side and the copy is read; a URL is streamed into the images bucket while it is
   * hashed. On any failure the new object is removed.
   */
  async copy(input: ImportInput): Promise<CopyResult> {
    const image = await this.deps.repo.get(input.image_id);
    if (!image) throw new NotFoundError(`Image ${input.image_id} was deleted during the import.`);
    assertLockedBy(image, input.task_id);
    if (image.status !== 'importing')
      throw new ConflictError(`Image ${image.id} changed status to ${image.status} during the import`);
    const key = `images/${image.id}/${randomUUID()}`;
    const heartbeat = new LeaseHeartbeat(this.deps.repo, image.id, input.task_id, this.leaseMs, this.clock);
    // Names the new object in the lease before a byte of it exists: a recovery removes it.
    await heartbeat.note({ blob_key: key });
    heartbeat.check();
    heartbeat.start();
    try {
      return input.source.kind === 's3'
        ? await this.copyObject(image, input.source, key, heartbeat)
        : await this.download(image, input.source.uri, key, heartbeat);
    } finally {
      await heartbeat.stop();
    }
  }

  /**
   * An S3 source is first copied server-side under the image's new key in the images bucket,
   * then that copy, which nobody else can write, is read once: what is hashed and inspected is
   * exactly what the image will serve, whatever happens to the upload meanwhile.
   */
  private async copyObject(
    image: ImageRecord,
    source: ObjectRef,
    key: string,
    heartbeat: LeaseHeartbeat,
  ): Promise<CopyResult> {
    const head = await this.deps.objects.head(source);
    if (!head) throw new NotFoundError(`The uploaded object ${source.key} no longer exists.`);
    if (head.size > this.deps.sizeCap) throw sizeCapError(this.deps.sizeCap);
    const stored: ObjectRef = { bucket: this.deps.imagesBucket, key };
    const digest = this.deps.digester();
    const inspector = new FormatInspector();
    let opened: OpenedObject | undefined;
    try {
      await this.deps.objects.copy(source, head.pin, stored, head.size);
      opened = await this.deps.objects.open(stored);
      let size = 0;
      for await (const block of rechunk(opened.body, BLOCK_SIZE, this.deps.sharedBlock)) {
        heartbeat.check();
        size += block.length;
        inspector.update(block);
        await digest.update(block);
      }
      if (size !== opened.size) throw new Error(`Short read of ${key}: ${size} of ${opened.size} bytes.`);
      const digests = await digest.finish();
      const inspection = inspector.finish();
      const decision = inspectAndCheck(inspection, image.disk_format, this.formatCheck());
      return copyResult(key, size, inspection, decision, digests);
    } catch (error) {
      digest.cancel();
      opened?.abort();
      await this.deps.blobs.delete(key).catch(() => undefined);
      throw error;
    }
  }

  private async download(
    image: ImageRecord,
    uri: string,
    key: string,
    heartbeat: LeaseHeartbeat,
  ): Promise<CopyResult> {
    let fetched: Awaited<ReturnType<WebFetcher['open']>>;
    try {
      fetched = await this.deps.fetcher.open(uri);
    } catch (error) {
      if (error instanceof UrlRefused)
        throw new BadRequestError(`URI for web-download does not pass filtering: ${error.message}`);
      throw error;
    }
    if (fetched.size !== undefined && fetched.size > this.deps.sizeCap) {
      fetched.abort();
      throw sizeCapError(this.deps.sizeCap);
    }
    const digest = this.deps.digester();
    const inspector = new FormatInspector();
    let size = 0;
    try {
      await this.deps.blobs.put(
        key,
        rechunk(fetched.body, BLOCK_SIZE, this.deps.sharedBlock),
        {
          onBlock: async (block) => {
            heartbeat.check();
            size += block.length;
            if (size > this.deps.sizeCap) throw sizeCapError(this.deps.sizeCap);
            inspector.update(block);
            await digest.update(block);
          },
          onMultipartStart: (uploadId) => heartbeat.note({ multipart_upload_id: uploadId }),
        },
        // The server's Content-Length (the fetcher holds it to it): one streamed PUT, no parts.
        fetched.size,
      );
      const digests = await digest.finish();
      const inspection = inspector.finish();
      const decision = inspectAndCheck(inspection, image.disk_format, this.formatCheck());
      return copyResult(key, size, inspection, decision, digests);
    } catch (error) {
      digest.cancel();
      fetched.abort();
      await this.deps.blobs.delete(key).catch(() => undefined);
      throw error;
    }
  }

  /** Activate Image: importing -> active with the data, lock released; task success; source removed. */
  async activate(input: ImportInput & { data: CopyResult }): Promise<void> {
    const data = input.data;
    await this.deps.images.mutate(SYSTEM, input.image_id, (current) => {
      // A retried step after a write that did land.
      if (current.status === 'active' && current.blob_key === data.blob_key) return null;
      assertLockedBy(current, input.task_id);
      const next = transitionImage(current, 'active', this.clock());
      const properties: Record<string, string> = {
        ...current.properties,
        [FAILED_IMPORT]: '',
        [IMPORTING_TO_STORES]: '',
      };
      delete properties[IMPORT_LOCK];
      return {
        ...next,
        size: data.size,
        virtual_size: data.virtual_size,
        checksum: data.checksum,
        os_hash_algo: data.os_hash_algo,
        os_hash_value: data.os_hash_value,
        blob_key: data.blob_key,
        properties,
      };
    });
    await this.advance(input.task_id, 'success', {
      result: { image_id: input.image_id },
      message: `Copied ${Math.floor(data.size / MiB)} MiB`,
    });
    await this.removeSource(input.source);
  }

  /**
   * Fail Import: undoes whatever the import did. The blob goes, the image returns to queued with
   * the reason in os_glance_failed_import (only while this task holds its lock, so another
   * upload's state is never touched), and the task fails with the same message.
   */
  async fail(input: ImportInput & { data?: CopyResult; error?: StepError }): Promise<void> {
    const reason = describeStepError(input.error);
    const image = await this.deps.repo.get(input.image_id);
    const blobKey = input.data?.blob_key;
    if (image && blobKey && image.blob_key === blobKey && image.status === 'active') {
      // The image was activated and only a later write failed: the import did succeed.
      await this.advance(input.task_id, 'success', { result: { image_id: input.image_id } });
      await this.removeSource(input.source);
      return;
    }
    if (blobKey) await this.deps.blobs.delete(blobKey).catch(() => undefined);
    if (image && image.properties[IMPORT_LOCK] === input.task_id) {
      await this.deps.images
        .mutate(SYSTEM, input.image_id, (current) => {
          if (current.properties[IMPORT_LOCK] !== input.task_id) return null;
          const next =
            current.status === 'importing' || current.status === 'uploading'
              ? transitionImage(current, 'queued', this.clock())
              : { ...current, updated_at: isoSeconds(this.clock()) };
          const properties: Record<string, string> = {
            ...current.properties,
            [FAILED_IMPORT]: reason,
            [IMPORTING_TO_STORES]: '',
          };
          delete properties[IMPORT_LOCK];
          const { lease: _released, ...rest } = next;
          return { ...rest, properties };
        })
        .catch((error: unknown) => {
          // The image was deleted meanwhile: nothing to restore.
          if (!(error instanceof NotFoundError)) throw error;
        });
    }
    await this.advance(input.task_id, 'failure', { message: reason });
    await this.removeSource(input.source);
  }

  private async removeSource(source: ImportSource): Promise<void> {
    if (source.kind === 's3' && source.delete)
      await this.deps.objects.delete({ bucket: source.bucket, key: source.key }).catch(() => undefined);
  }

  private advance(
    id: string,
    to: TaskRecord['status'],
    fields: { message?: string; result?: Record<string, unknown> | null } = {},
  ): Promise<void> {
    return advanceTask(this.deps.tasks, id, to, this.clock, this.deps.taskTtlHours, fields);
  }
}

/** 409 while another import holds the image. */
export class ImportLocked extends ConflictError {
  override name = 'ImportLocked';
  constructor(id: string, holder: string) {
    super(`Image ${id} has an active import task ${holder}: a prior operation is still in progress.`);
  }
}

export function stagingKey(id: string): string {
  return id;
}

function importInput(task: TaskRecord, source: ImportSource): ImportInput & Record<string, unknown> {
  return { task_id: task.id, image_id: task.image_id as string, source };
}

function assertLockedBy(image: ImageRecord, taskId: string): void {
  if (image.properties[IMPORT_LOCK] !== taskId)
    throw new ConflictError(`Image ${image.id} is no longer locked by import task ${taskId}`);
}

/** The status and format rules of POST /import (Glance's import_image), as 409s. */
function assertImportable(image: ImageRecord, method: ImportMethod): void {
  if (method === 'glance-direct') {
    if (image.status === 'queued')
      throw new ConflictError("Image needs to be staged before 'glance-direct' method can be used");
    if (image.status !== 'uploading')
      throw new ConflictError(`Image with status ${image.status} cannot be target for import`);
  } else if (image.status !== 'queued') {
    throw new ConflictError(`Image with status ${image.status} cannot be target for import`);
  }
  if (!image.disk_format || !image.container_format)
    throw new ConflictError("'disk_format' and 'container_format' must be set prior to import");
}

function parseImportRequest(body: unknown): {
  name: ImportMethod;
  uri: unknown;
  raw: Record<string, unknown>;
} {
  if (!isObject(body) || !isObject(body.method))
    throw new BadRequestError("Import request requires a 'method' field.");
  const name = body.method.name;
  if (typeof name !== 'string') throw new BadRequestError("Import request requires a 'name' field.");
  if (name === 'copy-image' || name === 'glance-download')
    throw new BadRequestError(`Import method ${name} is not enabled on this service.`);
  if (!(IMPORT_METHODS as readonly string[]).includes(name))
    throw new BadRequestError(`Unknown import method name '${name}'.`);
  for (const key of ['all_stores', 'all_stores_must_succeed'])
    if (key in body && typeof body[key] !== 'boolean')
      throw new BadRequestError(`'${key}' must be a boolean.`);
  // Single-store, as Glance without enabled_backends: `stores` and `all_stores` are ignored, but
  // giving up all_stores_must_succeed has no meaning there and is refused as Glance refuses it.
  if (body.all_stores_must_succeed === false)
    throw new BadRequestError('All_stores_must_succeed can only be set with enabled_backends.');
  return { name: name as ImportMethod, uri: body.method.uri, raw: body.method };
}

function copyResult(
  key: string,
  size: number,
  inspection: InspectionResult,
  decision: FormatDecision,
  digests: { md5: string; sha512: string },
): CopyResult {
  return {
    blob_key: key,
    size,
    virtual_size: decision.virtualSize,
    checksum: digests.md5,
    os_hash_algo: 'sha512',
    os_hash_value: digests.sha512,
    format: inspection.format,
  };
}

function parseDeclaredSize(header: string | undefined, cap: number): number | undefined {
  if (header === undefined) return undefined;
  if (!/^\d+$/.test(header))
    throw new BadRequestError(`x-openstack-image-size must be a non-negative integer, not '${header}'`);
  const declared = Number(header);
  if (declared > cap) throw sizeCapError(cap);
  return declared;
}

function sizeCapError(cap: number): HangarError {
  return new TooLargeError(`Image exceeds the storage quota: the image size cap is ${cap} bytes.`);
}

function sizeMismatch(declared: number, actual: number): HangarError {
  return new BadRequestError(
    `Image size mismatch: x-openstack-image-size says ${declared} bytes, the body had ${actual} or more.`,
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
