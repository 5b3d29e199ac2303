/**
 * The format match setting (Glance's [image_format] require_image_format_match) and the checks
 * Glance's and qemu's inspectors make that Hangar added with it: LUKS headers and qcow2 L1 tables.
 * Every image is made by qemu-img; the corrupt ones are real images with one header field changed.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectFile } from '#adapters/inspect-file';
import { FormatInspector, type InspectionResult, inspectAndCheck } from '#core/data/format-inspector';
import { DISK_FORMATS } from '#core/images/image';
import { BadRequestError } from '#core/kernel/errors';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const ODD_CHUNK = 4093;
const STRICT = { requireMatch: true };
const LENIENT = { requireMatch: false };

let dir: string;
const path = (name: string) => join(dir, name);

function inspectBuffer(data: Buffer, chunkSize = ODD_CHUNK): InspectionResult {
  const inspector = new FormatInspector();
  for (let offset = 0; offset < data.length; offset += chunkSize)
    inspector.update(data.subarray(offset, offset + chunkSize));
  return inspector.finish();
}

function rejection(result: InspectionResult, declared: string | null, options = STRICT): string {
  try {
    inspectAndCheck(result, declared, options);
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestError);
    return (error as BadRequestError).message;
  }
  throw new Error(`expected ${result.format} declared ${declared} to be rejected`);
}

/**
 * qemu-img's LUKS key-slot setup times PBKDF2 with the thread CPU clock, which this sandbox's
 * kernel sometimes reports too coarsely ("Unable to get accurate CPU usage"): try a few times.
 */
