/**
 * The import state machine's steps (state-machines/import.asl.json; the task functions are
 * functions/tasks/import-*.ts). Each is safe to retry.
 */
import { randomUUID } from 'node:crypto';
import { inspectAndCheck } from '../data/format-inspector.ts';
import { BytePipeline, sizeCapError } from '../data/pipeline.ts';
import type { ObjectRef, OpenedObject } from '../data/ports.ts';
import type { ImageRecord } from '../images/image.ts';
import { LeaseHeartbeat } from '../images/lease.ts';
import { transitionImage } from '../images/status.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../kernel/errors.ts';
import { isoSeconds } from '../kernel/time.ts';
import { type TaskAdvancer, taskAdvancer } from '../tasks/advance.ts';
import { describeStepError, type StepError } from '../tasks/step-error.ts';
import { assertLockedBy, importLease } from './import-lock.ts';
import {
  type CopyResult,
  FAILED_IMPORT,
  IMPORT_LOCK,
  IMPORTING_TO_STORES,
  type ImportContext,
  type ImportInput,
  type ImportSource,
  SYSTEM,
} from './import-model.ts';
import type { WebFetcher } from './ports.ts';
import { UrlRefused } from './url-filter.ts';

const MiB = 1024 * 1024;

type ImageBytes = BytePipeline<'inspect' | 'digest'>;

export class ImportSteps {
  private readonly advance: TaskAdvancer;

  constructor(private readonly deps: ImportContext) {
    this.advance = taskAdvancer(deps.tasks, deps.clock, deps.taskTtlHours);
  }

  /** Begin Import: task processing, image importing (from queued or uploading). */
  async begin(input: ImportInput): Promise<void> {
    await this.advance(input.task_id, 'processing');
    await this.deps.images.mutate(SYSTEM, input.image_id, (current) => {
      assertLockedBy(current, input.task_id);
      const now = this.deps.clock();
      const moved = current.status === 'importing' ? current : transitionImage(current, 'importing', now);
      return { ...moved, lease: importLease(current, input.task_id, now, this.deps.leaseMs) };
    });
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
    const heartbeat = new LeaseHeartbeat(
      this.deps.repo,
      image.id,
      input.task_id,
      this.deps.leaseMs,
      this.deps.clock,
    );
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
    // The size was checked on the head: the copy is of exactly that many bytes.
    const bytes = this.imageBytes(heartbeat);
    let opened: OpenedObject | undefined;
    try {
      await this.deps.objects.copy(source, head.pin, stored, head.size);
      opened = await this.deps.objects.open(stored);
      await bytes.drain(opened.body);
      if (bytes.size !== opened.size)
        throw new Error(`Short read of ${key}: ${bytes.size} of ${opened.size} bytes.`);
      return await this.copyResult(image, key, bytes);
    } catch (error) {
      bytes.cancel();
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
    const bytes = this.imageBytes(heartbeat, this.deps.sizeCap);
    try {
      await this.deps.blobs.put(
        key,
        bytes.blocks(fetched.body),
        {
          onBlock: bytes.take,
          onMultipartStart: (uploadId) => heartbeat.note({ multipart_upload_id: uploadId }),
        },
        // The server's Content-Length (the fetcher holds it to it): one streamed PUT, no parts.
        fetched.size,
      );
      return await this.copyResult(image, key, bytes);
    } catch (error) {
      bytes.cancel();
      fetched.abort();
      await this.deps.blobs.delete(key).catch(() => undefined);
      throw error;
    }
  }

  /** Every block inspected and hashed, while the import still holds its lease. */
  private imageBytes(heartbeat: LeaseHeartbeat, sizeCap?: number): ImageBytes {
    return new BytePipeline(this.deps, {
      stages: ['inspect', 'digest'],
      ...(sizeCap !== undefined && { sizeCap }),
      beforeBlock: () => heartbeat.check(),
    });
  }

  /** The digests and the format decision, once every byte of `key` went through `bytes`. */
  private async copyResult(image: ImageRecord, key: string, bytes: ImageBytes): Promise<CopyResult> {
    const { size, digests, inspection } = await bytes.finish();
    const decision = inspectAndCheck(inspection, image.disk_format, {
      requireMatch: this.deps.requireFormatMatch ?? true,
    });
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

  /** Activate Image: importing -> active with the data, lock released; task success; source removed. */
  async activate(input: ImportInput & { data: CopyResult }): Promise<void> {
    const data = input.data;
    await this.deps.images.mutate(SYSTEM, input.image_id, (current) => {
      // A retried step after a write that did land.
      if (current.status === 'active' && current.blob_key === data.blob_key) return null;
      assertLockedBy(current, input.task_id);
      const next = transitionImage(current, 'active', this.deps.clock());
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
              ? transitionImage(current, 'queued', this.deps.clock())
              : { ...current, updated_at: isoSeconds(this.deps.clock()) };
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
}
