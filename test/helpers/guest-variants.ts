/**
 * Variants of the test guest (agent/guest/build-test-guest.sh) for e2e tests: the same guest with
 * a `hangar-marker.txt` on its FAT32 partition, whose first line it prints at boot as
 * `HANGAR-DISK-MARKER: <line>`; and a blank disk that boots nothing (no boot marker ever).
 * No mount and no loop device: qemu-img to raw, mtools at the partition's offset, qemu-img back.
 */
import { open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../agent/src/exec.ts';

/** The byte offset of the first MBR partition (its LBA start, little-endian at 446 + 8, times 512). */
export async function firstPartitionOffset(rawImage: string): Promise<number> {
  const handle = await open(rawImage, 'r');
  try {
    const mbr = Buffer.alloc(512);
    await handle.read(mbr, 0, 512, 0);
    if (mbr.readUInt16LE(510) !== 0xaa55) throw new Error(`${rawImage} has no MBR boot signature`);
    const lba = mbr.readUInt32LE(446 + 8);
    if (lba === 0) throw new Error(`${rawImage} has no first partition`);
    return lba * 512;
  } finally {
    await handle.close();
  }
}

/** `guest` (qcow2) with hangar-marker.txt holding `marker`, written to `dir`; returns the qcow2's path. */
export async function guestWithMarker(guest: string, marker: string, dir: string): Promise<string> {
  const slug = marker.replace(/[^A-Za-z0-9-]+/g, '-');
  const raw = join(dir, `guest-${slug}.raw`);
  const text = join(dir, `marker-${slug}.txt`);
  const out = join(dir, `guest-${slug}.qcow2`);
  await run('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', guest, raw], { timeoutMs: 120_000 });
  try {
    const offset = await firstPartitionOffset(raw);
    await writeFile(text, `${marker}\n`);
    await run('mcopy', ['-o', '-i', `${raw}@@${offset}`, text, '::/hangar-marker.txt'], {
      timeoutMs: 60_000,
    });
    await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, out], { timeoutMs: 120_000 });
  } finally {
    await rm(raw, { force: true });
    await rm(text, { force: true });
  }
  return out;
}

/** A blank qcow2 (nothing to boot: the firmware finds no bootable disk, no boot marker is printed). */
export async function blankDisk(dir: string): Promise<string> {
  const out = join(dir, 'blank.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', out, String(64 * 1024 * 1024)], {
    timeoutMs: 60_000,
  });
  return out;
}
