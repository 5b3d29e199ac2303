/**
 * The fs BlobStore on a temporary directory: written once and read-only, never overwritten,
 * nothing left by a failed write, ranges, prefix deletion; and the block pool it feeds.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { alignBlocksWith, holdBlock, isAlignedBlock, releaseBlock, takeBlock } from '#adapters/block-pool';
import { FileBody, FsBlobStore } from '#adapters/fs/blob-store';

const MiB = 1024 * 1024;

let root: string;
let store: FsBlobStore;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'hangar-fs-blobs-'));
  store = new FsBlobStore(root);
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

async function* blocks(...parts: string[]): AsyncGenerator<Buffer> {
  for (const part of parts) yield Buffer.from(part);
}

async function text(stream: AsyncIterable<Buffer | string>): Promise<string> {
  let out = '';
  for await (const chunk of stream) out += chunk.toString();
  return out;
}

const noHooks = { onBlock: () => undefined };

describe('FsBlobStore', () => {
  it('stores the blocks in order as a read-only file, seen by the hooks first', async () => {
    const seen: string[] = [];
    const put = await store.put('images/a/1', blocks('hello ', 'world'), {
      onBlock: (block) => void seen.push(block.toString()),
    });
    expect(put).toEqual({ size: 11 });
    expect(seen).toEqual(['hello ', 'world']);
    expect(await text(await store.get('images/a/1'))).toBe('hello world');
    expect(statSync(join(root, 'images', 'a', '1')).mode & 0o777).toBe(0o400);
    expect(await store.exists('images/a/1')).toBe(true);
    expect(await store.size('images/a/1')).toBe(11);
    expect(await readdir(join(root, 'images', 'a'))).toEqual(['1']);
  });

  it('serves a byte range', async () => {
    await store.put('images/a/1', blocks('0123456789'), noHooks);
    expect(await text(await store.get('images/a/1', { start: 2, end: 5 }))).toBe('2345');
  });

  it('runs the hooks once for an empty body', async () => {
    let calls = 0;
    expect(await store.put('images/a/empty', blocks(), { onBlock: () => void calls++ })).toEqual({ size: 0 });
    expect(calls).toBe(1);
  });

  it('never overwrites an existing object', async () => {
    await store.put('images/a/1', blocks('first'), noHooks);
    await expect(store.put('images/a/1', blocks('second'), noHooks)).rejects.toThrow(/EEXIST/);
    expect(await text(await store.get('images/a/1'))).toBe('first');
    expect(await readdir(join(root, 'images', 'a'))).toEqual(['1']);
  });

  it('leaves nothing when a hook refuses a block or the size is not the announced one', async () => {
    const refusing = {
      onBlock: (block: Buffer) => {
        if (block.toString() === 'two') throw new Error('refused');
      },
    };
    await expect(store.put('images/a/1', blocks('one', 'two'), refusing)).rejects.toThrow('refused');
    await expect(store.put('images/a/2', blocks('12345'), noHooks, 4)).rejects.toThrow(/more than the 4/);
    await expect(store.put('images/a/3', blocks('123'), noHooks, 4)).rejects.toThrow(/3 bytes, 4/);
    expect(await readdir(join(root, 'images', 'a'))).toEqual([]);
    expect(await store.exists('images/a/1')).toBe(false);
  });

  it('delete removes the object and a dead write’s partial file; deletePrefix counts objects', async () => {
    await store.put('images/a/1', blocks('x'), noHooks);
    await store.put('images/a/2', blocks('y'), noHooks);
    await store.put('images/b/1', blocks('z'), noHooks);
    // What a server that died mid-write leaves.
    writeFileSync(join(root, 'images', 'a', '3.partial'), 'half');
    expect(await store.keys('images/a/')).toEqual(['images/a/1', 'images/a/2']);
    expect(await store.deletePrefix('images/a/')).toBe(2);
    expect(await store.keys('images/')).toEqual(['images/b/1']);
    await expect(readdir(join(root, 'images', 'a'))).rejects.toThrow(/ENOENT/);

    writeFileSync(join(root, 'images', 'b', '2.partial'), 'half');
    await store.delete('images/b/2');
    await store.delete('images/b/1');
    await store.delete('images/b/1');
    expect(await store.keys('images/')).toEqual([]);
  });

  it('refuses keys that could leave the directory or name a partial file', async () => {
    for (const key of ['../x', 'images/../../x', '/etc/passwd', 'images//x', 'images/a/1.partial', '.hidden'])
      await expect(store.put(key, blocks('x'), noHooks), key).rejects.toThrow(/not a blob key/);
  });

  it('has no presigned URLs', async () => {
    await expect(store.presignedGet()).rejects.toThrow(/HANGAR_BLOB_DELIVERY=stream/);
  });

  it('a file body sends itself to a socket-like writable, whole or a range, and ends it', async () => {
    const whole = randomBytes(2 * MiB + 777);
    await store.put('images/s/1', each([whole]), noHooks);
    for (const range of [undefined, { start: 5, end: MiB + 10 }, { start: 2 * MiB, end: 3 * MiB }]) {
      const chunks: Buffer[] = [];
      let ended = false;
      const out = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          // Copied only when the write completes: a buffer reused before that would show here.
          setTimeout(() => {
            chunks.push(Buffer.from(chunk));
            callback();
          }, 5);
        },
        final(callback) {
          ended = true;
          callback();
        },
      });
      const body = await store.get('images/s/1', range);
      expect(body).toBeInstanceOf(FileBody);
      await body.sendTo(out);
      const expected = range ? whole.subarray(range.start, range.end + 1) : whole;
      expect(Buffer.concat(chunks).equals(expected)).toBe(true);
      expect(ended).toBe(true);
      expect(body.destroyed).toBe(true);
    }
  });

  it('a file body stops when the writable closes mid-way, and closes its file', async () => {
    await store.put('images/s/2', each([randomBytes(8 * MiB)]), noHooks);
    let writes = 0;
    const out = new Writable({
      write(_chunk, _encoding, callback) {
        writes++;
        // The client goes away after the first piece; that write never completes.
        if (writes === 1) setImmediate(() => out.destroy());
        else callback();
      },
    });
    const body = await store.get('images/s/2');
    await expect(body.sendTo(out)).rejects.toThrow(/closed before its end/);
    expect(writes).toBeLessThanOrEqual(2);
    expect(body.destroyed).toBe(true);
  });

  it('gives pooled blocks back once written (and reuses them)', async () => {
    const block = takeBlock(4096);
    block.fill(7);
    async function* one() {
      yield block;
    }
    await store.put('images/p/1', one(), noHooks);
    // The store gave back the only hold: the next block of that size is the same memory.
    expect(takeBlock(4096).buffer).toBe(block.buffer);
  });
});

/** `size` pseudo-random bytes cut into pieces of `pieceSize` (not a multiple of any alignment). */
function randomPieces(size: number, pieceSize: number): { pieces: Buffer[]; digest: string } {
  const whole = randomBytes(size);
  const pieces: Buffer[] = [];
  for (let at = 0; at < size; at += pieceSize)
    pieces.push(whole.subarray(at, Math.min(size, at + pieceSize)));
  return { pieces, digest: createHash('sha256').update(whole).digest('hex') };
}

