/**
 * S3 uploads: an object written to the upload bucket starts an import (functions/triggers/
 * s3-upload.ts hands each ObjectCreated record to onUpload). Hangar's presigned multipart uploads
 * (multipart.ts) end here too.
 */
import { randomUUID } from 'node:crypto';
import type { ObjectRef } from '../data/ports.ts';
import { requireFormatsForData } from '../images/status.ts';
import { BadRequestError, ConflictError, HangarError, StaleWriteError } from '../kernel/errors.ts';
import { makePrincipal, type Principal } from '../kernel/principal.ts';
import { newTask, type TaskRecord, transitionTask } from '../tasks/task.ts';
import { type ImportLock, ImportLocked } from './import-lock.ts';
import { type ImportContext, type ImportSource, importInput, SYSTEM } from './import-model.ts';

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

export class S3UploadTrigger {
  constructor(
    private readonly deps: ImportContext,
    private readonly lock: ImportLock,
  ) {}

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
      await this.lock.lock(SYSTEM, imageId, marker.taskId, source, (current) => {
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
        this.deps.clock(),
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
      this.deps.clock(),
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
}
