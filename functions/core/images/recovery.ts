/**
 * Recovery of images whose upload, stage or import died with its server: a lease
 * (core/images/lease.ts) past its expiry. The image goes back to `queued` with the reason
 * (os_glance_failed_import for imports, os_glance_failed_upload for uploads and stages), the
 * import lock is released and the task fails; then what the lease names is removed: the partial
 * blob, its multipart upload, the staged or uploaded source object. The takeover is one
 * version-conditional write made only while the lease is still expired, so it never races a
 * live holder: a holder that renewed first wins, and one that renews after finds its lease gone.
 *
 * Also here: what a DELETE frees (freeImageData), since a deleted image may have been mid-upload.
 */

import type { BlobStore, ObjectStore } from '../data/ports.ts';
import { NotFoundError } from '../kernel/errors.ts';
import { retryOnStale, STALE_RETRY_ATTEMPTS } from '../kernel/retry.ts';
import { isoSeconds } from '../kernel/time.ts';
import { advanceTask } from '../tasks/advance.ts';
import type { TaskRepository } from '../tasks/ports.ts';
import { FAILED_UPLOAD, type ImageLease, type ImageRecord } from './image.ts';
import { isLeaseExpired } from './lease.ts';
import type { LeaseIndex } from './ports.ts';
import { transitionImage } from './status.ts';

// Kept equal to image-import.ts's (imported there from here would be a cycle).
const IMPORT_LOCK = 'os_glance_import_task';
const FAILED_IMPORT = 'os_glance_failed_import';
const IMPORTING_TO_STORES = 'os_glance_importing_to_stores';

export interface RecoveryDeps {
  repo: import('./ports.ts').ImageRepository;
  leases: LeaseIndex;
  tasks: TaskRepository;
  /** The images bucket. */
  blobs: BlobStore;
  /** The staging and upload buckets (lease sources). */
  objects: ObjectStore;
  taskTtlHours: number;
  clock?: () => Date;
}

export interface RecoverySummary {
  /** Images put back to queued. */
  recovered: string[];
  /** Leases renewed or released before the recovery got there. */
  skipped: string[];
  failed: { id: string; error: unknown }[];
}

/** Leases read per Query page; a sweep walks pages until no expired lease is left. */
const PAGE = 25;

export class LeaseRecovery {
  private readonly clock: () => Date;

  constructor(private readonly deps: RecoveryDeps) {
    this.clock = deps.clock ?? (() => new Date());
  }

  /**
   * Recovers every lease expired now. `everyLease` also takes unexpired ones: only for a
   * runner that knows it is the only server and has not started any work yet (the embedded
   * backend at start-up, whose previous process is gone however recently it renewed).
   */
  async sweep(options: { everyLease?: boolean } = {}): Promise<RecoverySummary> {
    const summary: RecoverySummary = { recovered: [], skipped: [], failed: [] };
    const seen = new Set<string>();
    const cutoff = options.everyLease ? null : this.clock();
    for (;;) {
      const page = await this.deps.leases.expiredLeases(cutoff, PAGE);
      const fresh = page.filter((image) => !seen.has(image.id));
      if (fresh.length === 0) break;
      for (const image of fresh) {
        seen.add(image.id);
        try {
          const outcome = await this.recover(image.id, options);
          (outcome === 'recovered' ? summary.recovered : summary.skipped).push(image.id);
        } catch (error) {
          summary.failed.push({ id: image.id, error });
        }
      }
      if (page.length < PAGE) break;
    }
    return summary;
  }

  /** Recovers one image if its lease is (still) expired. */
  async recover(id: string, options: { everyLease?: boolean } = {}): Promise<'recovered' | 'skipped'> {
    const taken = await retryOnStale(
      async () => {
        const current = await this.deps.repo.get(id);
        const lease = current?.lease;
        if (!current || !lease) return undefined;
        const now = this.clock();
        if (!options.everyLease && !isLeaseExpired(lease, now)) return undefined;
        const reason = `The ${describeKind(lease)} was interrupted: the server handling it stopped (its lease expired at ${lease.expires_at}). Retry it.`;
        await this.deps.repo.update(current, {
          ...requeued(current, lease, reason, now),
          version: current.version + 1,
        });
        return { lease, reason };
      },
      { maxAttempts: STALE_RETRY_ATTEMPTS },
    );
    if (!taken) return 'skipped';
    // Outside the retried write: a lost race while releasing must not take the lease over again.
    await this.release(taken.lease, taken.reason);
    return 'recovered';
  }

  /** Frees what a taken-over lease names and fails its task. */
  private async release(lease: ImageLease, reason: string): Promise<void> {
    await freeLease(this.deps, lease);
    if (lease.task_id)
      await advanceTask(this.deps.tasks, lease.task_id, 'failure', this.clock, this.deps.taskTtlHours, {
        message: reason,
      }).catch((error: unknown) => {
        if (!(error instanceof NotFoundError)) throw error;
      });
  }
}

function describeKind(lease: ImageLease): string {
  if (lease.kind === 'import') return `import (task ${lease.task_id ?? lease.holder})`;
  return lease.kind === 'stage' ? 'stage (glance-direct)' : 'upload';
}

/** The record after a takeover: queued, lease gone, the reason shown, the import lock released. */
function requeued(image: ImageRecord, lease: ImageLease, reason: string, now: Date): ImageRecord {
  const base =
    image.status === 'saving' || image.status === 'uploading' || image.status === 'importing'
      ? transitionImage(image, 'queued', now)
      : { ...image, updated_at: isoSeconds(now) };
  const { lease: _gone, ...rest } = base;
  const properties = { ...rest.properties };
  if (lease.kind === 'import') {
    properties[FAILED_IMPORT] = reason;
    properties[IMPORTING_TO_STORES] = '';
    if (properties[IMPORT_LOCK] === (lease.task_id ?? lease.holder)) delete properties[IMPORT_LOCK];
  } else {
    properties[FAILED_UPLOAD] = reason;
  }
  return { ...rest, properties };
}

/** Removes what a lease names; each removal is attempted even when another fails. */
export async function freeLease(
  deps: Pick<RecoveryDeps, 'blobs' | 'objects'>,
  lease: ImageLease,
): Promise<void> {
  const removals: Promise<unknown>[] = [];
  if (lease.blob_key) {
    const key = lease.blob_key;
    if (lease.multipart_upload_id) removals.push(deps.blobs.abortMultipart(key, lease.multipart_upload_id));
    removals.push(deps.blobs.delete(key));
  }
  if (lease.source) removals.push(deps.objects.delete(lease.source));
  const results = await Promise.allSettled(removals);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}

/**
 * Everything a deleted image owned: its blob, whatever its lease named (a DELETE mid-upload), its
 * staged object, and any other object under its prefix in the images bucket (the leftovers of
 * crashes before leases existed). The image is a tombstone already, so no new upload can start
 * under that prefix.
 */
export async function freeImageData(
  deps: Pick<RecoveryDeps, 'blobs' | 'objects'> & { stagingBucket: string; stagingKey: string },
  image: ImageRecord,
  lease: ImageLease | undefined,
): Promise<void> {
  const removals: Promise<unknown>[] = [];
  if (image.blob_key) removals.push(deps.blobs.delete(image.blob_key));
  if (lease) removals.push(freeLease(deps, lease));
  removals.push(deps.objects.delete({ bucket: deps.stagingBucket, key: deps.stagingKey }));
  removals.push(deps.blobs.deletePrefix(`images/${image.id}/`));
  const results = await Promise.allSettled(removals);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}
