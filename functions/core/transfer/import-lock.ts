/**
 * The import lock: `os_glance_import_task` on the image names the one import that may run (as in
 * Glance), set with a conditional write together with the import's lease.
 */

import { writable } from '../images/access.ts';
import type { ImageRecord } from '../images/image.ts';
import { leaseExpiry } from '../images/lease.ts';
import { ConflictError } from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import { isoSeconds } from '../kernel/time.ts';
import { isFinished } from '../tasks/task.ts';
import { IMPORT_LOCK, type ImportContext, type ImportSource } from './import-model.ts';

/** Glance lets a lock be taken over after an hour without progress. */
export const LOCK_STALE_MS = 60 * 60 * 1000;

/** 409 while another import holds the image. */
export class ImportLocked extends ConflictError {
  override name = 'ImportLocked';
  constructor(id: string, holder: string) {
    super(`Image ${id} has an active import task ${holder}: a prior operation is still in progress.`);
  }
}

export class ImportLock {
  constructor(private readonly deps: ImportContext) {}

  /**
   * Sets os_glance_import_task to `taskId` with a conditional write; ImportLocked (409) while
   * another import holds it, unless that one finished or made no progress for an hour.
   */
  async lock(
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
      const now = this.deps.clock();
      return {
        ...current,
        properties: { ...current.properties, [IMPORT_LOCK]: taskId },
        updated_at: isoSeconds(now),
        lease: {
          holder: taskId,
          kind: 'import',
          task_id: taskId,
          expires_at: leaseExpiry(now, this.deps.leaseMs),
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
    return this.deps.clock().getTime() - lastProgress > LOCK_STALE_MS;
  }
}

export function assertLockedBy(image: ImageRecord, taskId: string): void {
  if (image.properties[IMPORT_LOCK] !== taskId)
    throw new ConflictError(`Image ${image.id} is no longer locked by import task ${taskId}`);
}

/** The import's lease, renewed (or taken, on a record locked before leases existed). */
export function importLease(image: ImageRecord, taskId: string, now: Date, leaseMs: number) {
  const lease =
    image.lease?.holder === taskId
      ? image.lease
      : { holder: taskId, kind: 'import' as const, task_id: taskId };
  return { ...lease, expires_at: leaseExpiry(now, leaseMs) };
}