async function createLuks(file: string): Promise<void> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 25; attempt++) {
    try {
      await run('qemu-img', [
        'create',
        '--object',
        'secret,id=sec0,data=hangar',
        '-f',
        'luks',
        '-o',
        'key-secret=sec0,iter-time=10',
        file,
        '4M',
      ]);
      return;
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

/** A copy of `file` with the qcow2 header's virtual size (offset 24) set to `size`. */
async function withQcow2Size(file: string, size: bigint, out: string): Promise<Buffer> {
  const data = await readFile(path(file));
  data.writeBigUInt64BE(size, 24);
  await writeFile(path(out), data);
  return data;
}

/** Whether qemu itself opens the image (it refuses an L1 table too small for the virtual size). */
async function qemuOpens(file: string): Promise<boolean> {
  try {
    await run('qemu-img', ['info', '-f', 'qcow2', path(file)]);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hangar-format-match-'));
  await Promise.all([
    createLuks(path('x.luks')),
    // 64 KiB clusters: one L1 entry maps 512 MiB, so a 64 MiB image has a one-entry L1 table.
    run('qemu-img', ['create', '-f', 'qcow2', path('x.qcow2'), '64M']),
    run('qemu-img', ['create', '-f', 'qcow2', path('big.qcow2'), '3T']),
    // Extended L2 entries are 16 bytes: with 128 KiB clusters one L1 entry maps 1 GiB.
    run('qemu-img', [
      'create',
      '-f',
      'qcow2',
      '-o',
      'extended_l2=on,cluster_size=128k',
      path('xl2.qcow2'),
      '1G',
    ]),
    run('qemu-img', ['create', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', path('backing.qcow2')]),
    run('qemu-img', ['create', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', path('flat.vmdk'), '1M']),
  ]);
}, 120_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('LUKS content', () => {
  it('is recognised as luks, with the payload size as its virtual size', async () => {
    const result = await inspectFile(path('x.luks'), { chunkSize: ODD_CHUNK });
    expect(result).toMatchObject({ format: 'luks', virtualSize: 4 * MiB, safetyProblems: [] });
  });

  it('is refused when declared raw (or anything else) while the format match is required', async () => {
    const result = await inspectFile(path('x.luks'), { chunkSize: ODD_CHUNK });
    expect(rejection(result, 'raw')).toBe('image content is luks but disk_format is raw');
    expect(rejection(result, 'qcow2')).toBe('image content is luks but disk_format is qcow2');
    // Refused by default too: the strict setting is the default.
    expect(() => inspectAndCheck(result, 'raw')).toThrow('image content is luks but disk_format is raw');
  });

  it('stays refused under another disk_format with the match off: its payload cannot be inspected', async () => {
    const result = await inspectFile(path('x.luks'));
    expect(rejection(result, 'raw', LENIENT)).toBe('image content is luks but disk_format is raw');
    expect(rejection(result, 'vmdk', LENIENT)).toBe('image content is luks but disk_format is vmdk');
  });

  it('refuses a LUKS version other than 1 whatever the match setting (oslo.utils: unsupported)', async () => {
    const data = await readFile(path('x.luks'));
    data.writeUInt16BE(2, 6);
    const result = inspectBuffer(data);
    expect(result.safetyProblems).toEqual(['luks version 2 is not supported']);
    expect(rejection(result, 'raw', LENIENT)).toBe('luks version 2 is not supported');
  });
});

describe('qcow2 L1 table against the virtual size (qemu: "L1 table is too small")', () => {
  it('accepts good qcow2 images of every L1 shape, with their virtual size', async () => {
    for (const [file, size] of [
      ['x.qcow2', 64 * MiB],
      ['big.qcow2', 3 * 1024 * 1024 * MiB],
      ['xl2.qcow2', 1024 * MiB],
    ] as const) {
      const result = await inspectFile(path(file), { chunkSize: ODD_CHUNK });
      expect(result, file).toMatchObject({ format: 'qcow2', virtualSize: size, safetyProblems: [] });
      expect(inspectAndCheck(result, 'qcow2', STRICT)).toEqual({ matched: true, virtualSize: size });
    }
  });

  it('accepts a virtual size exactly as large as the L1 table maps, as qemu does', async () => {
    const data = await withQcow2Size('x.qcow2', 512n * BigInt(MiB), 'edge.qcow2');
    expect(await qemuOpens('edge.qcow2')).toBe(true);
    expect(inspectBuffer(data).safetyProblems).toEqual([]);
  });

  it('refuses a virtual size one byte past what the L1 table maps, whatever the match setting', async () => {
    const data = await withQcow2Size('x.qcow2', 512n * BigInt(MiB) + 1n, 'over.qcow2');
    expect(await qemuOpens('over.qcow2')).toBe(false);
    const result = inspectBuffer(data);
    expect(result.safetyProblems).toEqual([
      'qcow2 L1 table is too small for the virtual size (1 entries, 2 needed)',
    ]);
    expect(rejection(result, 'qcow2', STRICT)).toContain('qcow2 L1 table is too small');
    expect(rejection(result, 'qcow2', LENIENT)).toContain('qcow2 L1 table is too small');
  });

  it('refuses a 1 TiB disk behind a one-entry L1 table', async () => {
    const data = await withQcow2Size('x.qcow2', 1n << 40n, 'huge.qcow2');
    expect(await qemuOpens('huge.qcow2')).toBe(false);
    expect(inspectBuffer(data).safetyProblems).toEqual([
      'qcow2 L1 table is too small for the virtual size (1 entries, 2048 needed)',
    ]);
  });

  it('counts 16-byte extended L2 entries (a 1 GiB + 1 byte disk needs a second entry)', async () => {
    const data = await withQcow2Size('xl2.qcow2', 1024n * BigInt(MiB) + 1n, 'xl2-over.qcow2');
    expect(await qemuOpens('xl2-over.qcow2')).toBe(false);
    expect(inspectBuffer(data).safetyProblems).toEqual([
      'qcow2 L1 table is too small for the virtual size (1 entries, 2 needed)',
    ]);
  });

  it('refuses an L1 table larger than qemu allows (32 MiB)', async () => {
    const data = await readFile(path('x.qcow2'));
    data.writeUInt32BE(4 * MiB + 1, 36);
    expect(inspectBuffer(data).safetyProblems).toEqual(['qcow2 L1 table is too large']);
  });
});

describe('with the format match off', () => {
  // tempest's image tests upload random bytes under every one of Glance's default disk formats.
  it.each([...DISK_FORMATS])('accepts random bytes declared %s', (diskFormat) => {
    const bytes = randomBytes(1024);
    const result = inspectBuffer(bytes);
    expect(result.format).toBe('raw');
    const decision = inspectAndCheck(result, diskFormat, LENIENT);
    // raw, ami, ari, aki and ploop match unrecognised content; the others are let through.
    const matches = ['raw', 'ami', 'ari', 'aki', 'ploop'].includes(diskFormat);
    expect(decision).toEqual(
      matches ? { matched: true, virtualSize: 1024 } : { matched: false, virtualSize: null },
    );
  });

  it('still refuses random bytes declared qcow2 when the match is required (the default)', () => {
    const result = inspectBuffer(randomBytes(1024));
    expect(rejection(result, 'qcow2', STRICT)).toBe('image content is raw but disk_format is qcow2');
  });

  it('lets a qcow2 declared raw through with its byte count as the virtual size', async () => {
    const result = await inspectFile(path('x.qcow2'));
    const size = (await readFile(path('x.qcow2'))).length;
    expect(inspectAndCheck(result, 'raw', LENIENT)).toEqual({ matched: false, virtualSize: size });
    expect(rejection(result, 'raw', STRICT)).toBe('image content is qcow2 but disk_format is raw');
  });

  it('still refuses unsafe content, whatever it is declared as', async () => {
    const backing = await inspectFile(path('backing.qcow2'));
    const flat = await inspectFile(path('flat.vmdk'));
    for (const declared of ['qcow2', 'raw', 'vmdk', 'ploop', null]) {
      expect(rejection(backing, declared, LENIENT)).toContain('qcow2 image has a backing file');
      expect(rejection(flat, declared, LENIENT)).toContain('vmdk image references external extents');
    }
  });
});
