/**
 * Image bytes as files under one directory (the embedded backend's default: the kernel moves the
 * bytes, not an S3 stand-in). The same promises as the S3 store: an object is written once, under
 * a temporary name beside its final one, fsync'd (file, then directory) before put() returns, and
 * linked into its final name, which link(2) refuses when it exists: never overwritten. It is
 * read-only from then on. The temporary name derives from the key (`<key>.partial`), so whoever
 * removes a dead upload's key (a failed upload, the lease sweep, the crash recovery at start-up)
 * removes its partial file too. Blocks from the block pool go back to it once written.
 */
import { closeSync, constants, mkdirSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { type FileHandle, link, mkdir, open, readdir, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import type { BlobPutHooks, BlobStore } from '#core/data/ports';
import { alignBlocksWith, isAlignedBlock, releaseBlock } from '../block-pool.ts';

const PARTIAL = '.partial';
/** Reads of 1 MiB: fewer, larger writes to the socket than the 64 KiB default. */
const READ_CHUNK = 1024 * 1024;
/** Keys are the service's own (`images/<id>/<uuid>`): path segments of safe characters only. */
const KEY_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;

export class FsBlobStore implements BlobStore {
  constructor(private readonly root: string) {
    // Pool blocks aligned for this disk's O_DIRECT are written as they are (see BlobWriter.write).
    alignBlocksWith(directAlignmentProbe(root));
  }

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
    const writer = await this.create(key);
    try {
      let blocks = 0;
      for await (const block of source) {
        await hooks.onBlock(block);
        blocks++;
        // Written: the block's taker's hold goes back to the pool (put owns the blocks it is given).
        await writer.write(block, () => releaseBlock(block));
        if (expectedSize !== undefined && writer.size > expectedSize)
          throw new Error(`body had more than the ${expectedSize} bytes announced`);
      }
      // Zero-length bodies still run the hooks once, as the S3 store does.
      if (blocks === 0) await hooks.onBlock(Buffer.alloc(0));
      await writer.commit(expectedSize);
      return { size: writer.size };
    } catch (error) {
      await writer.abort();
      throw error;
    }
  }

  /** A new object under `key`, written piece by piece; it exists once commit() resolves. */
  async create(key: string): Promise<BlobWriter> {
    const final = this.path(key);
    const created = await mkdir(dirname(final), { recursive: true, mode: 0o700 });
    // 'wx': a second writer of the same key fails here instead of sharing the file.
    const file = await open(`${final}${PARTIAL}`, 'wx', 0o600);
    return new BlobWriter(file, final, created, await openDirect(`${final}${PARTIAL}`));
  }

  async get(key: string, range?: { start: number; end: number }): Promise<FileBody> {
    // Opened first, so a missing object fails here (as S3's GetObject does), not mid-response.
    const file = await open(this.path(key), constants.O_RDONLY);
    try {
      const { size } = await file.stat();
      return new FileBody(file, range?.start ?? 0, range ? Math.min(range.end + 1, size) : size);
    } catch (error) {
      await file.close();
      throw error;
    }
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

/**
 * A stored file's bytes from `start` to `end` (exclusive): a Readable of 1 MiB reads for any
 * consumer, and sendTo(), which writes them to a socket from two reused buffers instead. Why:
 * each fresh 1 MiB read buffer is external memory to V8, and a GiB of them in a row set off
 * incremental full collections every ~80 ms in some runs (--trace-gc), which halved downloads.
 */
export class FileBody extends Readable {
  private position: number;

  constructor(
    private readonly file: FileHandle,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_CHUNK });
    this.position = start;
  }

  override _read(): void {
    const length = Math.min(READ_CHUNK, this.end - this.position);
    if (length <= 0) {
      this.push(null);
      return;
    }
    const buffer = Buffer.allocUnsafe(length);
    this.file.read(buffer, 0, length, this.position).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) return this.destroy(new Error('the file ended before its size'));
        this.position += bytesRead;
        this.push(bytesRead === length ? buffer : buffer.subarray(0, bytesRead));
      },
      (error: Error) => this.destroy(error),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.file.close().then(
      () => callback(error),
      () => callback(error),
    );
  }

  /**
   * Writes the bytes to `out` and ends it, each buffer read again only once `out` has taken it
   * (the write's callback). Rejects when `out` closes first (the client went away). The body is
   * destroyed (its file closed) either way; it must not also be read as a stream.
   */
  async sendTo(out: Writable): Promise<void> {
    const closed = new Promise<never>((_, reject) => {
      out.once('close', () => reject(new Error('the response closed before its end')));
    });
    closed.catch(() => undefined);
    const buffers: [Buffer, Buffer] = [Buffer.allocUnsafe(READ_CHUNK), Buffer.allocUnsafe(READ_CHUNK)];
    const sent: [Promise<void>, Promise<void>] = [Promise.resolve(), Promise.resolve()];
    try {
      for (let i: 0 | 1 = 0; this.position < this.end; i = i === 0 ? 1 : 0) {
        await Promise.race([sent[i], closed]);
        const length = Math.min(READ_CHUNK, this.end - this.position);
        const { bytesRead } = await this.file.read(buffers[i], 0, length, this.position);
        if (bytesRead === 0) throw new Error('the file ended before its size');
        this.position += bytesRead;
        const piece = buffers[i].subarray(0, bytesRead);
        const written = new Promise<void>((resolve, reject) => {
          out.write(piece, (error) => (error ? reject(error) : resolve()));
        });
        written.catch(() => undefined);
        sent[i] = written;
      }
      await Promise.race([Promise.all(sent), closed]);
      await Promise.race([new Promise<void>((resolve) => out.end(resolve)), closed]);
    } finally {
      this.destroy();
    }
  }
}

