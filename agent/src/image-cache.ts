/**
 * The host's cache of base images (testcloud's "backing stores", with verification it never had).
 *
 * - A download goes to a temp file in the cache dir, hashed with sha512 while it streams, and is renamed
 *   into place only when the hash equals the service's os_hash_value. A mismatch is deleted, never used.
 * - Concurrent requests for one image share one download (in-flight promise map).
 * - Each cached file has a stamp (sha512, size, mtime). A file whose size or mtime no longer match its stamp
 *   is re-hashed (with verify 'always': before every use) and, if corrupted, deleted and fetched again.
 * - The cache is capped in bytes: least-recently-used images that no instance uses are evicted. Pinned images
 *   (the ones the prefetcher keeps warm, see prefetch.ts) are kept as well.
 * - qemu-img inspects each new image with the declared format: images with a backing file or an external
 *   data file are refused (a guest must not be able to name a host file as its disk).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { ExecError, ImageChecksumError, ImageDownloadError, ImageFormatError } from './errors.ts';
import { run } from './exec.ts';
import { type Logger, silentLogger } from './log.ts';

export interface ImageRef {
  id: string;
  disk_format: string;
  size?: number | null;
  os_hash_algo: 'sha512';
  os_hash_value: string;
}

export interface CachedImage {
  id: string;
  path: string;
  /** qemu's name for the format (Glance 'vhd' is qemu 'vpc'). */
  format: string;
  size: number;
  virtualSize: number;
  sha512: string;
}

export interface ImageSource {
  open(imageId: string, signal: AbortSignal): Promise<{ body: Readable; contentLength?: number }>;
}

const QEMU_FORMATS: Record<string, string> = {
  qcow2: 'qcow2',
  raw: 'raw',
  vmdk: 'vmdk',
  vdi: 'vdi',
  vhd: 'vpc',
  vhdx: 'vhdx',
};

export function qemuFormatFor(diskFormat: string): string {
  const format = QEMU_FORMATS[diskFormat];
  if (format === undefined) {
    throw new ImageFormatError(`disk_format ${diskFormat} cannot back an instance disk`);
  }
  return format;
}

const StampSchema = z.object({
  image_id: z.string(),
  sha512: z.string(),
  size: z.number(),
  mtime_ms: z.number(),
  format: z.string(),
  virtual_size: z.number(),
  verified_at: z.string(),
  last_used_at: z.number(),
});
type Stamp = z.infer<typeof StampSchema>;

const QemuImgInfoSchema = z.object({
  format: z.string(),
  'virtual-size': z.number(),
  'backing-filename': z.string().optional(),
  'full-backing-filename': z.string().optional(),
  'format-specific': z
    .object({ data: z.object({ 'data-file': z.string().optional() }).loose().optional() })
    .loose()
    .optional(),
});

export interface ImageCacheOptions {
  dir: string;
  maxBytes: number;
  source: ImageSource;
  /** Image ids that instances on this host use: never evicted. */
  imagesInUse: () => Promise<Set<string>>;
  verify?: 'stamp' | 'always';
  downloadTimeoutMs?: number;
  log?: Logger;
  /** Aborts downloads in flight (agent shutdown). */
  signal?: AbortSignal;
}

export async function sha512File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(path, { signal })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function raceSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

export class ImageCache {
  private readonly inflight = new Map<string, Promise<CachedImage>>();
  private pinned: ReadonlySet<string> = new Set();
  private readonly log: Logger;
  private readonly verify: 'stamp' | 'always';
  private tempCounter = 0;

  constructor(private readonly options: ImageCacheOptions) {
    this.log = options.log ?? silentLogger;
    this.verify = options.verify ?? 'stamp';
  }

  get dir(): string {
    return this.options.dir;
  }

  pathFor(imageId: string): string {
    return join(this.options.dir, `${imageId}.img`);
  }

  private stampPathFor(imageId: string): string {
    return join(this.options.dir, `${imageId}.stamp.json`);
  }

  /** Creates the cache dir (traversable by libvirt-qemu) and drops temp files left by a killed agent. */
  async init(): Promise<void> {
    await mkdir(this.options.dir, { recursive: true });
    await chmod(this.options.dir, 0o755);
    for (const name of await readdir(this.options.dir)) {
      if (name.startsWith('.part-')) await rm(join(this.options.dir, name), { force: true });
    }
  }

  /** A verified local copy of the image; shares a download already under way for the same image. */
  ensure(image: ImageRef, signal?: AbortSignal): Promise<CachedImage> {
    let shared = this.inflight.get(image.id);
    if (!shared) {
      shared = this.verifyOrFetch(image).finally(() => this.inflight.delete(image.id));
      this.inflight.set(image.id, shared);
    }
    // Each caller may give up (its job was aborted) without cancelling the download for the others.
    return raceSignal(shared, signal);
  }

