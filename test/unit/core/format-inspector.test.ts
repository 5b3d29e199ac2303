import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectFile } from '#adapters/inspect-file';
import { FormatInspector, type InspectionResult, inspectAndCheck } from '#core/data/format-inspector';
import { BadRequestError } from '#core/kernel/errors';

const run = promisify(execFile);
const MiB = 1024 * 1024;
/** Odd and smaller than every structure boundary, so headers and regions straddle chunks. */
const ODD_CHUNK = 4093;

let dir: string;
const path = (name: string) => join(dir, name);

async function qemuImg(...args: string[]): Promise<void> {
  await run('qemu-img', args);
}

async function qemuVirtualSize(file: string, format: string): Promise<number> {
  const { stdout } = await run('qemu-img', ['info', '--output=json', '-f', format, path(file)]);
  return (JSON.parse(stdout) as { 'virtual-size': number })['virtual-size'];
}

function inspectBuffer(data: Buffer, chunkSize = data.length): InspectionResult {
  const inspector = new FormatInspector();
  for (let offset = 0; offset < data.length; offset += chunkSize) {
    inspector.update(data.subarray(offset, offset + chunkSize));
  }
  return inspector.finish();
}

/** Copies a fixture, lets the test corrupt it, and inspects the result. */
async function inspectPatched(file: string, patch: (data: Buffer) => void): Promise<InspectionResult> {
  const data = await readFile(path(file));
  patch(data);
  return inspectBuffer(data, ODD_CHUNK);
}

function rejection(result: InspectionResult, declared: string | null): BadRequestError {
  try {
    inspectAndCheck(result, declared);
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestError);
    return error as BadRequestError;
  }
  throw new Error(`expected ${result.format} declared ${declared} to be rejected`);
}

