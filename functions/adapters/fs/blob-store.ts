/**
 * Image bytes as files under one directory (the embedded backend's default: the kernel moves the
 * bytes, not an S3 stand-in). The same promises as the S3 store: an object is written once, under
 * a temporary name beside its final one, fsync'd (file, then directory) before put() returns, and
 * linked into its final name, which link(2) refuses when it exists: never overwritten. It is
 * read-only from then on. The temporary name derives from the key (`<key>.partial`), so whoever
 * removes a dead upload's key (a failed upload, the lease sweep, the crash recovery at start-up)
 * removes its partial file too. Blocks from the block pool go back to it once written.
 */
import { constants, type ReadStream } from 'node:fs';
import { type FileHandle, link, mkdir, open, readdir, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import type { BlobPutHooks, BlobStore } from '#core/data/ports';
import { releaseBlock } from '../block-pool.ts';

const PARTIAL = '.partial';
/** Reads of 1 MiB: fewer, larger writes to the socket than the 64 KiB default. */
const READ_CHUNK = 1024 * 1024;
/** Keys are the service's own (`images/<id>/<uuid>`): path segments of safe characters only. */
const KEY_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;

export class FsBlobStore implements BlobStore {
  constructor(private readonly root: string) {}

  /** The file of `key`; a key that could name anything outside the root is refused. */
  private path(key: string): string {
    const segments = key.split('/');
    if (segments.some((s) => !KEY_SEGMENT.test(s) || s.endsWith(PARTIAL)))
      throw new Error(`not a blob key: ${JSON.stringify(key)}`);
    return join(this.root, ...segments);
  }

  async put(
    key: string,
    source: AsyncIterable<Buffer>,
    hooks: BlobPutHooks,
    expectedSize?: number,
  ): Promise<{ size: number }> {
    const final = this.path(key);
    const partial = `${final}${PARTIAL}`;
    const directory = dirname(final);
    const created = await mkdir(directory, { recursive: true, mode: 0o700 });
    // 'wx': a second writer of the same key fails here instead of sharing the file.
    const file = await open(partial, 'wx', 0o600);
    let size = 0;
    try {
      // One write in flight while the next block is read and hashed: disk and hashing overlap.
      let writing: Promise<void> = Promise.resolve();
      let blocks = 0;
      for await (const block of source) {
        await hooks.onBlock(block);
        blocks++;
        size += block.length;
        if (expectedSize !== undefined && size > expectedSize)
          throw new Error(`body had more than the ${expectedSize} bytes announced`);
        await writing;
        // Written: the block's taker's hold goes back to the pool (put owns the blocks it is given).
        writing = writeAll(file, block).then(() => releaseBlock(block));
      }
      // Zero-length bodies still run the hooks once, as the S3 store does.
      if (blocks === 0) await hooks.onBlock(Buffer.alloc(0));
      await writing;
      if (expectedSize !== undefined && size !== expectedSize)
        throw new Error(`body had ${size} bytes, ${expectedSize} were announced`);
      await file.sync();
      await file.chmod(0o400);
      await file.close();
    } catch (error) {
      await file.close().catch(() => undefined);
      await unlink(partial).catch(() => undefined);
      throw error;
    }
    try {
      // EEXIST when the key is taken: the existing object stays as it was.
      await link(partial, final);
    } finally {
      await unlink(partial).catch(() => undefined);
    }
    // The new name (and a new directory's own entry) must be on disk before the upload is acknowledged.
    await syncDirectory(directory);
    if (created)
      for (let parent = dirname(directory); ; parent = dirname(parent)) {
        await syncDirectory(parent);
        if (parent === dirname(created) || parent === dirname(parent)) break;
      }
    return { size };
  }

  async get(key: string, range?: { start: number; end: number }): Promise<ReadStream> {
    // Opened first, so a missing object fails here (as S3's GetObject does), not mid-response.
    const file = await open(this.path(key), constants.O_RDONLY);
    return file.createReadStream({
      highWaterMark: READ_CHUNK,
      ...(range ? { start: range.start, end: range.end } : {}),
    });
  }

  async delete(key: string): Promise<void> {
    const final = this.path(key);
    await Promise.all([removeFile(final), removeFile(`${final}${PARTIAL}`)]);
    // The image's directory goes with its last object.
    await rmdir(dirname(final)).catch(() => undefined);
  }

  async exists(key: string): Promise<boolean> {
    return (await this.size(key)) !== null;
  }

  /** The stored object's size, or null when there is none. */
  async size(key: string): Promise<number | null> {
    try {
      const found = await stat(this.path(key));
      return found.isFile() ? found.size : null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  presignedGet(): Promise<string> {
    return Promise.reject(
      new Error(
        'the fs blob store has no presigned URLs: HANGAR_BLOB_STORE=fs needs HANGAR_BLOB_DELIVERY=stream',
      ),
    );
  }

  /** Nothing is multipart here; the partial file goes with delete(). */
  async abortMultipart(): Promise<void> {}

  async deletePrefix(prefix: string): Promise<number> {
    let deleted = 0;
    for (const key of await this.keys(prefix)) {
      await this.delete(key);
      deleted++;
    }
    // Partial files of the prefix (a dead upload's) go too, uncounted, as S3 has no such objects.
    for (const file of await this.files(prefix)) {
      if (!file.endsWith(PARTIAL)) continue;
      await removeFile(file);
      await rmdir(dirname(file)).catch(() => undefined);
    }
    return deleted;
  }

  /** The keys of the stored objects under `prefix` (tests and tools; not part of the port). */
  async keys(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for (const file of await this.files(prefix)) {
      if (file.endsWith(PARTIAL)) continue;
      keys.push(relative(this.root, file).split(sep).join('/'));
    }
    return keys.sort();
  }

  /** Every file under the directory `prefix` falls in whose key starts with `prefix`. */
  private async files(prefix: string): Promise<string[]> {
    const slash = prefix.lastIndexOf('/');
    const base = slash === -1 ? this.root : join(this.root, ...prefix.slice(0, slash).split('/'));
    let entries: string[];
    try {
      entries = await readdir(base, { recursive: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const out: string[] = [];
    for (const entry of entries) {
      const file = join(base, entry);
      const key = relative(this.root, file).split(sep).join('/');
      if (!key.startsWith(prefix)) continue;
      if ((await stat(file).catch(() => undefined))?.isFile()) out.push(file);
    }
    return out;
  }
}

async function writeAll(file: FileHandle, block: Buffer): Promise<void> {
  for (let offset = 0; offset < block.length; ) {
    const { bytesWritten } = await file.write(block, offset, block.length - offset);
    offset += bytesWritten;
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
