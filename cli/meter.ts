/**
 * The byte path of a transfer: a pass-through stream that hashes (sha512, what Glance records as
 * os_hash_value), reports progress, and optionally holds the rate down (--limit-rate).
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Progress } from './progress.ts';

export interface Meter extends Transform {
  readonly hash: Hash;
  /** Bytes that went through this stream (not counting what the hash saw before it). */
  readonly moved: number;
}

export function meter(progress: Progress, limitBytesPerSecond?: number, hash = createHash('sha512')): Meter {
  const began = Date.now();
  let moved = 0;
  const stream = new Transform({
    async transform(chunk: Buffer, _encoding, callback) {
      moved += chunk.length;
      if (limitBytesPerSecond) {
        const due = began + (moved / limitBytesPerSecond) * 1000;
        if (due > Date.now()) await sleep(due - Date.now());
      }
      hash.update(chunk);
      progress.advance(chunk.length);
      callback(null, chunk);
    },
  });
  return Object.defineProperties(stream, {
    hash: { value: hash },
    moved: { get: () => moved },
  }) as Meter;
}
