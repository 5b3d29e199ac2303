/**
 * Leases on images while bytes are in flight (core/images/image.ts, ImageLease). The holder takes the
 * lease in the same conditional write that moves the image to saving/uploading/importing, and a
 * LeaseHeartbeat renews it every third of its duration while the work runs. A heartbeat that
 * finds the lease gone (recovered by the sweep, the image deleted) marks itself lost: the holder
 * must then stop without activating, which every activation also checks under the record's
 * version. Writes are version-conditional, so a renewal and a recovery can never both land.
 */
import { ConflictError, GoneError } from '../kernel/errors.ts';
import { retryOnStale, STALE_RETRY_ATTEMPTS } from '../kernel/retry.ts';
import type { ImageLease, ImageRecord } from './image.ts';
import type { ImageRepository } from './ports.ts';

/** The expiry of a lease taken or renewed at `now`. */
export function leaseExpiry(now: Date, durationMs: number): string {
  return new Date(now.getTime() + durationMs).toISOString();
}

export function isLeaseExpired(lease: ImageLease, now: Date): boolean {
  return Date.parse(lease.expires_at) <= now.getTime();
}

/** The holder lost its lease: the image was recovered, deleted or taken over meanwhile. */
export class LeaseLost extends ConflictError {
  override name = 'LeaseLost';
  constructor(id: string, status: string) {
    super(
      `Image ${id} is no longer held by this upload (status ${status}): its lease lapsed and it was recovered. Retry the upload.`,
    );
  }
}

/** What a holder that lost its lease answers: Glance's 410 when the image was deleted, else LeaseLost (409). */
export function leaseLostError(id: string, status: string | undefined): ConflictError | GoneError {
  if (status === 'deleted' || status === undefined)
    return new GoneError(
      `Image ${id} could not be found after upload. The image may have been deleted during the upload.`,
    );
  return new LeaseLost(id, status);
}

/** Throws leaseLostError unless `holder` still holds the lease. */
export function assertLeaseHeld(image: ImageRecord | null, id: string, holder: string): ImageRecord {
  if (!image || image.status === 'deleted' || image.lease?.holder !== holder)
    throw leaseLostError(id, image?.status);
  return image;
}

export class LeaseHeartbeat {
  private timer: NodeJS.Timeout | undefined;
  /** Renewals and notes run one after another, never concurrently. */
  private chain: Promise<void> = Promise.resolve();
  private lostTo: string | undefined;
  private stopped = false;

  constructor(
    private readonly repo: ImageRepository,
    private readonly id: string,
    private readonly holder: string,
    private readonly durationMs: number,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** Renews every third of the lease: at most three writes per lease period, whatever the rate of bytes. */
  start(): this {
    this.timer = setInterval(
      () => {
        void this.renew();
      },
      Math.max(1, Math.floor(this.durationMs / 3)),
    );
    // A heartbeat alone never keeps a process alive.
    this.timer.unref();
    return this;
  }

  get lost(): boolean {
    return this.lostTo !== undefined;
  }

  /** Throws LeaseLost once a renewal found the lease gone: the holder must stop. */
  check(): void {
    if (this.lostTo !== undefined) throw leaseLostError(this.id, this.lostTo);
  }

  /** Extends the lease now. */
  renew(): Promise<void> {
    return this.enqueue({});
  }

  /** Records what the holder now writes (a multipart upload id...), and renews. */
  note(fields: Partial<Omit<ImageLease, 'holder' | 'kind' | 'expires_at'>>): Promise<void> {
    return this.enqueue(fields);
  }

  /** Stops renewing; waits for a write in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.chain;
  }

  private enqueue(fields: Partial<ImageLease>): Promise<void> {
    const run = this.chain.then(() => this.write(fields));
    // A failed renewal (the table unreachable for a moment) is retried by the next tick; if the
    // lease lapses meanwhile, the recovery wins and the next renewal finds it lost.
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async write(fields: Partial<ImageLease>): Promise<void> {
    if (this.lostTo !== undefined) return;
    await retryOnStale(
      async () => {
        const current = await this.repo.get(this.id);
        const lease = current?.lease;
        if (!current || !lease || lease.holder !== this.holder) {
          this.lostTo = current?.status ?? 'deleted';
          return;
        }
        // After stop() only notes that were already queued are written.
        if (this.stopped && Object.keys(fields).length === 0) return;
        const next: ImageRecord = {
          ...current,
          lease: { ...lease, ...fields, expires_at: leaseExpiry(this.clock(), this.durationMs) },
          version: current.version + 1,
        };
        await this.repo.update(current, next);
      },
      { maxAttempts: STALE_RETRY_ATTEMPTS },
    );
  }
}
