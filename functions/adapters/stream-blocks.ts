/**
 * A Node stream regrouped into pool blocks as its pieces arrive ('data' events), with up to
 * READ_AHEAD full blocks queued before the stream is paused. Why not `for await` over the stream
 * and core's rechunk: that costs a promise and a turn of the microtask queue for each of the
 * ~16,000 socket-sized pieces of a GiB, and nothing reads the socket while the consumer is busy
 * with a block (writing it, waiting for the hash workers); here the socket keeps being read while
 * the consumer works, up to the read-ahead.
 *
 * Each block is yielded with the taker's hold (block-pool.ts): whoever consumes it gives it
 * back. The last block may be shorter. A stream error is thrown from the generator; a consumer
 * that stops early destroys the stream.
 */
import type { Readable } from 'node:stream';
import { releaseBlock, takeBlock } from './block-pool.ts';

/** Full blocks read ahead of the consumer at most. */
const READ_AHEAD = 2;

export async function* streamBlocks(stream: Readable, blockSize: number): AsyncGenerator<Buffer> {
  const ready: Buffer[] = [];
  let block: Buffer | undefined;
  let filled = 0;
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  const onData = (piece: Buffer) => {
    let offset = 0;
    while (offset < piece.length) {
      block ??= takeBlock(blockSize);
      const n = piece.copy(block, filled, offset);
      filled += n;
      offset += n;
      if (filled === blockSize) {
        ready.push(block);
        block = undefined;
        filled = 0;
      }
    }
    if (ready.length >= READ_AHEAD) stream.pause();
    if (ready.length > 0) notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (error: unknown) => {
    failure = error;
    notify();
  };
  stream.on('data', onData);
  stream.once('end', onEnd);
  stream.once('error', onError);
  // A stream closed without 'end' (a socket reset) ends in an error, not in a short object.
  stream.once('close', () => {
    if (!ended && failure === undefined) onError(new Error('the stream closed before its end'));
  });

  let finished = false;
  try {
    for (;;) {
      const next = ready.shift();
      if (next) {
        if (ready.length < READ_AHEAD && stream.isPaused()) stream.resume();
        yield next;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    if (block && filled > 0) {
      const last = block.subarray(0, filled);
      block = undefined;
      yield last;
    }
    finished = true;
  } finally {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('error', onError);
    // Blocks read but never handed on go back; an unfinished read stops the stream.
    for (const unread of ready.splice(0)) releaseBlock(unread);
    if (block) releaseBlock(block);
    if (!finished) stream.destroy();
  }
}