/** Below this much, pieces are gathered into one writev (socket-sized pieces cost a syscall each). */
const GATHER_BYTES = 8 * 1024 * 1024;

/**
 * O_DIRECT needs file offsets, lengths and memory aligned to the device's logical block size;
 * 4096 covers every size Linux disks use (512 or 4096).
 */
const ALIGN = 4096;
/** One staging buffer: what one direct write carries. */
const STAGE_BYTES = GATHER_BYTES;
/** Aligned staging buffers kept for reuse (two per upload in flight are in use at most). */
const MAX_FREE_STAGES = 8;
const freeStages: Buffer[] = [];

/**
 * The partial file opened a second time with O_DIRECT, or undefined where the file system
 * refuses it. Why: writing 1 GiB through the page cache and fsync'ing it cost the kernel 1.6-2.8
 * CPU-s on this project's machines (`dd conv=fsync`), against 0.1 with O_DIRECT: on two cores
 * that is CPU the two hash workers need. Downloads then read from disk, not from the cache.
 */
async function openDirect(path: string): Promise<FileHandle | undefined> {
  const direct = (constants as { O_DIRECT?: number }).O_DIRECT;
  if (direct === undefined) return undefined;
  return open(path, constants.O_WRONLY | direct).catch(() => undefined);
}

/**
 * Finds where in a block's memory O_DIRECT starts accepting it, by direct writes of ALIGN bytes to
 * a scratch file under `root`, unlinked as soon as it is opened and closed after the probe:
 * nothing stays on disk or open. Sync: the block pool asks only for fresh blocks, a few per
 * process. Undefined where O_DIRECT is refused.
 */
function directAlignmentProbe(root: string): (memory: Buffer) => number | undefined {
  return (memory) => {
    const direct = (constants as { O_DIRECT?: number }).O_DIRECT;
    if (direct === undefined) return undefined;
    const path = join(root, `align-probe-${process.pid}-${Date.now()}${PARTIAL}`);
    let fd: number;
    try {
      mkdirSync(root, { recursive: true, mode: 0o700 });
      fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | direct, 0o600);
    } catch {
      return undefined;
    }
    try {
      unlinkSync(path);
      // malloc'd large blocks start 16 bytes into a page: ALIGN - 16 is the usual answer, tried first.
      for (const offset of [ALIGN - 16, ...Array.from({ length: ALIGN / 16 }, (_, i) => i * 16)]) {
        if (offset + ALIGN > memory.length) continue;
        try {
          writeSync(fd, memory, offset, ALIGN, 0);
          return offset;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EINVAL') return undefined;
        }
      }
      return undefined;
    } finally {
      closeSync(fd);
    }
  };
}

/**
 * A STAGE_BYTES buffer whose memory O_DIRECT accepts. JavaScript cannot see a buffer's address,
 * so a fresh one is over-allocated by ALIGN and the kernel is asked: the first offset (malloc
 * aligns to 16) at which a direct write of ALIGN bytes to `direct` succeeds is aligned. The probe
 * writes at `position`, where the caller's next stage goes (so it is overwritten, or truncated
 * away at commit), never over bytes already written. Undefined when none is.
 */
