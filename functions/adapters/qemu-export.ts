/**
 * The export conversion: the image blob to a scratch file, `qemu-img convert` to the target
 * format, then one read of the result that hashes it (sha512) and uploads it to the export bucket,
 * with a `<key>.sha512` sidecar in sha512sum format.
 *
 * Formats are always given explicitly (-f/-O): qemu never probes a user's image. The source was
 * inspected when it was imported; `qemu-img info` is checked again here, so a backing or data file
 * can never be opened even if a blob were somehow unsafe.
 *
 * Where it runs on AWS: a container-image Lambda that ships qemu-img (see docs/import-export.md),
 * whose /tmp (up to 10 GB) holds source and output, and whose 15 minutes bound the image size.
 */
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { BytePipeline, type ByteTools } from '#core/data/pipeline';
import type { BlobStore, ObjectRef } from '#core/data/ports';
import type { ImageExporter } from '#core/transfer/ports';

const run = promisify(execFile);

/** qemu-img -o options per output format (qemu's names: vhd is vpc). */
const OUTPUT_OPTIONS: Record<string, string[]> = {
  // Dynamic VHD with the exact virtual size (force_size), not one rounded to a CHS geometry.
  vpc: ['-o', 'subformat=dynamic,force_size=on'],
  // streamOptimized is what VMware and OVF/OVA importers take, and compact.
  vmdk: ['-o', 'subformat=streamOptimized'],
  qcow2: ['-o', 'compat=1.1'],
  raw: [],
};

export interface QemuExporterOptions extends ByteTools {
  images: BlobStore;
  /** The export bucket's store (puts never overwrite). */
  exportStore: (bucket: string) => BlobStore;
  qemuImg?: string;
  scratchDir?: string;
  timeoutMs?: number;
}

export class QemuImageExporter implements ImageExporter {
  constructor(private readonly options: QemuExporterOptions) {}

  async export(spec: {
    blobKey: string;
    sourceFormat: string;
    targetFormat: string;
    destination: ObjectRef;
  }): Promise<{ size: number; sha512: string }> {
    const qemuImg = this.options.qemuImg ?? 'qemu-img';
    const timeout = this.options.timeoutMs ?? 14 * 60 * 1000;
    const outputOptions = OUTPUT_OPTIONS[spec.targetFormat];
    if (!outputOptions) throw new Error(`no export to ${spec.targetFormat}`);
    const dir = await mkdtemp(join(this.options.scratchDir ?? tmpdir(), 'hangar-export-'));
    try {
      const source = join(dir, 'source');
      const output = join(dir, 'output');
      await pipeline(await this.options.images.get(spec.blobKey), createWriteStream(source));

      const { stdout } = await run(qemuImg, ['info', '--output=json', '-f', spec.sourceFormat, source], {
        timeout,
      });
      const info = JSON.parse(stdout) as {
        'backing-filename'?: string;
        'format-specific'?: { data?: { 'data-file'?: string } };
      };
      if (info['backing-filename'] || info['format-specific']?.data?.['data-file'])
        throw new Error('The image refers to other files and cannot be exported.');

      await run(
        qemuImg,
        ['convert', '-f', spec.sourceFormat, '-O', spec.targetFormat, ...outputOptions, source, output],
        {
          timeout,
        },
      );

      const store = this.options.exportStore(spec.destination.bucket);
      const bytes = new BytePipeline(this.options, { stages: ['digest'] });
      try {
        await store.put(spec.destination.key, bytes.blocks(createReadStream(output)), {
          onBlock: bytes.take,
        });
      } catch (error) {
        bytes.cancel();
        throw error;
      }
      const {
        size,
        digests: { sha512 },
      } = await bytes.finish();
      const sidecar = Buffer.from(`${sha512}  ${basename(spec.destination.key)}\n`);
      try {
        await store.put(`${spec.destination.key}.sha512`, oneBlock(sidecar), { onBlock: () => undefined });
      } catch (error) {
        await store.delete(spec.destination.key).catch(() => undefined);
        throw error;
      }
      return { size, sha512 };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** A blob of one in-memory block (for small puts through BlobStore). */
export async function* oneBlock(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}