/** genisoimage when present; otherwise a minimal ISO 9660 volume: PVD at 32 KiB and a terminator. */
async function buildIso(file: string): Promise<void> {
  const source = path('iso-src');
  await mkdir(source, { recursive: true });
  await writeFile(join(source, 'hello.txt'), 'hello\n');
  try {
    await run('genisoimage', ['-quiet', '-o', path(file), source]);
  } catch {
    const blocks = 18;
    const iso = Buffer.alloc(blocks * 2048);
    const pvd = 16 * 2048;
    iso[pvd] = 1;
    iso.write('CD001', pvd + 1, 'latin1');
    iso[pvd + 6] = 1;
    iso.writeUInt32LE(blocks, pvd + 80);
    iso.writeUInt32BE(blocks, pvd + 84);
    iso.writeUInt16LE(2048, pvd + 128);
    iso.writeUInt16BE(2048, pvd + 130);
    const terminator = 17 * 2048;
    iso[terminator] = 255;
    iso.write('CD001', terminator + 1, 'latin1');
    iso[terminator + 6] = 1;
    await writeFile(path(file), iso);
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hangar-format-'));
  // Whole sectors: qemu rounds a raw file's virtual size up to 512 bytes, the inspector does not.
  const raw = Buffer.alloc(3 * MiB + 5 * 512);
  for (let i = 0; i < raw.length; i += 997) raw[i] = i & 0xff;
  await writeFile(path('disk.raw'), raw);
  await qemuImg('create', '-f', 'raw', path('data.raw'), '64M');
  await Promise.all([
    qemuImg('create', '-f', 'qcow2', path('x.qcow2'), '64M'),
    qemuImg('create', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', path('backing.qcow2')),
    qemuImg('create', '-f', 'qcow2', '-o', `data_file=${path('data.raw')}`, path('datafile.qcow2'), '64M'),
    qemuImg('create', '-f', 'vmdk', path('x.vmdk'), '64M'),
    qemuImg('create', '-f', 'vmdk', '-o', 'subformat=streamOptimized', path('stream.vmdk'), '64M'),
    qemuImg('create', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', path('flat.vmdk'), '64M'),
    qemuImg('create', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', path('split.vmdk'), '64M'),
    qemuImg('create', '-f', 'vpc', path('dynamic.vhd'), '64M'),
    qemuImg('create', '-f', 'vpc', '-o', 'subformat=fixed', path('fixed.vhd'), '64M'),
    qemuImg('create', '-f', 'vhdx', path('x.vhdx'), '64M'),
    qemuImg('create', '-f', 'vdi', path('x.vdi'), '64M'),
    buildIso('x.iso'),
  ]);
  // Needs x.vmdk to exist: a sparse vmdk whose descriptor names a parent.
  await qemuImg('create', '-f', 'vmdk', '-b', path('x.vmdk'), '-F', 'vmdk', path('child.vmdk'));
}, 60_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('FormatInspector on images made by qemu-img', () => {
  const cases = [
    { name: 'raw', file: 'disk.raw', qemuFormat: 'raw', format: 'raw' },
    { name: 'qcow2', file: 'x.qcow2', qemuFormat: 'qcow2', format: 'qcow2' },
    { name: 'vmdk monolithicSparse', file: 'x.vmdk', qemuFormat: 'vmdk', format: 'vmdk' },
    { name: 'vmdk streamOptimized', file: 'stream.vmdk', qemuFormat: 'vmdk', format: 'vmdk' },
    { name: 'vhd dynamic', file: 'dynamic.vhd', qemuFormat: 'vpc', format: 'vhd' },
    { name: 'vhd fixed', file: 'fixed.vhd', qemuFormat: 'vpc', format: 'vhd' },
    { name: 'vhdx', file: 'x.vhdx', qemuFormat: 'vhdx', format: 'vhdx' },
    { name: 'vdi', file: 'x.vdi', qemuFormat: 'vdi', format: 'vdi' },
    // qemu reads an ISO as raw; its volume size equals the file size.
    { name: 'iso', file: 'x.iso', qemuFormat: 'raw', format: 'iso' },
  ] as const;

  for (const c of cases) {
    it(`recognises ${c.name} streamed in ${ODD_CHUNK}-byte chunks, with qemu's virtual size`, async () => {
      const result = await inspectFile(path(c.file), { chunkSize: ODD_CHUNK });
      expect(result).toEqual({
        format: c.format,
        virtualSize: await qemuVirtualSize(c.file, c.qemuFormat),
        dataSize: (await readFile(path(c.file))).length,
        safetyProblems: [],
      });
      expect(() => inspectAndCheck(result, c.format)).not.toThrow();
    });

    it(`gives the same answer for ${c.name} fed in one chunk or in 1 MiB + 1 chunks`, async () => {
      const data = await readFile(path(c.file));
      const streamed = await inspectFile(path(c.file), { chunkSize: ODD_CHUNK });
      expect(inspectBuffer(data)).toEqual(streamed);
      expect(inspectBuffer(data, MiB + 1)).toEqual(streamed);
    });
  }

  it('keeps memory bounded while streaming a 64 MiB image', async () => {
    const inspector = new FormatInspector();
    const data = await readFile(path('fixed.vhd'));
    for (let offset = 0; offset < data.length; offset += ODD_CHUNK) {
      inspector.update(data.subarray(offset, offset + ODD_CHUNK));
    }
    expect(inspector.retainedBytes).toBeLessThanOrEqual(MiB + 2048);
    expect(inspector.finish().format).toBe('vhd');
  });

  it('refuses to be used after finish()', () => {
    const inspector = new FormatInspector();
    inspector.finish();
    expect(() => inspector.update(Buffer.from('x'))).toThrow();
    expect(() => inspector.finish()).toThrow();
  });
});

describe('inspectAndCheck rejects dangerous content', () => {
  it('rejects a qcow2 with a backing file', async () => {
    const result = await inspectFile(path('backing.qcow2'), { chunkSize: ODD_CHUNK });
    expect(result.format).toBe('qcow2');
    expect(rejection(result, 'qcow2').message).toContain('qcow2 image has a backing file');
  });

  it('rejects a qcow2 with an external data file', async () => {
    const result = await inspectFile(path('datafile.qcow2'), { chunkSize: ODD_CHUNK });
    expect(rejection(result, 'qcow2').message).toContain('qcow2 image uses an external data file');
  });

  it('rejects a qcow2 whose data-file header extension is present without the feature bit', async () => {
    const result = await inspectPatched('datafile.qcow2', (data) => {
      data[79] = data[79]! & ~0x04; // clear incompatible feature bit 2 (external data file)
    });
    expect(rejection(result, 'qcow2').message).toContain('qcow2 image uses an external data file');
  });

  it('rejects a qcow2 with only the external data file feature bit set', async () => {
    const result = await inspectPatched('x.qcow2', (data) => {
      data[79] = data[79]! | 0x04;
    });
    expect(rejection(result, 'qcow2').message).toContain('qcow2 image uses an external data file');
  });

  it('rejects a qcow2 with an absurd header length', async () => {
    const result = await inspectPatched('x.qcow2', (data) => data.writeUInt32BE(0x7fffff00, 100));
    expect(rejection(result, 'qcow2').message).toMatch(/qcow2 header length \d+ is out of bounds/);
  });

  it('rejects a qcow2 with unknown incompatible features', async () => {
    const result = await inspectPatched('x.qcow2', (data) => {
      data[72] = 0x80;
    });
    expect(rejection(result, 'qcow2').message).toContain('unknown incompatible features');
  });

  it('rejects a monolithicFlat vmdk descriptor that references a -flat.vmdk extent', async () => {
    const result = await inspectFile(path('flat.vmdk'), { chunkSize: ODD_CHUNK });
    expect(result.format).toBe('vmdk');
    const message = rejection(result, 'vmdk').message;
    expect(message).toContain('vmdk image references external extents');
    expect(message).toContain('vmdk create type monolithicFlat is not allowed');
  });

  it('rejects a twoGbMaxExtentSparse vmdk descriptor', async () => {
    const result = await inspectFile(path('split.vmdk'), { chunkSize: ODD_CHUNK });
    expect(rejection(result, 'vmdk').message).toContain('vmdk image references external extents');
  });

  it('rejects a vmdk descriptor uploaded as raw', async () => {
    const result = await inspectFile(path('flat.vmdk'), { chunkSize: ODD_CHUNK });
    expect(rejection(result, 'raw').message).toContain('vmdk image references external extents');
  });

  it('rejects a sparse vmdk whose descriptor names a parent', async () => {
    const result = await inspectFile(path('child.vmdk'), { chunkSize: ODD_CHUNK });
    expect(rejection(result, 'vmdk').message).toContain('vmdk image has a backing file');
  });

  const embeddedDescriptor = (createType: string, extent: string) => (data: Buffer) => {
    // qemu-img puts the descriptor at sector 1, 20 sectors long.
    data.fill(0, 512, 512 + 20 * 512);
    data.write(
      `# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="${createType}"\n\n# Extent description\n${extent}\n`,
      512,
      'latin1',
    );
  };

  it('rejects a sparse vmdk whose embedded descriptor has a FLAT extent on another file', async () => {
    const result = await inspectPatched(
      'x.vmdk',
      embeddedDescriptor('monolithicSparse', 'RW 131072 FLAT "/etc/passwd" 0'),
    );
    expect(rejection(result, 'vmdk').message).toContain('vmdk image references external extents');
  });

  it('rejects a sparse vmdk whose embedded descriptor lists several extents', async () => {
    const result = await inspectPatched(
      'x.vmdk',
      embeddedDescriptor('monolithicSparse', 'RW 65536 SPARSE "x.vmdk"\nRW 65536 SPARSE "other.vmdk"'),
    );
    expect(rejection(result, 'vmdk').message).toContain('vmdk image references external extents');
  });

  it('rejects a sparse vmdk with a disallowed create type', async () => {
    const result = await inspectPatched('x.vmdk', embeddedDescriptor('vmfs', 'RW 131072 SPARSE "x.vmdk"'));
    expect(rejection(result, 'vmdk').message).toContain('vmdk create type vmfs is not allowed');
  });

  it('rejects a sparse vmdk with zero capacity (qemu would then open the descriptor extents)', async () => {
    const result = await inspectPatched('x.vmdk', (data) => data.writeBigUInt64LE(0n, 12));
    expect(rejection(result, 'vmdk').message).toContain('vmdk image references external extents');
  });

  it('rejects a vhd differencing disk', async () => {
    const result = await inspectPatched('dynamic.vhd', (data) => data.writeUInt32BE(4, 60));
    expect(rejection(result, 'vhd').message).toContain('vhd differencing image references a parent image');
  });

  it('rejects a vdi differencing image', async () => {
    const result = await inspectPatched('x.vdi', (data) => data.writeUInt32LE(4, 0x4c));
    expect(rejection(result, 'vdi').message).toContain('vdi image type 4 is not supported');
  });

  it('treats a vhdx whose metadata cannot be reached as unsafe', async () => {
    const data = (await readFile(path('x.vhdx'))).subarray(0, 2 * MiB);
    const result = inspectBuffer(data, ODD_CHUNK);
    expect(result.format).toBe('vhdx');
    expect(rejection(result, 'vhdx').message).toContain('vhdx image could not be parsed');
  });

  it('treats a vhdx with a corrupted region table as unsafe', async () => {
    const result = await inspectPatched('x.vhdx', (data) => {
      data[192 * 1024 + 20] = data[192 * 1024 + 20]! ^ 0xff;
    });
    expect(rejection(result, 'vhdx').message).toContain('region table checksum is invalid');
  });

  it('rejects a qcow2/iso polyglot', async () => {
    const result = await inspectPatched('x.qcow2', (data) => data.write('CD001', 32 * 1024 + 1, 'latin1'));
    expect(rejection(result, 'qcow2').message).toContain(
      'image content matches multiple formats: qcow2, iso',
    );
  });

  it('rejects qed content', () => {
    const data = Buffer.alloc(4096);
    data.write('QED\0', 0, 'latin1');
    expect(rejection(inspectBuffer(data), 'raw').message).toContain('qed');
  });
});

describe('inspectAndCheck matches content against disk_format', () => {
  it('rejects a qcow2 declared as raw', async () => {
    const result = await inspectFile(path('x.qcow2'), { chunkSize: ODD_CHUNK });
    expect(rejection(result, 'raw').message).toBe('image content is qcow2 but disk_format is raw');
  });

  it('treats ami/ari/aki declarations as raw', async () => {
    const qcow2 = await inspectFile(path('x.qcow2'));
    expect(rejection(qcow2, 'ami').message).toBe('image content is qcow2 but disk_format is ami');
    const raw = await inspectFile(path('disk.raw'));
    for (const declared of ['ami', 'ari', 'aki']) expect(() => inspectAndCheck(raw, declared)).not.toThrow();
  });

  it('rejects raw content declared as a container format', async () => {
    const result = await inspectFile(path('disk.raw'));
    expect(rejection(result, 'qcow2').message).toBe('image content is raw but disk_format is qcow2');
    expect(rejection(result, 'iso').message).toBe('image content is raw but disk_format is iso');
  });

  it('rejects a vhd declared as vhdx', async () => {
    const result = await inspectFile(path('dynamic.vhd'));
    expect(rejection(result, 'vhdx').message).toBe('image content is vhd but disk_format is vhdx');
  });

  it('accepts an iso declared as iso or raw', async () => {
    const result = await inspectFile(path('x.iso'));
    expect(() => inspectAndCheck(result, 'iso')).not.toThrow();
    expect(() => inspectAndCheck(result, 'raw')).not.toThrow();
  });

  it('accepts unrecognised content declared raw, ploop or not declared at all', async () => {
    const result = await inspectFile(path('disk.raw'));
    expect(() => inspectAndCheck(result, 'raw')).not.toThrow();
    expect(() => inspectAndCheck(result, 'ploop')).not.toThrow();
    expect(() => inspectAndCheck(result, null)).not.toThrow();
  });

  it('rejects a recognised format declared as ploop', async () => {
    const result = await inspectFile(path('x.vdi'));
    expect(rejection(result, 'ploop').message).toBe('image content is vdi but disk_format is ploop');
  });

  it('still applies the safety checks when no disk_format is declared', async () => {
    const result = await inspectFile(path('backing.qcow2'));
    expect(rejection(result, null).message).toContain('qcow2 image has a backing file');
  });

  it('reports the exact byte count as the virtual size of raw data', () => {
    expect(inspectBuffer(Buffer.alloc(12_345, 7), ODD_CHUNK)).toEqual({
      format: 'raw',
      virtualSize: 12_345,
      dataSize: 12_345,
      safetyProblems: [],
    });
  });

  it('treats an empty upload as raw', () => {
    expect(inspectBuffer(Buffer.alloc(0))).toEqual({
      format: 'raw',
      virtualSize: 0,
      dataSize: 0,
      safetyProblems: [],
    });
  });
});
