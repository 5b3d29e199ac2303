/**
 * Image data: upload (PUT /file) and download (GET /file). The upload streams the body once:
 * every block is hashed (md5 + sha512) and sent to the blob store as it arrives, and the image
 * only becomes active after both the bytes and the digests are safely stored. Anything that goes
 * wrong returns the image to `queued` and removes the partial blob, so a retry starts clean.
 */
import { randomUUID } from 'node:crypto';
import { downloadable, readable, writable } from '../images/access.ts';
import { FAILED_UPLOAD, type ImageRecord } from '../images/image.ts';
import { assertLeaseHeld, LeaseHeartbeat, leaseExpiry } from '../images/lease.ts';
import type { ImageRepository } from '../images/ports.ts';
import { assertDownloadable, requireFormatsForData, transitionImage } from '../images/status.ts';
import { ConflictError, HangarError, NotFoundError, StaleWriteError } from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import { retryOnStale, STALE_RETRY_ATTEMPTS } from '../kernel/retry.ts';
import { isoSeconds } from '../kernel/time.ts';
import { inspectAndCheck } from './format-inspector.ts';
import { BytePipeline, parseContentLength, parseDeclaredSize } from './pipeline.ts';
import type { BlobStore, StreamDigester } from './ports.ts';

export interface UploadOptions {
  /** The x-openstack-image-size header, if sent. */
  declaredSize?: string;
  /** The request's Content-Length, when the body is not chunked. */
  contentLength?: string;
  sizeCap: number;
  /** Glance's require_image_format_match (default true): content must be the declared disk_format. */
  requireFormatMatch?: boolean;
  /**
   * The caller holds a job-scoped upload grant for this image, checked by the edge
   * (HostsService.authorizeUpload): it may write this image's data though it writes no image.
   */
  granted?: boolean;
}

export class ImageDataService {
  constructor(
    private readonly repo: ImageRepository,
    private readonly blobs: BlobStore,
    private readonly digester: () => StreamDigester,
    private readonly sharedBlock: (size: number) => Buffer,
    private readonly clock: () => Date = () => new Date(),
    /** HANGAR_LEASE_SECONDS: how long the upload's lease lasts without a heartbeat. */
    private readonly leaseMs: number = 60_000,
  ) {}

  async upload(
    principal: Principal,
    id: string,
    body: AsyncIterable<Buffer>,
    options: UploadOptions,
  ): Promise<ImageRecord> {
    const declaredSize = parseDeclaredSize(options.declaredSize, options.sizeCap);
    const key = `images/${id}/${randomUUID()}`;
    const holder = randomUUID();
    const saving = await this.startSaving(principal, id, holder, key, options.granted === true);
    const heartbeat = new LeaseHeartbeat(this.repo, id, holder, this.leaseMs, this.clock).start();
    const bytes = new BytePipeline(
      { digester: this.digester, sharedBlock: this.sharedBlock },
      {
        stages: ['inspect', 'digest'],
        sizeCap: options.sizeCap,
        declaredSize,
        // Recovered or deleted meanwhile: stop writing bytes nobody will keep.
        beforeBlock: () => heartbeat.check(),
      },
    );
    try {
      await this.blobs.put(
        key,
        bytes.blocks(body),
        {
          onBlock: bytes.take,
          // Named in the lease so a recovery or a DELETE can abort it.
          onMultipartStart: (uploadId) => heartbeat.note({ multipart_upload_id: uploadId }),
        },
        parseContentLength(options.contentLength),
      );
      const { size, digests, inspection } = await bytes.finish();
      // Glance's content checks (bug 2059809): unsafe or mismatched images never become active.
      const decision = inspectAndCheck(inspection, saving.disk_format, {
        requireMatch: options.requireFormatMatch ?? true,
      });
      await heartbeat.stop();
      return await this.activate(saving, holder, {
        size,
        virtual_size: decision.virtualSize,
        checksum: digests.md5,
        os_hash_algo: 'sha512',
        os_hash_value: digests.sha512,
        blob_key: key,
      });
    } catch (error) {
      bytes.cancel();
      await heartbeat.stop();
      await this.blobs.delete(key).catch(() => undefined);
      // A DELETE or a recovery meanwhile aborts the multipart upload under us: the store's own
      // error (NoSuchUpload) is then not the caller's answer, the lost lease is (410 when deleted).
      const lost = await this.lostLease(id, holder);
      if (lost && !(error instanceof HangarError)) throw lost;
      await this.restoreQueued(id, holder);
      throw error;
    }
  }

