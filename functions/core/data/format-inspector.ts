/**
 * Disk image format inspection: recognise what an uploaded image really is, report its virtual
 * size and flag content that would make a consumer (qemu, a hypervisor) read files outside the
 * image. This is the class of bug behind Glance/Nova CVE-2024-32498 (Launchpad bug 2059809): a
 * qcow2 naming a backing or data file, or a vmdk whose descriptor points at other extents, turns
 * an image conversion into an arbitrary host file read.
 *
 * Design: the inspector is fed the image as it streams by and keeps only bounded state (the first
 * MiB, a short rolling tail and a few small VHDX metadata regions), so it can run alongside an
 * upload of any size. Everything is decided in finish(); inspectAndCheck() turns the findings and
 * the declared disk_format into an accept/reject decision.
 *
 * Layouts follow the public specifications (qcow2.txt, VMware Virtual Disk Format 5.0, MS VHD and
 * MS-VHDX, VirtualBox VDI, ECMA-119) and how qemu's block drivers read them, because qemu is what
 * ultimately interprets the image.
 */
import { BadRequestError } from '#core/kernel/errors';

export const INSPECTED_FORMATS = ['raw', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi', 'iso', 'luks'] as const;
export type InspectedFormat = (typeof INSPECTED_FORMATS)[number];

export interface InspectionResult {
  /** What the bytes are. 'raw' means no known container format was recognised. */
  format: InspectedFormat;
  /** Size of the disk the image describes, in bytes (for raw: the data size). */
  virtualSize: number;
  /** Bytes inspected: the image's size. */
  dataSize: number;
  /** Reasons the image must not be accepted; empty when it is safe. */
  safetyProblems: string[];
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** Everything we parse for qcow2, vmdk, vhd, vdi and iso lies in the first MiB of a sane image. */
const HEAD_LIMIT = MiB;
/** A VMDK stream footer is the last 3 sectors; a VHD footer is the last one. */
const TAIL_LIMIT = 1536;
/** Upper bound for one VHDX capture region (the metadata table is at most 64 KiB). */
const VHDX_REGION_LIMIT = 64 * KiB;

// Problem texts shared between checks (and asserted by callers' tests).
const QCOW2_BACKING = 'qcow2 image has a backing file';
const QCOW2_DATA_FILE = 'qcow2 image uses an external data file';
const VMDK_EXTERNAL = 'vmdk image references external extents';

/** A byte range of the stream we want a copy of, filled as the bytes go past. */
class CaptureRegion {
  readonly data: Buffer;
  /** Absolute offset up to which data has been copied (bytes arrive in order, so this is contiguous). */
  private filledTo: number;

  constructor(
    readonly offset: number,
    readonly length: number,
  ) {
    this.data = Buffer.alloc(length);
    this.filledTo = offset;
  }

  get complete(): boolean {
    return this.filledTo === this.offset + this.length;
  }

  /** Offer bytes that sit at absolute offset `start` of the stream. */
  offer(bytes: Buffer, start: number): void {
    const end = start + bytes.length;
    if (this.complete || start > this.filledTo || end <= this.filledTo) return;
    const stop = Math.min(end, this.offset + this.length);
    bytes.copy(this.data, this.filledTo - this.offset, this.filledTo - start, stop - start);
    this.filledTo = stop;
  }
}

export class FormatInspector {
  private readonly head = Buffer.alloc(HEAD_LIMIT);
  private headLength = 0;
  private tail = Buffer.alloc(0);
  private position = 0;
  private finished = false;
  private readonly vhdx = new VhdxWalker();

  /** Feed the next chunk of the image. Chunks may have any size; nothing of them is retained beyond the bounds above. */
  update(chunk: Buffer): void {
    if (this.finished) throw new Error('FormatInspector.update() called after finish()');
    if (chunk.length === 0) return;
    const start = this.position;
    this.position += chunk.length;

    if (this.headLength < HEAD_LIMIT) {
      this.headLength += chunk.copy(this.head, this.headLength, 0, HEAD_LIMIT - this.headLength);
    }
    this.updateTail(chunk);

    // VHDX metadata can sit anywhere, so it is located step by step while the stream passes by.
    if (this.headLength >= 8 && this.head.subarray(0, 8).toString('latin1') === 'vhdxfile') {
      this.vhdx.advance(this.headBytes(), chunk, start, false);
    }
  }

  /** Bytes currently held, for auditing the memory bound. */
  get retainedBytes(): number {
    return this.head.length + this.tail.length + this.vhdx.retainedBytes;
  }

  finish(): InspectionResult {
    if (this.finished) throw new Error('FormatInspector.finish() called twice');
    this.finished = true;
    const head = this.headBytes();
    const total = this.position;

    const findings: Array<Finding> = [];
    const problems: string[] = [];
    const magic4 = head.subarray(0, 4).toString('latin1');

    if (magic4 === 'QFI\xfb') findings.push(inspectQcow2(head));
    if (magic4 === 'KDMV' || magic4 === 'COWD' || looksLikeVmdkDescriptor(head)) {
      findings.push(inspectVmdk(head, this.tail, total));
    }
    if (head.subarray(0, 8).toString('latin1') === 'vhdxfile') {
      findings.push(this.vhdx.finish(head));
    }
    if (head.subarray(0, 8).toString('latin1') === 'conectix') findings.push(inspectVhdFooter(head));
    if (head.length >= 0x178 && head.readUInt32LE(0x40) === 0xbeda107f) findings.push(inspectVdi(head));
    const iso = inspectIso(head, total);
    if (iso) findings.push(iso);
    if (magic4 === 'QED\0') problems.push('image content is qed, which is not allowed');
    if (head.subarray(0, 6).toString('latin1') === LUKS_MAGIC) findings.push(inspectLuks(head, total));

    // qemu only looks for a fixed VHD's footer at the end when nothing is recognised at the start.
    if (findings.length === 0) {
      const footer = this.tail.subarray(Math.max(0, this.tail.length - 512));
      if (isFixedVhdFooter(footer)) findings.push(inspectVhdFooter(footer));
    }

    const first = findings[0];
    if (!first) return { format: 'raw', virtualSize: total, dataSize: total, safetyProblems: problems };
    if (!Number.isFinite(first.virtualSize)) {
      problems.push(`${first.format} virtual size is out of range`);
      first.virtualSize = 0;
    }
    if (findings.length > 1) {
      // A polyglot is read differently by different consumers, so its checks cannot be trusted.
      problems.push(`image content matches multiple formats: ${findings.map((f) => f.format).join(', ')}`);
    }
    for (const finding of findings) problems.push(...finding.problems);
    return {
      format: first.format,
      virtualSize: first.virtualSize,
      dataSize: total,
      safetyProblems: problems,
    };
  }

  private headBytes(): Buffer {
    return this.head.subarray(0, this.headLength);
  }

  private updateTail(chunk: Buffer): void {
    // Copies, so the tail never pins a (possibly large) chunk buffer in memory.
    if (chunk.length >= TAIL_LIMIT) {
      this.tail = Buffer.from(chunk.subarray(chunk.length - TAIL_LIMIT));
    } else {
      const joined = Buffer.concat([this.tail, chunk]);
      this.tail = Buffer.from(joined.subarray(Math.max(0, joined.length - TAIL_LIMIT)));
    }
  }
}

export interface FormatCheckOptions {
  /**
   * Glance's [image_format] require_image_format_match: refuse content that is not the declared
   * disk_format. Off, such content is let through; the safety problems are refused either way.
   */
  requireMatch: boolean;
}

export interface FormatDecision {
  /** False when the content is not the declared disk_format and was let through (requireMatch off). */
  matched: boolean;
  /**
   * The virtual_size to record. On a mismatch let through it is what Glance records: the byte
   * count for a raw declaration, otherwise unknown (null), since the content's own would be wrong.
   */
  virtualSize: number | null;
}

/**
 * Accept or reject an inspected image for the disk_format it was declared with. Throws
 * BadRequestError naming every reason. A null declaration only gets the safety checks.
 */
export function inspectAndCheck(
  result: InspectionResult,
  declaredDiskFormat: string | null,
  options: FormatCheckOptions = { requireMatch: true },
): FormatDecision {
  // Unsafe content stays refused whatever the match setting says: it is what hurts a consumer.
  if (result.safetyProblems.length > 0) throw new BadRequestError(result.safetyProblems.join('; '));
  if (declaredDiskFormat === null || contentMatches(result.format, declaredDiskFormat))
    return { matched: true, virtualSize: result.virtualSize };
  // An encrypted volume's payload cannot be inspected, so under another name it can hide anything:
  // refused whatever the match setting says (as Nova and Glance's conversion refuse it).
  if (result.format === 'luks')
    throw new BadRequestError(`image content is luks but disk_format is ${declaredDiskFormat}`);
  if (options.requireMatch)
    throw new BadRequestError(`image content is ${result.format} but disk_format is ${declaredDiskFormat}`);
  const raw = declaredDiskFormat.toLowerCase() === 'raw';
  return { matched: false, virtualSize: raw ? result.dataSize : null };
}

function contentMatches(format: InspectedFormat, declaredDiskFormat: string): boolean {
  const declared = declaredDiskFormat.toLowerCase();
  // Kernel/ramdisk/machine images are plain bytes.
  const expected = declared === 'ami' || declared === 'ari' || declared === 'aki' ? 'raw' : declared;
  // Unrecognised content is what raw means; an ISO is a raw disk image too.
  if (expected === 'raw') return format === 'raw' || format === 'iso';
  if (isInspectedFormat(expected)) return format === expected;
  // A format we cannot recognise (ploop): only content that is clearly something else is wrong.
  return format === 'raw';
}

function isInspectedFormat(value: string): value is InspectedFormat {
  return (INSPECTED_FORMATS as readonly string[]).includes(value);
}

interface Finding {
  format: InspectedFormat;
  virtualSize: number;
  problems: string[];
}

/** Reads a u64 as a number; values past 2^53 become Infinity so every bounds check fails on them. */
function u64(buf: Buffer, offset: number, littleEndian: boolean): number {
  const value = littleEndian ? buf.readBigUInt64LE(offset) : buf.readBigUInt64BE(offset);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(value);
}

// ---------------------------------------------------------------------------------------------
// qcow2 (big-endian header; docs/interop/qcow2.txt)
//   0 magic 'QFI\xfb' | 4 version | 8 backing_file_offset u64 | 16 backing_file_size
//   20 cluster_bits | 24 size u64 | 32 crypt_method | 36 l1_size (entries) | 40 l1_table_offset u64
//   ... | 72 incompatible_features u64 (v3)
//   100 header_length (v3) | header extensions follow the header, inside the first cluster.

const QCOW2_INCOMPAT_DATA_FILE = 1n << 2n;
/** Extended L2 entries are 16 bytes (two 64-bit words) instead of 8. */
const QCOW2_INCOMPAT_EXTENDED_L2 = 1n << 4n;
/** qemu's QCOW_MAX_L1_SIZE: 32 MiB of 8-byte entries. */
const QCOW2_MAX_L1_ENTRIES = (32 * MiB) / 8;
/** Bits 0-4 are defined (dirty, corrupt, external data file, compression type, extended L2). */
const QCOW2_INCOMPAT_KNOWN = (1n << 5n) - 1n;
const QCOW2_EXT_END = 0;
const QCOW2_EXT_DATA_FILE = 0x44415441; // 'DATA': the external data file's name

function inspectQcow2(head: Buffer): Finding {
  const problems: string[] = [];
  const finding: Finding = { format: 'qcow2', virtualSize: 0, problems };
  if (head.length < 72) {
    problems.push('qcow2 header is truncated');
    return finding;
  }
  const version = head.readUInt32BE(4);
  const backingFileOffset = u64(head, 8, false);
  const clusterBits = head.readUInt32BE(20);
  finding.virtualSize = u64(head, 24, false);

  if (version !== 2 && version !== 3) {
    problems.push(`qcow2 version ${version} is not supported`);
    return finding;
  }
  if (backingFileOffset !== 0) problems.push(QCOW2_BACKING);
  // qemu accepts 512 B to 2 MiB clusters; anything else is a corrupt or hostile header.
  if (clusterBits < 9 || clusterBits > 21) {
    problems.push(`qcow2 header is invalid (cluster_bits ${clusterBits})`);
    return finding;
  }
  const clusterSize = 2 ** clusterBits;

  let headerLength = 72;
  let incompatible = 0n;
  if (version === 3) {
    if (head.length < 104) {
      problems.push('qcow2 header is truncated');
      return finding;
    }
    incompatible = head.readBigUInt64BE(72);
    if (incompatible & QCOW2_INCOMPAT_DATA_FILE) problems.push(QCOW2_DATA_FILE);
    if (incompatible & ~QCOW2_INCOMPAT_KNOWN) problems.push('qcow2 image has unknown incompatible features');
    headerLength = head.readUInt32BE(100);
    if (headerLength < 104 || headerLength > clusterSize) {
      problems.push(`qcow2 header length ${headerLength} is out of bounds`);
      return finding;
    }
  }
  problems.push(...qcow2L1Problems(head, clusterBits, incompatible, finding.virtualSize));

  // Walk the header extensions the way qemu does: they end at the backing file name or the cluster end.
  const end = backingFileOffset !== 0 ? Math.min(backingFileOffset, clusterSize) : clusterSize;
  let offset = headerLength;
  while (offset + 8 <= end) {
    if (offset + 8 > head.length) {
      problems.push('qcow2 header extensions extend beyond the inspected region');
      break;
    }
    const type = head.readUInt32BE(offset);
    const length = head.readUInt32BE(offset + 4);
    if (type === QCOW2_EXT_END) break;
    if (length > end - offset - 8) {
      problems.push('qcow2 header extension is out of bounds');
      break;
    }
    if (type === QCOW2_EXT_DATA_FILE && !problems.includes(QCOW2_DATA_FILE)) problems.push(QCOW2_DATA_FILE);
    offset += 8 + Math.ceil(length / 8) * 8;
  }
  return finding;
}

/**
 * qemu's own open-time rule (qcow2_do_open): the active L1 table must have an entry for every L2
 * table the virtual size needs. A header promising a bigger disk than its tables can map is
 * corrupt or hostile, and qemu refuses to open it; so does Hangar, before anyone tries.
 */
function qcow2L1Problems(
  head: Buffer,
  clusterBits: number,
  incompatible: bigint,
  virtualSize: number,
): string[] {
  const l1Entries = head.readUInt32BE(36);
  if (l1Entries > QCOW2_MAX_L1_ENTRIES) return ['qcow2 L1 table is too large'];
  // Infinite sizes are reported as out of range by finish().
  if (!Number.isFinite(virtualSize)) return [];
  const l2Bits = clusterBits - (incompatible & QCOW2_INCOMPAT_EXTENDED_L2 ? 4 : 3);
  // Each L1 entry maps one L2 table: 2^l2Bits clusters. Powers of two keep this division exact.
  const needed = Math.ceil(virtualSize / 2 ** (clusterBits + l2Bits));
  if (needed > 0x7fffffff) return ['qcow2 virtual size is too big'];
  if (l1Entries < needed)
    return [`qcow2 L1 table is too small for the virtual size (${l1Entries} entries, ${needed} needed)`];
  return [];
}

// ---------------------------------------------------------------------------------------------
// LUKS (big-endian; LUKS1 on-disk format, as qemu's luks driver and cryptsetup read it)
//   0 magic 'LUKS\xba\xbe' | 6 version u16 | ... | 104 payload_offset (sectors) u32 | 108 key_bytes u32

const LUKS_MAGIC = 'LUKS\xba\xbe';

/**
 * An encrypted volume: its payload cannot be inspected, so it is never what another disk_format
 * declares (a mismatch, as Nova and Glance's conversion see it); only LUKS1 is understood by qemu.
 */
function inspectLuks(head: Buffer, total: number): Finding {
  const problems: string[] = [];
  const finding: Finding = { format: 'luks', virtualSize: 0, problems };
  if (head.length < 592) {
    problems.push('luks header is truncated');
    return finding;
  }
  const version = head.readUInt16BE(6);
  // oslo.utils' LUKSInspector safety check: only version 1.
  if (version !== 1) problems.push(`luks version ${version} is not supported`);
  finding.virtualSize = Math.max(0, total - head.readUInt32BE(104) * 512);
  return finding;
}

// ---------------------------------------------------------------------------------------------
// VMDK (little-endian sparse header; VMware Virtual Disk Format 5.0)
//   0 magic 'KDMV' | 4 version | 8 flags | 12 capacity (sectors) u64 | 20 grain size
//   28 descriptor offset (sectors) u64 | 36 descriptor size (sectors) u64 | 56 gd offset u64
// Or a plain-text descriptor file whose extents live in other files.

const VMDK_GD_AT_END = 0xffffffffffffffffn;
const VMDK_ALLOWED_CREATE_TYPES = new Set(['monolithicsparse', 'streamoptimized']);
/** qemu reads the parent hint from a fixed 20-sector window after the header. */
const VMDK_PARENT_HINT_WINDOW = 20 * 512;

function inspectVmdk(head: Buffer, tail: Buffer, total: number): Finding {
  const magic = head.subarray(0, 4).toString('latin1');
  if (magic === 'KDMV') return inspectVmdkSparse(head, tail, total);
  if (magic === 'COWD') {
    // The old ESX COW format carries a parent file name in its header.
    return { format: 'vmdk', virtualSize: 0, problems: ['vmdk COWD (version 3) images are not allowed'] };
  }
  // A descriptor file: its data is by definition in other files.
  const descriptor = parseVmdkDescriptor(cString(head.subarray(0, MiB - 1)));
  const problems = [VMDK_EXTERNAL, ...descriptorProblems(descriptor)];
  return { format: 'vmdk', virtualSize: descriptor.extentSectors * 512, problems };
}

function inspectVmdkSparse(head: Buffer, tail: Buffer, total: number): Finding {
  const problems: string[] = [];
  const finding: Finding = { format: 'vmdk', virtualSize: 0, problems };
  if (head.length < 512) {
    problems.push('vmdk header is truncated');
    return finding;
  }
  const version = head.readUInt32LE(4);
  let capacity = u64(head, 12, true);
  const descOffset = u64(head, 28, true);
  const descSectors = u64(head, 36, true);
  if (version < 1 || version > 3) problems.push(`vmdk version ${version} is not supported`);

  // With a zero capacity qemu treats the embedded descriptor as a descriptor file and opens its extents.
  if (capacity === 0 && descOffset !== 0) problems.push(VMDK_EXTERNAL);

  if (descOffset !== 1) {
    problems.push('vmdk image has no embedded descriptor at the expected location');
  } else {
    const descEnd = 512 + Math.min(descSectors * 512, MiB - 1);
    if (descEnd > head.length) {
      problems.push('vmdk descriptor is truncated or too large');
    } else {
      const descriptor = parseVmdkDescriptor(cString(head.subarray(512, descEnd)));
      problems.push(...descriptorProblems(descriptor));
      const external = descriptor.extents.some(
        (e) => e.type !== 'sparse' || e.file === null || /[/\\]/.test(e.file),
      );
      if ((external || descriptor.extents.length !== 1) && !problems.includes(VMDK_EXTERNAL)) {
        problems.push(VMDK_EXTERNAL);
      }
    }
  }
  // Checked independently of the parsed descriptor because qemu looks at this window regardless.
  const hintWindow = head.subarray(512, 512 + VMDK_PARENT_HINT_WINDOW).toString('latin1');
  if (/parentfilenamehint/i.test(hintWindow) && !problems.includes('vmdk image has a backing file')) {
    problems.push('vmdk image has a backing file');
  }

  // streamOptimized images may defer the real header to a footer 1536 bytes before the end.
  if (head.readBigUInt64LE(56) === VMDK_GD_AT_END) {
    const valid =
      tail.length === TAIL_LIMIT &&
      total >= 512 + TAIL_LIMIT &&
      tail.readUInt32LE(12) === 3 && // footer marker
      tail.subarray(512, 516).toString('latin1') === 'KDMV';
    if (valid) capacity = u64(tail, 512 + 12, true);
    else problems.push('vmdk footer is missing or invalid');
  }
  finding.virtualSize = capacity * 512;
  return finding;
}

interface VmdkExtent {
  type: string;
  sectors: number;
  file: string | null;
}

interface VmdkDescriptor {
  createType: string | null;
  extents: VmdkExtent[];
  extentSectors: number;
  malformed: boolean;
  hasParent: boolean;
}

/** Descriptors are C strings to qemu: whatever follows a NUL is never read. */
function cString(bytes: Buffer): string {
  const nul = bytes.indexOf(0);
  return (nul < 0 ? bytes : bytes.subarray(0, nul)).toString('latin1');
}

const EXTENT_LINE = /^(rw|rdonly|noaccess)\s+(\d+)\s+([a-z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?$/i;

/** Cautious parser: any line that is not a comment, header field, extent or ddb entry marks it malformed. */
function parseVmdkDescriptor(text: string): VmdkDescriptor {
  const descriptor: VmdkDescriptor = {
    createType: null,
    extents: [],
    extentSectors: 0,
    malformed: false,
    hasParent: false,
  };
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const extent = EXTENT_LINE.exec(line);
    if (extent) {
      const sectors = Number(extent[2]);
      descriptor.extents.push({ type: extent[3]!.toLowerCase(), sectors, file: extent[4] ?? null });
      descriptor.extentSectors += sectors;
      continue;
    }
    const field = /^([A-Za-z0-9_.]+)\s*=\s*(.*)$/.exec(line);
    if (!field) {
      descriptor.malformed = true;
      continue;
    }
    const key = field[1]!.toLowerCase();
    const value = field[2]!.replace(/^"(.*)"$/, '$1');
    if (key === 'createtype') descriptor.createType = value;
    if (key === 'parentfilenamehint') descriptor.hasParent = true;
  }
  return descriptor;
}

function descriptorProblems(descriptor: VmdkDescriptor): string[] {
  const problems: string[] = [];
  if (descriptor.malformed) problems.push('vmdk descriptor is malformed');
  if (descriptor.createType === null) problems.push('vmdk descriptor has no createType');
  else if (!VMDK_ALLOWED_CREATE_TYPES.has(descriptor.createType.toLowerCase())) {
    problems.push(`vmdk create type ${descriptor.createType.slice(0, 64)} is not allowed`);
  }
  if (descriptor.hasParent) problems.push('vmdk image has a backing file');
  return problems;
}

/**
 * qemu's probe for a text descriptor: after comment and blank lines the first line must be
 * "version=1|2|3". Blank lines are accepted a little more loosely than qemu, erring towards detection.
 */
function looksLikeVmdkDescriptor(head: Buffer): boolean {
  const lines = head.subarray(0, 2048).toString('latin1').split('\n');
  lines.pop(); // the last piece is not a complete line
  for (const line of lines) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    return /^version=[123]$/.test(line.replace(/\r$/, ''));
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// VHD (big-endian 512-byte footer, also copied to offset 0 for dynamic disks)
//   0 cookie 'conectix' | 28 creator app | 48 current size u64 | 56 geometry (C u16, H u8, S u8)
//   60 disk type (2 fixed, 3 dynamic, 4 differencing) | 64 checksum

const VHD_MAX_GEOMETRY = 65535 * 16 * 255;
/** Creators that write current_size rather than relying on CHS geometry (as qemu's vpc driver lists them). */
const VHD_SIZE_CREATORS = new Set(['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0']);

function inspectVhdFooter(footer: Buffer): Finding {
  const problems: string[] = [];
  const finding: Finding = { format: 'vhd', virtualSize: 0, problems };
  if (footer.length < 512) {
    problems.push('vhd footer is truncated');
    return finding;
  }
  const diskType = footer.readUInt32BE(60);
  if (diskType === 4) problems.push('vhd differencing image references a parent image');
  else if (diskType !== 2 && diskType !== 3) problems.push(`vhd disk type ${diskType} is not supported`);

  // Same size rule as qemu: CHS geometry unless the creator is known to use current_size.
  const chsSectors = footer.readUInt16BE(56) * footer.readUInt8(58) * footer.readUInt8(59);
  const creator = footer.subarray(28, 32).toString('latin1');
  const useSize = VHD_SIZE_CREATORS.has(creator) || chsSectors === VHD_MAX_GEOMETRY;
  finding.virtualSize = useSize ? Math.floor(u64(footer, 48, false) / 512) * 512 : chsSectors * 512;
  return finding;
}

/** A fixed VHD is raw data plus this footer; the checksum keeps raw disks from matching by accident. */
function isFixedVhdFooter(footer: Buffer): boolean {
  if (footer.length !== 512 || footer.subarray(0, 8).toString('latin1') !== 'conectix') return false;
  if (footer.readUInt32BE(60) !== 2) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) if (i < 64 || i >= 68) sum += footer[i]!;
  return ~sum >>> 0 === footer.readUInt32BE(64);
}

// ---------------------------------------------------------------------------------------------
// VDI (little-endian; qemu block/vdi.c): 0x40 signature 0xbeda107f | 0x4c image type | 0x170 disk size u64

function inspectVdi(head: Buffer): Finding {
  const problems: string[] = [];
  const imageType = head.readUInt32LE(0x4c);
  // Undo and differencing images depend on a parent image; qemu only opens dynamic and static ones.
  if (imageType !== 1 && imageType !== 2) problems.push(`vdi image type ${imageType} is not supported`);
  return { format: 'vdi', virtualSize: Math.floor(u64(head, 0x170, true) / 512) * 512, problems };
}

// ---------------------------------------------------------------------------------------------
// ISO 9660 / UDF: volume descriptors are 2 KiB sectors from 32 KiB, each with an identifier at +1.
//   Primary volume descriptor (type 1): 80 volume space size (u32 LE) | 128 logical block size (u16 LE)

const ISO_FIRST_DESCRIPTOR = 32 * KiB;
const ISO_SECTOR = 2 * KiB;
const UDF_IDENTIFIERS = new Set(['BEA01', 'NSR02', 'NSR03', 'TEA01', 'BOOT2', 'CDW02']);

function inspectIso(head: Buffer, total: number): Finding | null {
  let found = false;
  let volumeBytes = 0;
  for (let offset = ISO_FIRST_DESCRIPTOR; offset + ISO_SECTOR <= head.length; offset += ISO_SECTOR) {
    const id = head.subarray(offset + 1, offset + 6).toString('latin1');
    if (id === 'CD001') {
      found = true;
      const type = head[offset]!;
      if (type === 1 && volumeBytes === 0) {
        volumeBytes = head.readUInt32LE(offset + 80) * head.readUInt16LE(offset + 128);
      }
      if (type === 255) break; // volume descriptor set terminator
    } else if (UDF_IDENTIFIERS.has(id)) {
      if (id === 'NSR02' || id === 'NSR03') found = true;
    } else {
      break;
    }
  }
  if (!found) return null;
  return { format: 'iso', virtualSize: volumeBytes > 0 ? volumeBytes : total, problems: [] };
}

// ---------------------------------------------------------------------------------------------
// VHDX (little-endian; MS-VHDX). 'vhdxfile' at 0, region table at 192 KiB:
//   0 'regi' | 4 CRC-32C | 8 entry count | entries of 32 bytes from 16: GUID, offset u64, length u32
// The metadata region starts with a table: 'metadata' | 10 entry count u16 | entries of 32 bytes
// from 32: item GUID, offset u32 (from region start), length u32. Virtual Disk Size is a u64 item.

function guidBytes(guid: string): Buffer {
  const hex = guid.replaceAll('-', '');
  const bytes = Buffer.from(hex, 'hex');
  // The first three GUID fields are stored little-endian.
  bytes.subarray(0, 4).reverse();
  bytes.subarray(4, 6).reverse();
  bytes.subarray(6, 8).reverse();
  return bytes;
}

const VHDX_REGION_TABLE_OFFSET = 192 * KiB;
const VHDX_METADATA_REGION = guidBytes('8B7CA206-4790-4B9A-B8FE-575F050F886E');
const VHDX_VIRTUAL_DISK_SIZE = guidBytes('2FA54224-CD1B-4876-B211-5DBED83BF4B8');
const VHDX_FILE_PARAMETERS = guidBytes('CAA16737-FA36-4D43-B3B6-33F0AA44E76B');
const VHDX_PARENT_LOCATOR = guidBytes('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C');
const VHDX_HAS_PARENT = 0x2;
const VHDX_MAX_ENTRIES = 2047;

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32c(buf: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of buf) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** Follows region table -> metadata table -> metadata items while the stream goes by. */
class VhdxWalker {
  private stage: 'regions' | 'table' | 'items' | 'done' | 'failed' = 'regions';
  private error = '';
  private metaOffset = 0;
  private metaLength = 0;
  private table: CaptureRegion | null = null;
  private diskSize: CaptureRegion | null = null;
  private fileParameters: CaptureRegion | null = null;
  private hasParentLocator = false;

  get retainedBytes(): number {
    return (this.table?.length ?? 0) + (this.diskSize?.length ?? 0) + (this.fileParameters?.length ?? 0);
  }

  /** Called after every chunk; new regions are offered the head and the current chunk, as they may already be in them. */
  advance(head: Buffer, chunk: Buffer, chunkStart: number, atEnd: boolean): void {
    for (const region of this.regions()) region.offer(chunk, chunkStart);
    for (;;) {
      const before = this.stage;
      if (this.stage === 'regions') this.readRegionTable(head, atEnd);
      else if (this.stage === 'table' && this.table?.complete) this.readMetadataTable();
      else if (this.stage === 'items' && this.regions().every((r) => r.complete)) this.stage = 'done';
      if (this.stage === before) return;
      for (const region of this.regions()) {
        region.offer(head, 0);
        region.offer(chunk, chunkStart);
      }
    }
  }

  finish(head: Buffer): Finding {
    this.advance(head, Buffer.alloc(0), head.length, true);
    const finding: Finding = { format: 'vhdx', virtualSize: 0, problems: [] };
    if (this.stage !== 'done') {
      const why = this.stage === 'failed' ? this.error : 'metadata not found where expected';
      finding.problems.push(`vhdx image could not be parsed: ${why}`);
      return finding;
    }
    finding.virtualSize = u64(this.diskSize!.data, 0, true);
    const hasParent =
      this.fileParameters !== null && (this.fileParameters.data.readUInt32LE(4) & VHDX_HAS_PARENT) !== 0;
    if (this.hasParentLocator || hasParent)
      finding.problems.push('vhdx differencing image references a parent image');
    return finding;
  }

  private regions(): CaptureRegion[] {
    return [this.table, this.diskSize, this.fileParameters].filter((r): r is CaptureRegion => r !== null);
  }

  private fail(why: string): void {
    this.stage = 'failed';
    this.error = why;
  }

  private readRegionTable(head: Buffer, atEnd: boolean): void {
    const end = VHDX_REGION_TABLE_OFFSET + 64 * KiB;
    if (head.length < end) {
      if (atEnd) this.fail('region table is truncated');
      return;
    }
    const table = Buffer.from(head.subarray(VHDX_REGION_TABLE_OFFSET, end));
    if (table.subarray(0, 4).toString('latin1') !== 'regi') {
      this.fail('region table signature not found');
      return;
    }
    const checksum = table.readUInt32LE(4);
    table.writeUInt32LE(0, 4);
    if (crc32c(table) !== checksum) {
      this.fail('region table checksum is invalid');
      return;
    }
    const count = table.readUInt32LE(8);
    if (count > VHDX_MAX_ENTRIES) {
      this.fail('region table has too many entries');
      return;
    }
    for (let i = 0; i < count; i++) {
      const entry = 16 + i * 32;
      if (!table.subarray(entry, entry + 16).equals(VHDX_METADATA_REGION)) continue;
      this.metaOffset = u64(table, entry + 16, true);
      this.metaLength = table.readUInt32LE(entry + 24);
      if (!Number.isFinite(this.metaOffset) || this.metaLength < 32) {
        this.fail('metadata region is invalid');
        return;
      }
      this.table = new CaptureRegion(this.metaOffset, Math.min(this.metaLength, VHDX_REGION_LIMIT));
      this.stage = 'table';
      return;
    }
    this.fail('metadata region not found');
  }

  private readMetadataTable(): void {
    const table = this.table!.data;
    if (table.subarray(0, 8).toString('latin1') !== 'metadata') {
      this.fail('metadata signature not found');
      return;
    }
    const count = table.readUInt16LE(10);
    if (count > VHDX_MAX_ENTRIES || 32 + count * 32 > table.length) {
      this.fail('metadata table has too many entries');
      return;
    }
    for (let i = 0; i < count; i++) {
      const entry = 32 + i * 32;
      const id = table.subarray(entry, entry + 16);
      const itemOffset = table.readUInt32LE(entry + 16);
      const itemLength = table.readUInt32LE(entry + 20);
      const wanted = id.equals(VHDX_VIRTUAL_DISK_SIZE) || id.equals(VHDX_FILE_PARAMETERS);
      if (id.equals(VHDX_PARENT_LOCATOR)) this.hasParentLocator = true;
      if (!wanted) continue;
      if (itemLength < 8 || itemOffset + 8 > this.metaLength) {
        this.fail('metadata item is out of bounds');
        return;
      }
      const region = new CaptureRegion(this.metaOffset + itemOffset, 8);
      if (id.equals(VHDX_VIRTUAL_DISK_SIZE)) this.diskSize = region;
      else this.fileParameters = region;
    }
    if (!this.diskSize) {
      this.fail('virtual disk size not found');
      return;
    }
    this.stage = 'items';
  }
}