async function* each(pieces: Buffer[]): AsyncGenerator<Buffer> {
  yield* pieces;
}

async function storedDigest(s: FsBlobStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await s.get(key)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Whether `dir`'s file system lets a file be opened with O_DIRECT. */
function directAllowed(dir: string): boolean {
  const direct = (constants as { O_DIRECT?: number }).O_DIRECT;
  if (direct === undefined) return false;
  const path = join(dir, 'direct-check');
  try {
    closeSync(openSync(path, constants.O_WRONLY | constants.O_CREAT | direct));
    return true;
  } catch {
    return false;
  } finally {
    rmSync(path, { force: true });
  }
}

/** The pipeline's block size. */
const BLOCK = 8 * MiB;

// Sizes around the 4 KiB alignment of O_DIRECT and the 8 MiB staging buffers.
const EDGE_SIZES = [1, 4095, 4096, 4097, 8 * MiB - 1, 8 * MiB, 8 * MiB + 4097, 20 * MiB + 123];

describe.each([
  // ext4 (or whatever the temporary directory is): written with O_DIRECT where the kernel allows it.
  ['the temporary directory', () => tmpdir()],
  // tmpfs: O_DIRECT refused (or emulated, on newer kernels): the page-cache path.
  ['tmpfs', () => '/dev/shm'],
])('FsBlobStore bytes on %s', (_name, base) => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(base(), 'hangar-fs-bytes-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it.each(EDGE_SIZES)('stores %i bytes exactly, from odd-sized pieces', async (size) => {
    const bytes = new FsBlobStore(dir);
    const { pieces, digest } = randomPieces(size, 65_536 + 7);
    expect(await bytes.put('images/x/1', each(pieces), noHooks, size)).toEqual({ size });
    expect(statSync(join(dir, 'images', 'x', '1')).size).toBe(size);
    expect(await storedDigest(bytes, 'images/x/1')).toBe(digest);
  });

  it('writes pool blocks as they are and gives each back once written', async () => {
    const bytes = new FsBlobStore(dir);
    const whole = randomBytes(2 * BLOCK + 5000);
    const pooled = [0, 1, 2].map((n) => {
      const block = takeBlock(BLOCK);
      whole.copy(block, 0, n * BLOCK, (n + 1) * BLOCK);
      return n === 2 ? block.subarray(0, 5000) : block;
    });
    // Where the file system takes O_DIRECT, the pool's blocks are aligned for it (probed by the store).
    if (directAllowed(dir)) for (const block of pooled) expect(isAlignedBlock(block)).toBe(true);
    await bytes.put('images/p/2', each(pooled), noHooks, whole.length);
    expect(await storedDigest(bytes, 'images/p/2')).toBe(createHash('sha256').update(whole).digest('hex'));
    const memories = new Set(pooled.map((block) => block.buffer));
    expect(memories.has(takeBlock(BLOCK).buffer)).toBe(true);
  });

  it('goes on through the page cache when a block it took for aligned is refused', async () => {
    const bytes = new FsBlobStore(dir);
    // A probe that lies: blocks of this size start 100 bytes in, which O_DIRECT refuses (EINVAL).
    alignBlocksWith(() => 100);
    const size = 64 * 4096;
    const whole = randomBytes(3 * size);
    const pooled = [0, 1, 2].map((n) => {
      const block = takeBlock(size);
      expect(block.byteOffset).toBe(100);
      whole.copy(block, 0, n * size, (n + 1) * size);
      return block;
    });
    await bytes.put('images/p/3', each(pooled), noHooks, whole.length);
    expect(await storedDigest(bytes, 'images/p/3')).toBe(createHash('sha256').update(whole).digest('hex'));
  });

  it('keeps concurrent writers apart (each takes its own staging buffers)', async () => {
    const bytes = new FsBlobStore(dir);
    const uploads = [0, 1, 2].map((n) => ({
      key: `images/c/${n}`,
      ...randomPieces(17 * MiB + n * 999, 1 * MiB + 3),
    }));
    await Promise.all(uploads.map((u) => bytes.put(u.key, each(u.pieces), noHooks)));
    for (const u of uploads) expect(await storedDigest(bytes, u.key)).toBe(u.digest);
  });
});

