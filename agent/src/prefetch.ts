/**
 * Keeps the images named in the config's `prefetch` list warm in the image cache, so the first boot from
 * e.g. `fedora:40` after a publish does not wait for the download.
 *
 * A pass resolves every entry through the service (a `name:tag` with GET /v1/references/{name:tag}, an id with
 * GET /v2/images/{id}), pins the resolved image ids in the cache (never evicted), then gets each image through
 * the cache's verified download path (`ensure`: sha512 while streaming, one download shared with a build job
 * that wants the same image). A pass runs after reconcile and then every interval, beside the job loop.
 *
 * Nothing here is fatal: a 404, an image that cannot be cached (not active, no sha512) or a failed download is
 * logged for its entry and the others go on. When an entry could not be resolved because the service failed
 * (transport error, 5xx), the image it resolved to in the previous pass stays pinned; when the reference moved,
 * was deleted or its image can no longer be cached, the old image is unpinned and becomes evictable.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from './errors.ts';
import { type ImageCache, type ImageRef, qemuFormatFor } from './image-cache.ts';
import { formatImageTarget, parseImageTarget } from './image-reference.ts';
import type { Logger } from './log.ts';
import type { ImageResolver, ServiceImage } from './service-client.ts';

export type PrefetchStatus = 'cached' | 'downloaded' | 'not_found' | 'skipped' | 'failed';

export interface PrefetchOutcome {
  /** The entry as configured, canonical (`fedora` becomes `fedora:latest`). */
  entry: string;
  status: PrefetchStatus;
  image_id?: string;
  /** For a reference: the namespace and reference it resolved to, e.g. `public/fedora:40`. */
  resolved_from?: string;
  reason?: string;
}

export interface PrefetcherOptions {
  entries: readonly string[];
  resolver: ImageResolver;
  cache: Pick<ImageCache, 'ensure' | 'isCached' | 'setPinned'>;
  log: Logger;
  intervalMs: number;
}

const SHA512_HEX = /^[0-9a-fA-F]{128}$/;

/** The ImageRef the cache needs, or why this image cannot be cached. */
export function cacheableRef(image: ServiceImage): ImageRef | { reason: string } {
  if (image.status !== 'active') return { reason: `image ${image.id} is ${image.status}, not active` };
  if (image.os_hash_algo !== 'sha512' || !image.os_hash_value || !SHA512_HEX.test(image.os_hash_value)) {
    return {
      reason: `image ${image.id} has no sha512 hash (os_hash_algo ${String(image.os_hash_algo ?? null)})`,
    };
  }
  if (!image.disk_format) return { reason: `image ${image.id} has no disk_format` };
  try {
    qemuFormatFor(image.disk_format);
  } catch (error) {
    return { reason: describeError(error) };
  }
  return {
    id: image.id,
    disk_format: image.disk_format,
    size: image.size ?? null,
    os_hash_algo: 'sha512',
    os_hash_value: image.os_hash_value,
  };
}

type Resolution =
  | { status: 'resolved'; ref: ImageRef; via?: string }
  | { status: 'not_found' | 'skipped' | 'failed'; reason: string };

export class Prefetcher {
  /** Canonical entries, without duplicates (`fedora` and `fedora:latest` are one). */
  readonly entries: readonly string[];
  /** What each entry resolved to in the last pass that could ask the service about it. */
  private readonly lastResolved = new Map<string, string>();

  constructor(private readonly options: PrefetcherOptions) {
    const canonical = new Set<string>();
    for (const text of options.entries) {
      const target = parseImageTarget(text);
      // config.ts validated every entry; an invalid one here is a programming error, reported per pass.
      canonical.add(target ? formatImageTarget(target) : text);
    }
    this.entries = [...canonical];
  }

  /** The image ids the cache currently keeps for prefetch. */
  pinned(): Set<string> {
    return new Set(this.lastResolved.values());
  }

  private async resolve(entry: string, signal: AbortSignal): Promise<Resolution> {
    const target = parseImageTarget(entry);
    if (!target) return { status: 'skipped', reason: 'neither an image id nor a name:tag reference' };
    let image: ServiceImage | null;
    let via: string | undefined;
    try {
      if (target.kind === 'id') {
        image = await this.options.resolver.getImage(target.id, signal);
      } else {
        const resolved = await this.options.resolver.resolveReference(entry, signal);
        image = resolved?.image ?? null;
        if (resolved) via = `${resolved.namespace}/${resolved.reference}`;
      }
    } catch (error) {
      return { status: 'failed', reason: describeError(error) };
    }
    if (image === null) {
      return {
        status: 'not_found',
        reason: target.kind === 'id' ? 'no such image (404)' : 'the reference does not resolve (404)',
      };
    }
    const ref = cacheableRef(image);
    if ('reason' in ref) return { status: 'skipped', reason: ref.reason };
    return { status: 'resolved', ref, ...(via === undefined ? {} : { via }) };
  }

