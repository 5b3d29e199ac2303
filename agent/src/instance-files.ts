/**
 * Per-instance files under <data_dir>/instances/<instance_id>/:
 *   instance.json   what the agent knows (image id, domain name/uuid): also how the image cache sees users
 *   overlay.qcow2   qcow2 overlay on the cached base image (the base is never written)
 *   previous.qcow2  the disk before the last upgrade (the one a rollback returns to); at most one
 *   upgrade.qcow2   an upgrade's new disk, until it is swapped in
 *   rollback.qcow2  during an upgrade's boot check, the disk it replaced (back in place on failure)
 *   swap.qcow2      a rollback's disk in the middle of swapping places with previous.qcow2
 *   meta/           meta-data and user-data of the NoCloud seed
 *   seed.img        ISO9660 labelled "cidata" (NoCloud), made with genisoimage
 *   console.log     the serial console, written by libvirt/qemu
 * Dirs are 0755 and files 0644: under qemu:///system qemu runs as libvirt-qemu and must traverse and read
 * them (libvirt chowns the disks it opens; the dirs stay ours).
 */
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { SAFE_ID } from './config.ts';
import { AgentError } from './errors.ts';
import { run } from './exec.ts';
import type { CachedImage } from './image-cache.ts';

export interface InstancePaths {
  dir: string;
  record: string;
  overlay: string;
  previous: string;
  upgrade: string;
  rollback: string;
  swap: string;
  seed: string;
  metaDir: string;
  consoleLog: string;
}

const RecordSchema = z.object({
  instance_id: z.string(),
  image_id: z.string(),
  domain_name: z.string(),
  domain_uuid: z.string(),
  created_at: z.string(),
  // Added with upgrades (older files have neither): the images of previous.qcow2 and of an
  // upgrade in flight, which the image cache must keep too.
  previous_image_id: z.string().optional(),
  upgrade_image_id: z.string().optional(),
});
export type InstanceRecord = z.infer<typeof RecordSchema>;

export const DEFAULT_USER_DATA = '#cloud-config\n{}\n';
const GiB = 1024 ** 3;

/** YAML accepts JSON strings: quoting every value keeps odd hostnames from becoming YAML syntax. */
export function metaDataFor(instanceId: string, hostname: string): string {
  return `instance-id: ${JSON.stringify(instanceId)}\nlocal-hostname: ${JSON.stringify(hostname)}\n`;
}

export class InstanceFiles {
  constructor(readonly root: string) {}