async function takeStage(direct: FileHandle, position: number): Promise<Buffer | undefined> {
  const reused = freeStages.pop();
  if (reused) return reused;
  const memory = Buffer.alloc(STAGE_BYTES + ALIGN);
  for (let offset = 0; offset < ALIGN; offset += 16) {
    try {
      await direct.write(memory, offset, ALIGN, position);
      return memory.subarray(offset, offset + STAGE_BYTES);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
    }
  }
  return undefined;
}

function giveStage(stage: Buffer): void {
  if (freeStages.length < MAX_FREE_STAGES) freeStages.push(stage);
}

/**
 * `length` bytes of `stage` at `position`: the aligned part with O_DIRECT, the rest (the file's
 * last partial block, or anything after a short or refused direct write) through the page cache.
 */
async function writeStage(
  direct: FileHandle,
  buffered: FileHandle,
  stage: Buffer,
  length: number,
  position: number,
): Promise<{ refused: boolean }> {
  const aligned = length - (length % ALIGN);
  let done = 0;
  let refused = false;
  try {
    while (done < aligned) {
      const { bytesWritten } = await direct.write(stage, done, aligned - done, position + done);
      if (bytesWritten === 0) break;
      done += bytesWritten;
      if (done % ALIGN !== 0) break;
    }
  } catch (error) {
    // A device with stricter alignment than the staging buffer's: the page cache takes it.
    if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
    refused = true;
  }
  while (done < length) {
    const { bytesWritten } = await buffered.write(stage, done, length - done, position + done);
    if (bytesWritten === 0) throw new Error('write made no progress');
    done += bytesWritten;
  }
  return { refused };
}

/**
 * One object being written to `<final>.partial`: at most one write in flight while the caller
 * reads and hashes the next piece, then fsync, read-only, link(2) into the final name (which
 * fails if it exists) and fsync of the directories whose entries changed.
 */
export class BlobWriter {
  size = 0;
  private writing: Promise<void> = Promise.resolve();
  private gathered: Buffer[] = [];
  private gatheredBytes = 0;
  private afterGathered: Array<() => void> = [];
  private closed = false;
  /** With O_DIRECT: the buffer being filled, how much of it is, and where it goes in the file. */
  private stage: Buffer | undefined;
  private staged = 0;
  /** Bytes handed to a write so far: where the next write goes (all writes are positional). */
  private dispatched = 0;
  /** A direct write got EINVAL: the rest goes through the page cache. */
  private directRefused = false;

  constructor(
    private readonly file: FileHandle,
    private readonly final: string,
    /** The first directory mkdir created for it, if any. */
    private readonly created: string | undefined,
    /** The same file opened with O_DIRECT (see openDirect), if the file system allows it. */
    private direct?: FileHandle,
  ) {}

  /** Takes `piece` (which must not change until `written` is called) and resolves when it may take the next. */
  async write(piece: Buffer, written?: () => void): Promise<void> {
    if (this.direct && this.directRefused) await this.dropDirect();
    if (this.direct) {
      if (this.staged === 0 && this.dispatched % ALIGN === 0 && isAlignedBlock(piece)) {
        // A pool block O_DIRECT accepts: written as it is, handed back once on disk.
        this.size += piece.length;
        await this.sendDirect(piece, piece.length, () => written?.());
        return;
      }
      if (await this.stageCopy(piece)) {
        // Copied into the staging buffer: the piece is free again at once.
        written?.();
        return;
      }
    }
    this.size += piece.length;
    this.gathered.push(piece);
    this.gatheredBytes += piece.length;
    if (written) this.afterGathered.push(written);
    if (this.gatheredBytes >= GATHER_BYTES) await this.flush();
  }

  /**
   * Copies `piece` into aligned staging buffers, sending each full one to disk with one write in
   * flight. False (nothing taken) when no aligned buffer can be had: the writer then goes on
   * through the page cache.
   */
  private async stageCopy(piece: Buffer): Promise<boolean> {
    const direct = this.direct;
    if (!direct) return false;
    let from = 0;
    while (from < piece.length) {
      if (!this.stage) {
        const stage = await takeStage(direct, this.dispatched);
        if (!stage) {
          await this.dropDirect();
          if (from === 0) return false;
          // Part of the piece is staged already: the rest goes the buffered way (a copy, since
          // the caller may reuse the piece as soon as this returns).
          await this.write(Buffer.from(piece.subarray(from)));
          return true;
        }
        this.stage = stage;
      }
      const copied = piece.copy(this.stage, this.staged, from);
      this.staged += copied;
      this.size += copied;
      from += copied;
      if (this.staged === this.stage.length) await this.sendStage();
    }
    return true;
  }

