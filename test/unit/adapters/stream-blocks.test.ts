/** streamBlocks (adapters/stream-blocks.ts): a stream regrouped into pool blocks, with read-ahead. */
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { takeBlock } from '#adapters/block-pool';
import { streamBlocks } from '#adapters/stream-blocks';

const BLOCK = 64 * 1024;

function pieces(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
  return out;
}

describe('streamBlocks', () => {
  it('regroups odd-sized pieces into whole blocks in shared memory, the last one shorter', async () => {
    const bytes = randomBytes(3 * BLOCK + 1234);
    const seen: Buffer[] = [];
    for await (const block of streamBlocks(Readable.from(pieces(bytes, 10_007)), BLOCK))
      seen.push(Buffer.from(block));
    expect(seen.map((b) => b.length)).toEqual([BLOCK, BLOCK, BLOCK, 1234]);
    expect(Buffer.concat(seen).equals(bytes)).toBe(true);
  });

  it('yields nothing for an empty stream', async () => {
    const seen: Buffer[] = [];
    for await (const block of streamBlocks(Readable.from([]), BLOCK)) seen.push(block);
    expect(seen).toEqual([]);
  });

  it('reads ahead two blocks while the consumer is busy, then pauses the stream', async () => {
    const source = new PassThrough();
    const blocks = streamBlocks(source, BLOCK);
    const first = blocks.next();
    for (let i = 0; i < 5; i++) source.write(Buffer.alloc(BLOCK, i));
    expect((await first).value?.[0]).toBe(0);
    // Two full blocks are queued beyond the one handed out: the stream stopped flowing.
    await new Promise((resolve) => setImmediate(resolve));
    expect(source.isPaused()).toBe(true);
    source.end();
    const rest: number[] = [];
    for await (const block of { [Symbol.asyncIterator]: () => blocks }) rest.push(block[0] ?? -1);
    expect(rest).toEqual([1, 2, 3, 4]);
  });

  it('throws the stream’s error, and a stream that closes before its end is an error', async () => {
    const failing = new PassThrough();
    const reading = (async () => {
      for await (const _ of streamBlocks(failing, BLOCK));
    })();
    failing.write(Buffer.alloc(100));
    failing.destroy(new Error('socket reset'));
    await expect(reading).rejects.toThrow('socket reset');

    const cut = new PassThrough();
    const cutReading = (async () => {
      for await (const _ of streamBlocks(cut, BLOCK));
    })();
    cut.write(Buffer.alloc(100));
    cut.destroy();
    await expect(cutReading).rejects.toThrow(/closed before its end/);
  });

  it('a consumer that stops early destroys the stream and gives the unread blocks back', async () => {
    const source = new PassThrough();
    const blocks = streamBlocks(source, 3 * BLOCK);
    const first = blocks.next();
    for (let i = 0; i < 3; i++) source.write(Buffer.alloc(3 * BLOCK, i));
    const handed = (await first).value as Buffer;
    await new Promise((resolve) => setImmediate(resolve));
    await blocks.return(undefined);
    expect(source.destroyed).toBe(true);
    // The two queued blocks (filled with 1s and 2s) went back to the pool: the next two taken are
    // them, not fresh zeroed memory. The handed-out one is the consumer's to give back.
    const next = [takeBlock(3 * BLOCK), takeBlock(3 * BLOCK)];
    expect(next.map((b) => b[0]).sort()).toEqual([1, 2]);
    expect(next.some((b) => b.buffer === handed.buffer)).toBe(false);
  });
});