describe('the block pool', () => {
  it('reuses a block only after every hold is released', () => {
    const block = takeBlock(1024);
    holdBlock(block);
    releaseBlock(block);
    const other = takeBlock(1024);
    expect(other.buffer).not.toBe(block.buffer);
    releaseBlock(block.subarray(0, 10));
    expect(takeBlock(1024).buffer).toBe(block.buffer);
  });

  it('hands out aligned blocks where a probe says their memory starts, and keeps that on reuse', () => {
    // A size no other test takes: these blocks are not really aligned.
    const size = 3 * 4096;
    alignBlocksWith(() => 48);
    const block = takeBlock(size);
    expect([block.byteOffset, block.length, block.buffer.byteLength]).toEqual([48, size, size + 4096]);
    expect(isAlignedBlock(block)).toBe(true);
    expect(isAlignedBlock(block.subarray(0, 10))).toBe(true);
    expect(isAlignedBlock(block.subarray(1))).toBe(false);
    expect(isAlignedBlock(Buffer.alloc(size))).toBe(false);
    releaseBlock(block);
    alignBlocksWith(() => undefined);
    const again = takeBlock(size);
    expect(again.buffer).toBe(block.buffer);
    expect([again.byteOffset, again.length]).toEqual([48, size]);
    // Fresh blocks where no offset works are plain ones.
    expect(isAlignedBlock(takeBlock(size))).toBe(false);
  });

  it('ignores buffers it did not hand out', () => {
    const plain = Buffer.alloc(1024);
    holdBlock(plain);
    releaseBlock(plain);
    expect(takeBlock(1024).buffer).not.toBe(plain.buffer);
  });
});
