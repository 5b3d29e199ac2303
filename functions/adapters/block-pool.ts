/**
 * Reused shared-memory blocks for the byte pipeline. A SharedArrayBuffer is not counted in the
 * heap the garbage collector watches, so fresh 8 MiB blocks of one 1 GiB upload piled up to
 * about 1 GiB of RSS before anything freed them (and each fresh block costs its page faults
 * again). Blocks taken here go back to a free list as soon as everyone who used them is done:
 * the taker's hold is given back by the store that wrote the block (releaseBlock), the digest
 * job holds it until both hash workers have read it. A block whose taker never gives it back
 * (a store that cannot tell when its transport is done with a buffer) is simply not reused and
 * left to the collector, as before: reuse is only ever the result of every hold being released.
 */

interface Entry {
  holds: number;
}

/** Free blocks kept at most, per size: enough for a few concurrent uploads' blocks in flight. */
const MAX_FREE = 24;

const outstanding = new WeakMap<ArrayBufferLike, Entry>();
const free = new Map<number, SharedArrayBuffer[]>();

/** A block of `size` bytes in shared memory, held once (by the taker). Its content is undefined. */
export function takeBlock(size: number): Buffer {
  const reused = free.get(size)?.pop();
  const memory = reused ?? new SharedArrayBuffer(size);
  outstanding.set(memory, { holds: 1 });
  return Buffer.from(memory);
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
  const list = free.get(memory.byteLength) ?? [];
  if (list.length < MAX_FREE) {
    list.push(memory as SharedArrayBuffer);
    free.set(memory.byteLength, list);
  }
}
