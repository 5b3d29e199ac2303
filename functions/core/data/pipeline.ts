/**
 * The one byte pipeline every image byte path is built from (PUT /file, staging, each import, the
 * publishing gate's re-read, the export's upload):
 *
 *   rechunk -> guard -> size cap / declared size -> format inspection -> md5 + sha512
 *
 * rechunk regroups the source into BLOCK_SIZE blocks of block memory shared with the digest
 * threads: the single copy each byte makes. After that nothing copies a block; each stage only
 * reads it. A store that consumes the blocks (BlobStore.put) is handed `blocks(source)` and calls
 * `take` as its onBlock hook; a read that only checks the bytes calls `drain(source)`.
 */
import { BadRequestError, type HangarError, TooLargeError } from '../kernel/errors.ts';
import { FormatInspector, type InspectionResult } from './format-inspector.ts';
import type { StreamDigester } from './ports.ts';

/** Blocks handed to hashing and to the blob store; the S3 multipart part size. */
export const BLOCK_SIZE = 8 * 1024 * 1024;

/** What a pipeline is built from: the digest jobs and the block allocator they can read without a copy. */
export interface ByteTools {
  digester: () => StreamDigester;
  sharedBlock: (size: number) => Buffer;
  /** Gives back the taker's hold of a block from sharedBlock, so it can be reused (drain's blocks). */
  releaseBlock?: (block: Buffer) => void;
}

/** The stages besides counting that a pipeline runs each block through. */
export type PipelineStage = 'inspect' | 'digest';

export interface PipelineOptions<S extends PipelineStage> {
  stages: readonly S[];
  /** More bytes than this: 413. */
  sizeCap?: number;
  /** x-openstack-image-size: more bytes, or (at finish) fewer, than this is a 400. */
  declaredSize?: number;
  /** Runs first for each block: a lease heartbeat's check stops bytes nobody will keep. */
  beforeBlock?: () => void;
}

export interface Digests {
  md5: string;
  sha512: string;
}

export interface PipelineResult {
  size: number;
  inspection: InspectionResult;
  digests: Digests;
}

/** The size, plus what the chosen stages found. */
export type PipelineOutcome<S extends PipelineStage> = Pick<
  PipelineResult,
  'size' | (S extends 'inspect' ? 'inspection' : 'digests')
>;

export class BytePipeline<S extends PipelineStage> {
  /** Bytes taken so far. */
  size = 0;
  private readonly inspector: FormatInspector | undefined;
  private readonly digest: StreamDigester | undefined;

  constructor(
    private readonly tools: ByteTools,
    private readonly options: PipelineOptions<S>,
  ) {
    const stages: readonly PipelineStage[] = options.stages;
    this.inspector = stages.includes('inspect') ? new FormatInspector() : undefined;
    this.digest = stages.includes('digest') ? tools.digester() : undefined;
  }

  /** The source as BLOCK_SIZE blocks (the last one shorter). */
  blocks(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    return rechunk(source, BLOCK_SIZE, this.tools.sharedBlock);
  }

  /** Each block, in order, exactly once (a BlobPutHooks.onBlock). */
  readonly take = async (block: Buffer): Promise<void> => {
    this.options.beforeBlock?.();
    this.size += block.length;
    const { sizeCap, declaredSize } = this.options;
    if (sizeCap !== undefined && this.size > sizeCap) throw sizeCapError(sizeCap);
    if (declaredSize !== undefined && this.size > declaredSize) throw sizeMismatch(declaredSize, this.size);
    this.inspector?.update(block);
    await this.digest?.update(block);
  };

  /** Takes every block of `source` (a read no store consumes). */
  async drain(source: AsyncIterable<Buffer>): Promise<void> {
    for await (const block of this.blocks(source)) {
      try {
        await this.take(block);
      } finally {
        // Taken: the digest job holds it for as long as its workers need it.
        this.tools.releaseBlock?.(block);
      }
    }
  }

  /** After the last block: the declared size must be met exactly; then the digests and the inspection. */
  async finish(): Promise<PipelineOutcome<S>> {
    const { declaredSize } = this.options;
    if (declaredSize !== undefined && this.size !== declaredSize) throw sizeMismatch(declaredSize, this.size);
    const digests = await this.digest?.finish();
    const inspection = this.inspector?.finish();
    return {
      size: this.size,
      ...(digests && { digests }),
      ...(inspection && { inspection }),
    } as PipelineOutcome<S>;
  }

  /** On any failure: the digest job is dropped. */
  cancel(): void {
    this.digest?.cancel();
  }
}

/** x-openstack-image-size, checked against the cap before a byte is read. */
export function parseDeclaredSize(header: string | undefined, cap: number): number | undefined {
  if (header === undefined) return undefined;
  if (!/^\d+$/.test(header))
    throw new BadRequestError(`x-openstack-image-size must be a non-negative integer, not '${header}'`);
  const declared = Number(header);
  if (declared > cap) throw sizeCapError(cap);
  return declared;
}

/**
 * The request's Content-Length, when the body is not chunked: only that is a promise the transport
 * keeps (the body has exactly that many bytes or the request fails), so a store may send one
 * streamed PUT for it. The declared size is checked against the bytes, never trusted.
 */
export function parseContentLength(header: string | undefined): number | undefined {
  return header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
}

export function sizeCapError(cap: number): HangarError {
  return new TooLargeError(`Image exceeds the storage quota: the image size cap is ${cap} bytes.`);
}

function sizeMismatch(declared: number, actual: number): HangarError {
  return new BadRequestError(
    `Image size mismatch: x-openstack-image-size says ${declared} bytes, the body had ${actual} or more.`,
  );
}

/**
 * Regroups a byte stream into fixed-size blocks in fresh (shared) memory: the single copy each
 * byte makes on its way to the hashers and the blob store. A source piece that already is a whole
 * block in shared memory, at a block boundary, is passed on as it is (with the hold its producer
 * had on it): a source that regrouped its bytes itself is not copied twice.
 */
export async function* rechunk(
  source: AsyncIterable<Buffer>,
  blockSize: number,
  allocate: (size: number) => Buffer,
): AsyncGenerator<Buffer> {
  let block = allocate(blockSize);
  let filled = 0;
  for await (const chunk of source) {
    if (filled === 0 && chunk.length === blockSize && chunk.buffer instanceof SharedArrayBuffer) {
      yield chunk;
      continue;
    }
    let offset = 0;
    while (offset < chunk.length) {
      const n = Math.min(chunk.length - offset, blockSize - filled);
      chunk.copy(block, filled, offset, offset + n);
      filled += n;
      offset += n;
      if (filled === blockSize) {
        yield block;
        block = allocate(blockSize);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield block.subarray(0, filled);
}