  /** One pass: resolve every entry, pin what resolved, then make sure each image is cached. Never throws. */
  async pass(signal: AbortSignal): Promise<PrefetchOutcome[]> {
    const { log, cache } = this.options;
    const started = Date.now();
    const outcomes: PrefetchOutcome[] = [];
    const toFetch: Array<{ ref: ImageRef; outcome: PrefetchOutcome }> = [];

    for (const entry of this.entries) {
      if (signal.aborted) return outcomes;
      const resolution = await this.resolve(entry, signal);
      if (signal.aborted) return outcomes;
      if (resolution.status === 'resolved') {
        const previous = this.lastResolved.get(entry);
        if (previous !== undefined && previous !== resolution.ref.id) {
          log.info('prefetch: reference moved, the old image is no longer pinned', {
            entry,
            from: previous,
            to: resolution.ref.id,
          });
        }
        this.lastResolved.set(entry, resolution.ref.id);
        // Settled by the fetch below; what is left when the agent stops first.
        const outcome: PrefetchOutcome = {
          entry,
          status: 'skipped',
          image_id: resolution.ref.id,
          ...(resolution.via === undefined ? {} : { resolved_from: resolution.via }),
          reason: 'not fetched: the agent is stopping',
        };
        outcomes.push(outcome);
        toFetch.push({ ref: resolution.ref, outcome });
        continue;
      }
      const kept = this.lastResolved.get(entry);
      if (resolution.status === 'failed') {
        // The service could not answer: keep what this entry pointed to, it has not been shown to move.
        log.warn('prefetch: cannot resolve, skipped this pass', {
          entry,
          reason: resolution.reason,
          ...(kept === undefined ? {} : { still_pinned: kept }),
        });
      } else {
        this.lastResolved.delete(entry);
        log.warn(
          resolution.status === 'not_found'
            ? 'prefetch: not found, skipped'
            : 'prefetch: not cacheable, skipped',
          { entry, reason: resolution.reason },
        );
      }
      outcomes.push({ entry, status: resolution.status, reason: resolution.reason });
    }

    // Pinned before anything downloads, so one prefetch download never evicts another prefetched image.
    cache.setPinned(this.pinned());

    const done = new Map<string, PrefetchOutcome>();
    for (const { ref, outcome } of toFetch) {
      if (signal.aborted) break;
      const fields = {
        entry: outcome.entry,
        image_id: ref.id,
        ...(outcome.resolved_from === undefined ? {} : { resolved_from: outcome.resolved_from }),
      };
      // Two entries may name one image (`fedora:40` and `fedora:latest`): fetch it once.
      const same = done.get(ref.id);
      if (same) {
        outcome.status = same.status;
        if (same.reason === undefined) delete outcome.reason;
        else outcome.reason = same.reason;
        continue;
      }
      done.set(ref.id, outcome);
      try {
        if (await cache.isCached(ref)) {
          outcome.status = 'cached';
          delete outcome.reason;
          log.debug('prefetch: already cached', fields);
          continue;
        }
        const fetchStarted = Date.now();
        await cache.ensure(ref, signal);
        outcome.status = 'downloaded';
        delete outcome.reason;
        log.info('prefetch: image cached', { ...fields, elapsed_ms: Date.now() - fetchStarted });
      } catch (error) {
        if (signal.aborted) break;
        outcome.status = 'failed';
        outcome.reason = describeError(error);
        log.warn('prefetch: download failed', { ...fields, error });
      }
    }

    const counts: Record<PrefetchStatus, number> = {
      cached: 0,
      downloaded: 0,
      not_found: 0,
      skipped: 0,
      failed: 0,
    };
    for (const outcome of outcomes) counts[outcome.status] += 1;
    if (!signal.aborted) log.info('prefetch pass done', { ...counts, elapsed_ms: Date.now() - started });
    return outcomes;
  }

  /** A pass now, then one every interval, until `signal` aborts. Never throws. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.pass(signal);
      } catch (error) {
        // pass() catches per entry; this is the last line of defence for the agent's process.
        if (!signal.aborted) this.options.log.error('prefetch pass failed', { error });
      }
      await sleep(this.options.intervalMs, undefined, { signal }).catch(() => undefined);
    }
  }
}
