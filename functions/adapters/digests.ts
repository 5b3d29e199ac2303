/**
 * md5 and sha512 of one byte stream, computed on two worker threads at once so the two digests
 * together run at the speed of the slower one instead of the sum of both. Blocks are handed over
 * in SharedArrayBuffers: the bytes are copied once, into the block, and never again.
 */
import { Worker } from 'node:worker_threads';
import { holdBlock, releaseBlock, takeBlock } from './block-pool.ts';

// Plain JS evaluated in the worker: no loader or bundler needs to know about a second entry file.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const jobs = new Map();
parentPort.on('message', (msg) => {
  if (msg.type === 'start') jobs.set(msg.job, createHash(workerData.algorithm));
  else if (msg.type === 'data') {
    jobs.get(msg.job).update(new Uint8Array(msg.buffer, msg.offset, msg.length));
    parentPort.postMessage({ type: 'ack', job: msg.job });
  } else if (msg.type === 'end') {
    const hash = jobs.get(msg.job);
    jobs.delete(msg.job);
    parentPort.postMessage({ type: 'digest', job: msg.job, hex: hash ? hash.digest('hex') : null });
  } else if (msg.type === 'cancel') jobs.delete(msg.job);
});
`;

type WorkerMessage = { type: 'ack'; job: number } | { type: 'digest'; job: number; hex: string | null };

interface JobState {
  acks: number;
  waiters: Array<() => void>;
  onAck?: () => void;
  digest?: (hex: string) => void;
}

class HashWorker {
  private readonly worker: Worker;
  private readonly jobs = new Map<number, JobState>();

  constructor(algorithm: 'md5' | 'sha512') {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { algorithm } });
    // Idle workers must not keep a CLI or test process alive.
    this.worker.unref();
    this.worker.on('message', (msg: WorkerMessage) => {
      const state = this.jobs.get(msg.job);
      if (!state) return;
      if (msg.type === 'ack') {
        state.acks++;
        state.onAck?.();
        for (const wake of state.waiters.splice(0)) wake();
      } else if (msg.type === 'digest') {
        this.jobs.delete(msg.job);
        state.digest?.(msg.hex ?? '');
      }
    });
  }

  start(job: number, onAck: () => void): void {
    this.jobs.set(job, { acks: 0, waiters: [], onAck });
    this.worker.postMessage({ type: 'start', job });
  }

  send(job: number, block: Uint8Array): void {
    this.worker.postMessage({
      type: 'data',
      job,
      buffer: block.buffer,
      offset: block.byteOffset,
      length: block.byteLength,
    });
  }

  /** Resolves once at least `count` blocks of the job have been hashed. */
  async hashed(job: number, count: number): Promise<void> {
    const state = this.jobs.get(job);
    if (!state) return;
    while (state.acks < count) await new Promise<void>((resolve) => state.waiters.push(resolve));
  }

  finish(job: number): Promise<string> {
    return new Promise((resolve) => {
      const state = this.jobs.get(job);
      if (state) state.digest = resolve;
      this.worker.postMessage({ type: 'end', job });
    });
  }

  cancel(job: number): void {
    this.jobs.delete(job);
    this.worker.postMessage({ type: 'cancel', job });
  }
}

let pool: { md5: HashWorker; sha512: HashWorker } | undefined;
let nextJob = 1;

/** Bytes a job may have sent but not yet had hashed before `update` waits (bounded memory). */
const MAX_IN_FLIGHT_BLOCKS = 8;

export interface Digests {
  md5: string;
  sha512: string;
}

export class DigestJob {
  private readonly job = nextJob++;
  private sent = 0;
  private readonly workers: { md5: HashWorker; sha512: HashWorker };
  /** Blocks sent and not yet read by both workers, oldest first (held in the block pool). */
  private readonly unread: Buffer[] = [];
  private acks = { md5: 0, sha512: 0 };
  private released = 0;

  constructor() {
    pool ??= { md5: new HashWorker('md5'), sha512: new HashWorker('sha512') };
    this.workers = pool;
    this.workers.md5.start(this.job, () => this.acked('md5'));
    this.workers.sha512.start(this.job, () => this.acked('sha512'));
  }

  /**
   * A block in shared memory, for callers that want to hand blocks on without copying again;
   * from the block pool (reused once the store and the hashers are done with it).
   */
  static sharedBlock(size: number): Buffer {
    return takeBlock(size);
  }

  /** The taker's hold of a sharedBlock given back (see ByteTools.releaseBlock). */
  static releaseBlock(block: Buffer): void {
    releaseBlock(block);
  }

  /** Both workers have read a block: its hold in the pool is given back. */
  private acked(worker: 'md5' | 'sha512'): void {
    this.acks[worker]++;
    while (this.released < Math.min(this.acks.md5, this.acks.sha512)) {
      const block = this.unread.shift();
      this.released++;
      if (block) releaseBlock(block);
    }
  }

  /** `block` must live in a SharedArrayBuffer (see sharedBlock) and must not change afterwards. */
  async update(block: Buffer): Promise<void> {
    if (!(block.buffer instanceof SharedArrayBuffer)) {
      const shared = DigestJob.sharedBlock(block.length);
      block.copy(shared);
      block = shared;
    }
    if (block.length === 0) return;
    holdBlock(block);
    this.unread.push(block);
    this.workers.md5.send(this.job, block);
    this.workers.sha512.send(this.job, block);
    this.sent++;
    if (this.sent > MAX_IN_FLIGHT_BLOCKS) {
      const count = this.sent - MAX_IN_FLIGHT_BLOCKS;
      await Promise.all([
        this.workers.md5.hashed(this.job, count),
        this.workers.sha512.hashed(this.job, count),
      ]);
    }
  }

  async finish(): Promise<Digests> {
    const [md5, sha512] = await Promise.all([
      this.workers.md5.finish(this.job),
      this.workers.sha512.finish(this.job),
    ]);
    return { md5, sha512 };
  }

  cancel(): void {
    this.workers.md5.cancel(this.job);
    this.workers.sha512.cancel(this.job);
  }
}