  /** Sends the staging buffer (once the previous write is done) and starts a fresh one. */
  private async sendStage(): Promise<void> {
    await this.writing;
    const { stage, staged } = this;
    if (!stage) return;
    this.stage = undefined;
    this.staged = 0;
    await this.sendDirect(stage, staged, () => giveStage(stage));
  }

  /** `length` bytes of `buffer` (aligned memory) next in the file, once the previous write is done. */
  private async sendDirect(buffer: Buffer, length: number, done: () => void): Promise<void> {
    await this.writing;
    const direct = this.direct;
    if (!direct) throw new Error('no O_DIRECT descriptor');
    const position = this.dispatched;
    this.dispatched += length;
    this.writing = writeStage(direct, this.file, buffer, length, position)
      .then(({ refused }) => {
        if (refused) this.directRefused = true;
      })
      .finally(done);
    this.writing.catch(() => undefined);
  }

  /** No more O_DIRECT for this writer: what is staged is written, later writes go the buffered way. */
  private async dropDirect(): Promise<void> {
    await this.sendStage();
    await this.writing;
    const direct = this.direct;
    this.direct = undefined;
    await direct?.close();
  }

  private async flush(): Promise<void> {
    if (this.direct) return this.sendStage();
    await this.writing;
    const pieces = this.gathered;
    const callbacks = this.afterGathered;
    const position = this.dispatched;
    this.dispatched += this.gatheredBytes;
    this.gathered = [];
    this.gatheredBytes = 0;
    this.afterGathered = [];
    if (pieces.length === 0) return;
    this.writing = writeAll(this.file, pieces, position).then(() => {
      for (const done of callbacks) done();
    });
    // Seen by the next flush, commit or abort; not an unhandled rejection meanwhile.
    this.writing.catch(() => undefined);
  }

  async commit(expectedSize?: number): Promise<void> {
    await this.flush();
    await this.writing;
    if (expectedSize !== undefined && this.size !== expectedSize)
      throw new Error(`body had ${this.size} bytes, ${expectedSize} were announced`);
    const partial = `${this.final}${PARTIAL}`;
    if (this.direct) {
      await this.dropDirect();
      // Probing for an aligned stage wrote ALIGN bytes where that stage went, past the end when it is short.
      await this.file.truncate(this.size);
    }
    await this.file.sync();
    await this.file.chmod(0o400);
    this.closed = true;
    await this.file.close();
    try {
      // EEXIST when the key is taken: the existing object stays as it was.
      await link(partial, this.final);
    } finally {
      await unlink(partial).catch(() => undefined);
    }
    // The new name (and a new directory's own entry) must be on disk before the write is acknowledged.
    const directory = dirname(this.final);
    await syncDirectory(directory);
    if (this.created)
      for (let parent = dirname(directory); ; parent = dirname(parent)) {
        await syncDirectory(parent);
        if (parent === dirname(this.created) || parent === dirname(parent)) break;
      }
  }

  /** Drops the partial file; the object never existed. */
  async abort(): Promise<void> {
    await this.writing.catch(() => undefined);
    await this.direct?.close().catch(() => undefined);
    this.direct = undefined;
    if (this.stage) giveStage(this.stage);
    this.stage = undefined;
    if (!this.closed) await this.file.close().catch(() => undefined);
    this.closed = true;
    await removeFile(`${this.final}${PARTIAL}`).catch(() => undefined);
  }
}

async function writeAll(file: FileHandle, pieces: Buffer[], start: number): Promise<void> {
  let rest = pieces;
  let position = start;
  while (rest.length > 0) {
    let { bytesWritten } = await file.writev(rest, position);
    position += bytesWritten;
    // A short write: go on from the first byte not written.
    const next: Buffer[] = [];
    for (const piece of rest) {
      if (bytesWritten >= piece.length) bytesWritten -= piece.length;
      else {
        next.push(bytesWritten > 0 ? piece.subarray(bytesWritten) : piece);
        bytesWritten = 0;
      }
    }
    rest = next;
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
