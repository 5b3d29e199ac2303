/** glance-direct staging: PUT /v2/images/{id}/stage puts the body in the staging bucket. */
import { randomUUID } from 'node:crypto';
import { BytePipeline, parseContentLength, parseDeclaredSize } from '../data/pipeline.ts';
import { FAILED_UPLOAD } from '../images/image.ts';
import { assertLeaseHeld, LeaseHeartbeat, leaseExpiry, leaseLostError } from '../images/lease.ts';
import { transitionImage } from '../images/status.ts';
import { ConflictError, HangarError } from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import { isoSeconds } from '../kernel/time.ts';
import { IMPORT_LOCK, type ImportContext, SYSTEM, stagingKey } from './import-model.ts';

export class Staging {
  constructor(private readonly deps: ImportContext) {}

  /** PUT /stage: queued -> uploading, the body into the staging bucket, the size onto the image. */
  async stage(
    principal: Principal,
    id: string,
    body: AsyncIterable<Buffer>,
    /** contentLength: the request's, when the body is not chunked (one streamed PUT, no parts). */
    options: { declaredSize?: string; contentLength?: string },
  ): Promise<void> {
    const declaredSize = parseDeclaredSize(options.declaredSize, this.deps.sizeCap);
    const key = stagingKey(id);
    const holder = randomUUID();
    await this.deps.images.mutate(principal, id, (current) => {
      if (current.properties[IMPORT_LOCK])
        throw new ConflictError(`Image ${id} has an import in progress; it cannot be staged now.`);
      const now = this.deps.clock();
      return {
        ...transitionImage(current, 'uploading', now),
        lease: {
          holder,
          kind: 'stage',
          expires_at: leaseExpiry(now, this.deps.leaseMs),
          source: { bucket: this.deps.stagingBucket, key },
        },
      };
    });
    const heartbeat = new LeaseHeartbeat(
      this.deps.repo,
      id,
      holder,
      this.deps.leaseMs,
      this.deps.clock,
    ).start();
    // Staged bytes are only counted: the import inspects and hashes them when it copies them.
    const bytes = new BytePipeline(this.deps, {
      stages: [],
      sizeCap: this.deps.sizeCap,
      declaredSize,
      beforeBlock: () => heartbeat.check(),
    });
    try {
      // A stage that died before its clean-up may have left an object behind.
      await this.deps.staging.delete(key);
      await this.deps.staging.put(
        key,
        bytes.blocks(body),
        { onBlock: bytes.take },
        parseContentLength(options.contentLength),
      );
      const { size } = await bytes.finish();
      await heartbeat.stop();
      // Glance shows the staged size while the image is uploading (transcript #210). The data is
      // complete: the lease ends, and the image waits in `uploading` for POST /import, as in Glance.
      await this.deps.images.mutate(SYSTEM, id, (current) => {
        assertLeaseHeld(current, id, holder);
        const { lease: _done, ...rest } = current;
        const { [FAILED_UPLOAD]: _cleared, ...properties } = rest.properties;
        return { ...rest, properties, size, updated_at: isoSeconds(this.deps.clock()) };
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
            ? transitionImage(current, 'queued', this.deps.clock())
            : null,
        )
        .catch(() => undefined);
      throw error;
    }
  }
}
