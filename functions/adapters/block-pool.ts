/**
 * Reused shared-memory blocks for the byte pipeline. A SharedArrayBuffer is not counted in the
 * heap the garbage collector watches, so fresh 8 MiB blocks of one 1 GiB upload piled up to
 * about 1 GiB of RSS before anything freed them (and each fresh block costs its page faults
 * again: a fresh block's first fill ran at ~460 MiB/s, a reused one's at several GB/s). Blocks
 * taken here go back to a free list as soon as everyone who used them is done: the taker's hold
 * is given back by whoever consumed the block last (the store that wrote it, or the pipeline's
 * drain), the digest job holds it until both hash workers have read it. A block whose taker
 * never gives it back (a store that cannot tell when its transport is done with a buffer) is
 * simply not reused and left to the collector: reuse is only ever the result of every hold
 * being released.
 *
 * Blocks can be aligned for O_DIRECT (see alignBlocksWith): then a file store writes them to
 * disk as they are, with no copy into an aligned buffer of its own.
 */

interface Entry {
  holds: number;
  /** The size asked for (the free list's key) and where the block starts in its memory. */
  size: number;
  offset: number;
  aligned: boolean;
}

interface FreeBlock {
  memory: SharedArrayBuffer;
  offset: number;
  aligned: boolean;
}

/** Free blocks kept at most, per size: enough for a few concurrent uploads' blocks in flight. */
const MAX_FREE = 24;
/** What O_DIRECT needs of memory on every Linux disk (logical blocks of 512 or 4096 bytes). */
export const DIRECT_ALIGN = 4096;

const outstanding = new WeakMap<ArrayBufferLike, Entry>();
const free = new Map<number, FreeBlock[]>();
/** The offset into `memory` at which O_DIRECT accepts it, or undefined (set by a file store). */
let findAlignedOffset: ((memory: Buffer) => number | undefined) | undefined;

/**
 * From now on, fresh blocks of at least DIRECT_ALIGN bytes are over-allocated by DIRECT_ALIGN and
 * start where `probe` says O_DIRECT accepts the memory. JavaScript cannot see an address, so
 * only a probe (a direct write) can tell.
 */
export function alignBlocksWith(probe: (memory: Buffer) => number | undefined): void {
  findAlignedOffset = probe;
}

function fresh(size: number): FreeBlock {
  if (findAlignedOffset && size >= DIRECT_ALIGN) {
    const memory = new SharedArrayBuffer(size + DIRECT_ALIGN);
    const offset = findAlignedOffset(Buffer.from(memory));
    if (offset !== undefined && offset + size <= memory.byteLength) return { memory, offset, aligned: true };
  }
  return { memory: new SharedArrayBuffer(size), offset: 0, aligned: false };
}

/** A block of `size` bytes in shared memory, held once (by the taker). Its content is undefined. */
export function takeBlock(size: number): Buffer {
  const block = free.get(size)?.pop() ?? fresh(size);
  outstanding.set(block.memory, { holds: 1, size, offset: block.offset, aligned: block.aligned });
  return Buffer.from(block.memory, block.offset, size);
}

/** Whether `view` starts a pooled block whose memory O_DIRECT accepts. */
export function isAlignedBlock(view: Uint8Array): boolean {
  const entry = outstanding.get(view.buffer);
  return entry?.aligned === true && view.byteOffset === entry.offset;
}

/** One more user of `block` (a view of a pooled block, or any other buffer: then a no-op). */
export function holdBlock(block: Uint8Array): void {
  const entry = outstanding.get(block.buffer);
  if (entry) entry.holds++;
}

/** Gives back one hold of `block`; the last one returns it to the free list. */
export function releaseBlock(block: Uint8Array): void {
  const memory = block.buffer;
  const entry = outstanding.get(memory);
  if (!entry) return;
  entry.holds--;
  if (entry.holds > 0) return;
  outstanding.delete(memory);
  const list = free.get(entry.size) ?? [];
  if (list.length < MAX_FREE) {
    list.push({ memory: memory as SharedArrayBuffer, offset: entry.offset, aligned: entry.aligned });
    free.set(entry.size, list);
  }
}