  /**
   * Image ids never evicted besides those instances use: the images the latest prefetch pass resolved.
   * Replaces the previous set, so an image a reference no longer points to becomes evictable again.
   */
  setPinned(imageIds: Iterable<string>): void {
    this.pinned = new Set(imageIds);
  }

  /**
   * True when a copy is cached and its stamp still holds (same sha512 and format, size and mtime unchanged).
   * Cheap: nothing is hashed. What `ensure` would trust in `stamp` mode without re-reading the bytes.
   */
  async isCached(image: ImageRef): Promise<boolean> {
    const current = await stat(this.pathFor(image.id)).catch(() => undefined);
    if (!current) return false;
    return (await this.holdingStamp(image, qemuFormatFor(image.disk_format), current)) !== undefined;
  }

  private async holdingStamp(
    image: ImageRef,
    format: string,
    current: { size: number; mtimeMs: number },
  ): Promise<Stamp | undefined> {
    const stamp = await this.readStamp(image.id);
    const holds =
      stamp !== undefined &&
      stamp.sha512 === image.os_hash_value.toLowerCase() &&
      stamp.format === format &&
      stamp.size === current.size &&
      stamp.mtime_ms === current.mtimeMs;
    return holds ? stamp : undefined;
  }

  private async readStamp(imageId: string): Promise<Stamp | undefined> {
    try {
      return StampSchema.parse(JSON.parse(await readFile(this.stampPathFor(imageId), 'utf8')));
    } catch {
      return undefined;
    }
  }

  private async writeStamp(stamp: Stamp): Promise<void> {
    const tmp = join(this.options.dir, `.part-stamp-${stamp.image_id}-${process.pid}-${this.tempCounter++}`);
    await writeFile(tmp, `${JSON.stringify(stamp)}\n`, { mode: 0o644 });
    await rename(tmp, this.stampPathFor(stamp.image_id));
  }

  private async discard(imageId: string, why: string): Promise<void> {
    this.log.warn('discarding cached image', { image_id: imageId, reason: why });
    await rm(this.pathFor(imageId), { force: true });
    await rm(this.stampPathFor(imageId), { force: true });
  }

  private async verifyOrFetch(image: ImageRef): Promise<CachedImage> {
    if (image.os_hash_algo !== 'sha512') {
      throw new ImageFormatError(
        `image ${image.id}: os_hash_algo ${String(image.os_hash_algo)} is not sha512`,
      );
    }
    const format = qemuFormatFor(image.disk_format);
    const expected = image.os_hash_value.toLowerCase();
    const path = this.pathFor(image.id);

    const current = await stat(path).catch(() => undefined);
    if (current) {
      const stamp = await this.holdingStamp(image, format, current);
      if (stamp && this.verify === 'stamp') {
        await this.writeStamp({ ...stamp, last_used_at: Date.now() });
        return this.toCached(image.id, stamp);
      }
      // Stamp missing or stale, or paranoid mode: the bytes decide.
      const actual = await sha512File(path, this.options.signal);
      const sizeOk = image.size === undefined || image.size === null || image.size === current.size;
      if (actual === expected && sizeOk) {
        const virtualSize = stamp ? stamp.virtual_size : await this.inspect(path, format, image.id);
        const fresh = await this.stampFor(image.id, expected, format, virtualSize);
        await this.writeStamp(fresh);
        return this.toCached(image.id, fresh);
      }
      await this.discard(
        image.id,
        `cached copy does not match (sha512 ${actual.slice(0, 16)}…, size ${current.size})`,
      );
    }
    return this.download(image, format, expected);
  }

