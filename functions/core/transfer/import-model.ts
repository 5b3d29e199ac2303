/**
 * Image import: what every module of it shares (import.ts is the service that puts them together).
 * Every way of bringing image data in except PUT /file ends in the same import state machine
 * (state-machines/import.asl.json, its steps in import-steps.ts). The ways in:
 *   - S3 upload: an object written to the upload bucket (s3-trigger.ts), including Hangar's
 *     presigned multipart uploads (multipart.ts);
 *   - glance-direct: PUT /stage into the staging bucket (staging.ts), then POST /import;
 *   - web-download: POST /import with an http(s) URL, fetched under the SSRF policy;
 *   - the legacy tasks API (`POST /v2/tasks` type import), a web-download into a new image
 *     (the requests in import-requests.ts).
 *
 * The image is locked for one import at a time by `os_glance_import_task` (import-lock.ts). A
 * failed import puts the image back to `queued` with the reason in `os_glance_failed_import` and
 * on the task, and removes whatever blob it had written.
 */
import type { ByteTools } from '../data/pipeline.ts';
import type { BlobStore, ObjectStore } from '../data/ports.ts';
import type { ImageRecord } from '../images/image.ts';
import type { ImagesService } from '../images/images-service.ts';
import type { ImageRepository } from '../images/ports.ts';
import { ConflictError } from '../kernel/errors.ts';
import { makePrincipal } from '../kernel/principal.ts';
import type { TaskRepository, WorkflowStarter } from '../tasks/ports.ts';
import type { TaskRecord } from '../tasks/task.ts';
import type { EventMarkers, MultipartUploads, WebFetcher } from './ports.ts';

export const IMPORT_METHODS = ['glance-direct', 'web-download'] as const;
export type ImportMethod = (typeof IMPORT_METHODS)[number];

export const IMPORT_LOCK = 'os_glance_import_task';
export const FAILED_IMPORT = 'os_glance_failed_import';
export const IMPORTING_TO_STORES = 'os_glance_importing_to_stores';

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

export interface ImportServiceDeps extends ByteTools {
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
  sizeCap: number;
  /** Glance's require_image_format_match (default true): content must be the declared disk_format. */
  requireFormatMatch?: boolean;
  taskTtlHours: number;
  uploadUrlSeconds: number;
  /** HANGAR_LEASE_SECONDS, in milliseconds (default a minute). */
  leaseMs?: number;
  clock?: () => Date;
}

/** The deps with their defaults applied: what each import module is given. */
export type ImportContext = ImportServiceDeps & { clock: () => Date; leaseMs: number };

export function importContext(deps: ImportServiceDeps): ImportContext {
  return { ...deps, clock: deps.clock ?? (() => new Date()), leaseMs: deps.leaseMs ?? 60_000 };
}

export function stagingKey(id: string): string {
  return id;
}

export function importInput(task: TaskRecord, source: ImportSource): ImportInput & Record<string, unknown> {
  return { task_id: task.id, image_id: task.image_id as string, source };
}

/** The status and format rules of POST /import (Glance's import_image), as 409s. */
export function assertImportable(image: ImageRecord, method: ImportMethod): void {
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

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