  /** saving -> active, re-applied if metadata changed meanwhile; fails if the image left `saving`. */
  private async activate(
    saving: ImageRecord,
    holder: string,
    data: Pick<
      ImageRecord,
      'size' | 'virtual_size' | 'checksum' | 'os_hash_algo' | 'os_hash_value' | 'blob_key'
    >,
  ): Promise<ImageRecord> {
    return retryOnStale(
      async (attempt) => {
        const current = attempt === 1 ? saving : await this.repo.get(saving.id);
        if (!current) throw new NotFoundError(`Image ${saving.id} not found.`);
        // Glance answers 410 when the image was deleted while its data was being uploaded; an
        // upload whose lease was recovered meanwhile must not activate either.
        assertLeaseHeld(current, current.id, holder);
        if (current.status !== 'saving')
          throw new ConflictError(
            `Image ${current.id} changed status to ${current.status} during the upload`,
          );
        const active = transitionImage(current, 'active', this.clock());
        const { [FAILED_UPLOAD]: _recovered, ...properties } = active.properties;
        const next: ImageRecord = {
          ...active,
          properties,
          ...data,
          version: current.version + 1,
        };
        await this.repo.update(current, next);
        return next;
      },
      {
        maxAttempts: STALE_RETRY_ATTEMPTS,
        exhausted: () => new ConflictError(`Image ${saving.id} is being changed too often to activate`),
      },
    );
  }

  /**
   * queued -> saving. A metadata write that lands between the read and the write must not fail
   * the upload (Glance only requires the status to still be queued), so the transition is
   * re-applied to the fresh record; a concurrent upload that got there first makes it a 409.
   */
  private async startSaving(
    principal: Principal,
    id: string,
    holder: string,
    key: string,
    granted: boolean,
  ): Promise<ImageRecord> {
    return retryOnStale(
      async () => {
        const stored = await this.repo.get(id);
        const queued = granted ? readable(stored, id, principal) : writable(stored, id, principal);
        requireFormatsForData(queued);
        const now = this.clock();
        // The lease is part of the same conditional write: no moment in `saving` without one.
        const next: ImageRecord = {
          ...transitionImage(queued, 'saving', now),
          lease: { holder, kind: 'upload', expires_at: leaseExpiry(now, this.leaseMs), blob_key: key },
          version: queued.version + 1,
        };
        await this.repo.update(queued, next);
        return next;
      },
      {
        maxAttempts: STALE_RETRY_ATTEMPTS,
        exhausted: () => new ConflictError(`Image ${id} was changed by another request; retry the upload`),
      },
    );
  }

  /** The error to answer when the upload no longer holds its lease, else undefined. */
  private async lostLease(id: string, holder: string): Promise<HangarError | undefined> {
    try {
      assertLeaseHeld(await this.repo.get(id), id, holder);
      return undefined;
    } catch (error) {
      if (error instanceof HangarError) return error;
      throw error;
    }
  }

  /** Glance v2 puts a failed upload back to queued so it can be retried (only while it holds the lease). */
  private async restoreQueued(id: string, holder: string): Promise<void> {
    await retryOnStale(
      async () => {
        const current = await this.repo.get(id);
        if (current?.status !== 'saving' || current.lease?.holder !== holder) return;
        const { lease: _released, ...rest } = current;
        const next: ImageRecord = {
          ...rest,
          status: 'queued',
          size: null,
          virtual_size: null,
          updated_at: isoSeconds(this.clock()),
          version: current.version + 1,
        };
        await this.repo.update(current, next);
      },
      { maxAttempts: STALE_RETRY_ATTEMPTS },
    ).catch((error: unknown) => {
      // Losing every race leaves the image in `saving` with its lease, for the lease sweep to recover.
      if (!(error instanceof StaleWriteError)) throw error;
    });
  }

  /** What GET /file needs: the image, and where its bytes are (null: no data yet -> 204). */
  async locate(principal: Principal, id: string): Promise<{ image: ImageRecord; key: string | null }> {
    const image = downloadable(await this.repo.get(id), id, principal);
    assertDownloadable(image, principal);
    if (image.status !== 'active' && image.status !== 'deactivated') return { image, key: null };
    return { image, key: image.blob_key };
  }
}

/** Parses a Range (or Glance's legacy Content-Range) request header against `size`. */
export function parseByteRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^bytes[ =](\d*)-(\d*)(?:\/(\d+|\*))?$/.exec(header.trim());
  if (!match) return undefined;
  const [, first, last] = match;
  if (first === '' && last === '') return 'unsatisfiable';
  let start: number;
  let end: number;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}
