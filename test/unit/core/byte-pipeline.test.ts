/** The one byte pipeline (core/data/pipeline.ts): one copy into block memory, limits, stages. */
import { describe, expect, it } from 'vitest';
import { BLOCK_SIZE, BytePipeline, parseContentLength, parseDeclaredSize } from '#core/data/pipeline';
import { HangarError } from '#core/kernel/errors';
import { bodyOf, digestsOf, FakeDigester } from '../../helpers/fakes/storage.ts';

/** Block memory that remembers every block it handed out. */
function tools() {
  const allocated: Buffer[] = [];
  const digesters: FakeDigester[] = [];
  return {
    allocated,
    digesters,
    sharedBlock: (size: number) => {
      const block = Buffer.alloc(size);
      allocated.push(block);
      return block;
    },
    digester: () => {
      const digester = new FakeDigester();
      digesters.push(digester);
      return digester;
    },
  };
}

async function kindOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HangarError) return `${error.kind}: ${error.message}`;
    throw error;
  }
  return 'no error';
}

const DATA = Buffer.from(Array.from({ length: BLOCK_SIZE + 12_345 }, (_, i) => i % 251));

describe('BytePipeline', () => {
  it('regroups the source into BLOCK_SIZE blocks of block memory and hands each one on uncopied', async () => {
    const t = tools();
    const bytes = new BytePipeline(t, { stages: ['inspect', 'digest'] });
    const seen: Buffer[] = [];
    for await (const block of bytes.blocks(bodyOf(DATA))) {
      seen.push(block);
      await bytes.take(block);
    }
    expect(seen.map((block) => block.length)).toEqual([BLOCK_SIZE, 12_345]);
    // The one copy: each block is the allocated memory itself (the last a view of it).
    expect(seen[0]).toBe(t.allocated[0]);
    expect(seen[1]?.buffer).toBe(t.allocated[1]?.buffer);
    expect(t.allocated).toHaveLength(2);
    const result = await bytes.finish();
    expect(result.size).toBe(DATA.length);
    expect(result.digests).toEqual(digestsOf(DATA));
    expect(result.inspection).toMatchObject({ format: 'raw', dataSize: DATA.length });
  });

  it('passes a whole block in shared memory through as it is; drain gives back each block once taken', async () => {
    const released: Buffer[] = [];
    const t = { ...tools(), releaseBlock: (block: Buffer) => void released.push(block) };
    const whole = Buffer.from(new SharedArrayBuffer(BLOCK_SIZE));
    DATA.copy(whole, 0, 0, BLOCK_SIZE);
    const tail = DATA.subarray(BLOCK_SIZE);
    async function* source() {
      yield whole;
      yield tail;
    }
    const bytes = new BytePipeline(t, { stages: ['digest'] });
    await bytes.drain(source());
    // Only the tail was copied (into the one block allocated); every block went back once.
    expect(t.allocated).toHaveLength(1);
    expect(released).toHaveLength(2);
    expect(released[0]).toBe(whole);
    expect(released[1]?.buffer).toBe(t.allocated[0]?.buffer);
    expect((await bytes.finish()).digests).toEqual(digestsOf(DATA));
  });

  it('drain reads a whole source through the stages (md5 and sha512 in the one pass)', async () => {
    const t = tools();
    const bytes = new BytePipeline(t, { stages: ['digest'] });
    await bytes.drain(bodyOf(DATA, 1000));
    const result = await bytes.finish();
    expect(result).toEqual({ size: DATA.length, digests: digestsOf(DATA) });
    expect(t.digesters).toHaveLength(1);
  });

  it('without stages only counts: no digest job, no inspection', async () => {
    const t = tools();
    const bytes = new BytePipeline(t, { stages: [] });
    await bytes.drain(bodyOf(DATA));
    expect(await bytes.finish()).toEqual({ size: DATA.length });
    expect(t.digesters).toEqual([]);
  });

  it('runs the guard first for each block, and stops at the first block it refuses', async () => {
    const t = tools();
    let calls = 0;
    const bytes = new BytePipeline(t, {
      stages: ['digest'],
      beforeBlock: () => {
        calls += 1;
        if (calls === 2) throw new Error('lease lost');
      },
    });
    await expect(bytes.drain(bodyOf(DATA))).rejects.toThrow('lease lost');
    // The refused block was neither counted nor hashed.
    expect(bytes.size).toBe(BLOCK_SIZE);
    bytes.cancel();
    expect(t.digesters[0]?.cancelled).toBe(true);
  });

  it('refuses more bytes than the cap (413) as soon as a block passes it', async () => {
    const bytes = new BytePipeline(tools(), { stages: [], sizeCap: BLOCK_SIZE });
    expect(await kindOf(bytes.drain(bodyOf(DATA)))).toBe(
      `too_large: Image exceeds the storage quota: the image size cap is ${BLOCK_SIZE} bytes.`,
    );
  });

  it('holds the body to the declared size: more fails on the way, fewer at finish', async () => {
    const over = new BytePipeline(tools(), { stages: [], declaredSize: 100 });
    expect(await kindOf(over.drain(bodyOf(DATA)))).toBe(
      `bad_request: Image size mismatch: x-openstack-image-size says 100 bytes, the body had ${BLOCK_SIZE} or more.`,
    );
    const under = new BytePipeline(tools(), { stages: [], declaredSize: DATA.length + 1 });
    await under.drain(bodyOf(DATA));
    expect(await kindOf(under.finish())).toBe(
      `bad_request: Image size mismatch: x-openstack-image-size says ${DATA.length + 1} bytes, the body had ${DATA.length} or more.`,
    );
    const exact = new BytePipeline(tools(), { stages: [], declaredSize: DATA.length });
    await exact.drain(bodyOf(DATA));
    expect(await exact.finish()).toEqual({ size: DATA.length });
  });
});

describe('upload headers', () => {
  it('parseDeclaredSize: digits only, and never over the cap', async () => {
    expect(parseDeclaredSize(undefined, 10)).toBeUndefined();
    expect(parseDeclaredSize('10', 10)).toBe(10);
    expect(await kindOf(Promise.resolve().then(() => parseDeclaredSize('1e3', 10)))).toBe(
      "bad_request: x-openstack-image-size must be a non-negative integer, not '1e3'",
    );
    expect(await kindOf(Promise.resolve().then(() => parseDeclaredSize('11', 10)))).toMatch(/^too_large/);
  });

  it('parseContentLength: a usable length or none', () => {
    expect(parseContentLength('42')).toBe(42);
    expect(parseContentLength(undefined)).toBeUndefined();
    expect(parseContentLength('-1')).toBeUndefined();
  });
});