  private async download(image: ImageRef, format: string, expected: string): Promise<CachedImage> {
    await this.evict(image.size ?? 0, new Set([image.id]));
    const tmp = join(this.options.dir, `.part-${image.id}-${process.pid}-${this.tempCounter++}`);
    const timeout = AbortSignal.timeout(this.options.downloadTimeoutMs ?? 30 * 60_000);
    const signal = this.options.signal ? AbortSignal.any([this.options.signal, timeout]) : timeout;
    const started = Date.now();
    try {
      const { body, contentLength } = await this.options.source.open(image.id, signal);
      if (image.size != null && contentLength !== undefined && contentLength !== image.size) {
        body.destroy();
        throw new ImageDownloadError(
          `image ${image.id}: server sends ${contentLength} bytes, expected ${image.size}`,
        );
      }
      const hash = createHash('sha512');
      let bytes = 0;
      const hasher = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          bytes += chunk.length;
          callback(null, chunk);
        },
      });
      try {
        await pipeline(body, hasher, createWriteStream(tmp, { mode: 0o644 }), { signal });
      } catch (error) {
        if (timeout.aborted)
          throw new ImageDownloadError(`image ${image.id}: download timed out`, { cause: error });
        throw new ImageDownloadError(`image ${image.id}: download failed`, { cause: error });
      }
      const actual = hash.digest('hex');
      if (image.size != null && bytes !== image.size) {
        throw new ImageDownloadError(`image ${image.id}: received ${bytes} bytes, expected ${image.size}`);
      }
      if (actual !== expected) throw new ImageChecksumError(image.id, expected, actual);
      const virtualSize = await this.inspect(tmp, format, image.id);
      await chmod(tmp, 0o644);
      await rename(tmp, this.pathFor(image.id));
      const stamp = await this.stampFor(image.id, expected, format, virtualSize);
      await this.writeStamp(stamp);
      this.log.info('image cached', { image_id: image.id, bytes, elapsed_ms: Date.now() - started });
      await this.evict(0, new Set([image.id]));
      return this.toCached(image.id, stamp);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** qemu-img's view of the image, read with the declared format (never probed). */
  private async inspect(path: string, format: string, imageId: string): Promise<number> {
    let stdout: string;
    try {
      ({ stdout } = await run('qemu-img', ['info', '-U', '--output=json', '-f', format, path], {
        timeoutMs: 60_000,
        signal: this.options.signal,
      }));
    } catch (error) {
      if (error instanceof ExecError && error.details.reason === 'exit') {
        throw new ImageFormatError(`image ${imageId} is not a valid ${format} image`, { cause: error });
      }
      throw error;
    }
    const info = QemuImgInfoSchema.parse(JSON.parse(stdout));
    if (info['backing-filename'] !== undefined || info['full-backing-filename'] !== undefined) {
      throw new ImageFormatError(
        `image ${imageId} has a backing file (${info['backing-filename']}); refused`,
      );
    }
    if (info['format-specific']?.data?.['data-file'] !== undefined) {
      throw new ImageFormatError(`image ${imageId} has an external data file; refused`);
    }
    return info['virtual-size'];
  }

  private async stampFor(
    imageId: string,
    sha512: string,
    format: string,
    virtualSize: number,
  ): Promise<Stamp> {
    const st = await stat(this.pathFor(imageId));
    return {
      image_id: imageId,
      sha512,
      size: st.size,
      mtime_ms: st.mtimeMs,
      format,
      virtual_size: virtualSize,
      verified_at: new Date().toISOString(),
      last_used_at: Date.now(),
    };
  }

  private toCached(imageId: string, stamp: Stamp): CachedImage {
    return {
      id: imageId,
      path: this.pathFor(imageId),
      format: stamp.format,
      size: stamp.size,
      virtualSize: stamp.virtual_size,
      sha512: stamp.sha512,
    };
  }

  /** Images in the cache, least recently used first. */
  async entries(): Promise<Array<{ id: string; size: number; lastUsedAt: number }>> {
    const result: Array<{ id: string; size: number; lastUsedAt: number }> = [];
    for (const name of await readdir(this.options.dir).catch(() => [] as string[])) {
      if (!name.endsWith('.img') || name.startsWith('.')) continue;
      const id = name.slice(0, -'.img'.length);
      const st = await stat(join(this.options.dir, name)).catch(() => undefined);
      if (!st) continue;
      const stamp = await this.readStamp(id);
      result.push({ id, size: st.size, lastUsedAt: stamp?.last_used_at ?? st.mtimeMs });
    }
    return result.sort((a, b) => a.lastUsedAt - b.lastUsedAt);
  }

  /** Evict LRU images nobody uses (no instance, not pinned, not in `keep`) until `needBytes` more fit under the cap. */
  async evict(needBytes: number, keep: Set<string> = new Set()): Promise<string[]> {
    const entries = await this.entries();
    let total = entries.reduce((sum, entry) => sum + entry.size, 0);
    if (total + needBytes <= this.options.maxBytes) return [];
    const inUse = await this.options.imagesInUse();
    const evicted: string[] = [];
    for (const entry of entries) {
      if (total + needBytes <= this.options.maxBytes) break;
      if (
        keep.has(entry.id) ||
        this.pinned.has(entry.id) ||
        inUse.has(entry.id) ||
        this.inflight.has(entry.id)
      )
        continue;
      await this.discard(entry.id, 'evicted (least recently used, no instance uses it)');
      total -= entry.size;
      evicted.push(entry.id);
    }
    if (total + needBytes > this.options.maxBytes) {
      this.log.warn('image cache over its cap: the rest is in use or pinned by prefetch', {
        total_bytes: total,
        need_bytes: needBytes,
        max_bytes: this.options.maxBytes,
      });
    }
    return evicted;
  }
}