  paths(instanceId: string): InstancePaths {
    if (!SAFE_ID.test(instanceId)) throw new AgentError(`unsafe instance id ${JSON.stringify(instanceId)}`);
    const dir = join(this.root, instanceId);
    return {
      dir,
      record: join(dir, 'instance.json'),
      overlay: join(dir, 'overlay.qcow2'),
      previous: join(dir, 'previous.qcow2'),
      upgrade: join(dir, 'upgrade.qcow2'),
      rollback: join(dir, 'rollback.qcow2'),
      swap: join(dir, 'swap.qcow2'),
      seed: join(dir, 'seed.img'),
      metaDir: join(dir, 'meta'),
      consoleLog: join(dir, 'console.log'),
    };
  }

  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    await chmod(this.root, 0o755);
  }

  /** Creates the dir and writes instance.json first, so the image cache counts this instance as a user. */
  async prepare(record: InstanceRecord): Promise<InstancePaths> {
    const paths = this.paths(record.instance_id);
    await mkdir(paths.metaDir, { recursive: true });
    await chmod(paths.dir, 0o755);
    await chmod(paths.metaDir, 0o755);
    await this.writeRecord(record);
    return paths;
  }

  /** instance.json replaced whole (temp + rename): a reader sees the old one or the new one. */
  async writeRecord(record: InstanceRecord): Promise<void> {
    const { record: path } = this.paths(record.instance_id);
    const tmp = `${path}.tmp`;
    await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
    await rename(tmp, path);
  }

  async removeFile(path: string): Promise<void> {
    await rm(path, { force: true });
  }

  /** Moves `from` onto `to` (rename(2): replaces `to` atomically). */
  async move(from: string, to: string): Promise<void> {
    await rename(from, to);
  }

  async readRecord(instanceId: string): Promise<InstanceRecord | undefined> {
    try {
      return RecordSchema.parse(JSON.parse(await readFile(this.paths(instanceId).record, 'utf8')));
    } catch {
      return undefined;
    }
  }

  async exists(path: string): Promise<boolean> {
    return (await stat(path).catch(() => undefined)) !== undefined;
  }

  /**
   * qcow2 overlay on the cached base, grown to disk_gb when that is larger than the image (a smaller disk_gb
   * keeps the image's size: shrinking would cut the guest's filesystem). Built under a temp name and renamed,
   * so a killed agent never leaves a half-made overlay behind under the real name.
   */
  async createOverlay(
    instanceId: string,
    base: CachedImage,
    diskGb: number,
    signal?: AbortSignal,
    overlay = this.paths(instanceId).overlay,
  ): Promise<string> {
    const tmp = `${overlay}.tmp`;
    const wanted = diskGb * GiB;
    // qemu-img create takes the size directly: one process instead of create + resize.
    const size = wanted > base.virtualSize ? [String(wanted)] : [];
    await rm(tmp, { force: true });
    await run(
      'qemu-img',
      [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-F',
        base.format,
        '-b',
        base.path,
        '-o',
        'lazy_refcounts=on',
        tmp,
        ...size,
      ],
      { timeoutMs: 60_000, signal },
    );
    await chmod(tmp, 0o644);
    await rename(tmp, overlay);
    return overlay;
  }

  /** The NoCloud seed: ISO9660 with volume id "cidata", Joliet + Rock Ridge, from meta-data and user-data. */
  async createSeed(
    instanceId: string,
    data: { hostname: string; userData: string | null },
    signal?: AbortSignal,
  ): Promise<string> {
    const paths = this.paths(instanceId);
    await mkdir(paths.metaDir, { recursive: true });
    await writeFile(join(paths.metaDir, 'meta-data'), metaDataFor(instanceId, data.hostname), {
      mode: 0o644,
    });
    await writeFile(join(paths.metaDir, 'user-data'), data.userData ?? DEFAULT_USER_DATA, { mode: 0o644 });
    const tmp = `${paths.seed}.tmp`;
    await run(
      'genisoimage',
      [
        '-quiet',
        '-input-charset',
        'utf-8',
        '-output',
        tmp,
        '-volid',
        'cidata',
        '-joliet',
        '-rock',
        'user-data',
        'meta-data',
      ],
      { cwd: paths.metaDir, timeoutMs: 60_000, signal },
    );
    await chmod(tmp, 0o644);
    await rename(tmp, paths.seed);
    return paths.seed;
  }

  /** The last `maxBytes` of the console log ('' if none yet). */
  consoleTail(instanceId: string, maxBytes = 64 * 1024): Promise<string> {
    return this.readConsole(instanceId, (size) => Math.max(0, size - maxBytes), maxBytes);
  }

  /** Console output written at or after byte `offset` (at most `maxBytes` of it). */
  consoleSince(instanceId: string, offset: number, maxBytes = 1024 * 1024): Promise<string> {
    return this.readConsole(instanceId, () => offset, maxBytes);
  }

  private async readConsole(
    instanceId: string,
    from: (size: number) => number,
    maxBytes: number,
  ): Promise<string> {
    const path = this.paths(instanceId).consoleLog;
    let handle: Awaited<ReturnType<typeof open>> | undefined;
    try {
      handle = await open(path, 'r');
      const { size } = await handle.stat();
      const start = Math.min(from(size), size);
      const length = Math.min(size - start, maxBytes);
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, start);
      return buffer.subarray(0, bytesRead).toString('utf8');
    } catch {
      return '';
    } finally {
      await handle?.close();
    }
  }

  async consoleSize(instanceId: string): Promise<number> {
    return (await stat(this.paths(instanceId).consoleLog).catch(() => undefined))?.size ?? 0;
  }

  async remove(instanceId: string): Promise<void> {
    await rm(this.paths(instanceId).dir, { recursive: true, force: true });
  }

  /** Ids of the instance dirs on disk (anything that is not a safe id is not ours and is left alone). */
  async list(): Promise<string[]> {
    const names = await readdir(this.root, { withFileTypes: true }).catch(() => []);
    return names
      .filter((entry) => entry.isDirectory() && SAFE_ID.test(entry.name))
      .map((entry) => entry.name);
  }

  /** Image ids the instances' disks on disk are built on: the image cache must not evict these. */
  async imagesInUse(): Promise<Set<string>> {
    const used = new Set<string>();
    for (const id of await this.list()) {
      const record = await this.readRecord(id);
      if (!record) continue;
      used.add(record.image_id);
      if (record.previous_image_id) used.add(record.previous_image_id);
      if (record.upgrade_image_id) used.add(record.upgrade_image_id);
    }
    return used;
  }
}
