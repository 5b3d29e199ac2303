/**
 * The upgrade and rollback handlers against the in-memory hypervisor (its guests print the first
 * line of the raw image under their overlay), real instance files (qemu-img, genisoimage) and a
 * stub image cache with one raw base per image: which disk is where after each step, the
 * automatic rollback, and retries that finish what an interrupted attempt began.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobRejectedError, UpgradeRolledBackError } from '../../../agent/src/errors.ts';
import type { CachedImage } from '../../../agent/src/image-cache.ts';
import { JOB_HANDLERS, type JobContext } from '../../../agent/src/jobs.ts';
import { silentLogger } from '../../../agent/src/log.ts';
import type { Job } from '../../../agent/src/service-client.ts';
import { jobContext, jobFor, stubCache, testInstance } from '../../helpers/agent-jobs.ts';
import { bootFromDisk, MemoryHypervisor, qcow2BackingFile } from '../../helpers/agent-memory-hypervisor.ts';

const INSTANCE = '0c3d7a10-5b2e-4f8e-9d61-2a7b9e4c1f00';
const NAME = `hangar-${INSTANCE}`;
const MARKER = 'HANGAR-GUEST-READY';

const ref = (id: string) => ({
  id,
  disk_format: 'raw',
  size: 4096,
  os_hash_algo: 'sha512' as const,
  os_hash_value: 'a'.repeat(128),
});

const job = (kind: Job['kind'], images: { image: string; upgrade?: string; previous?: string }): Job =>
  jobFor(
    kind,
    testInstance(INSTANCE, 'web', {
      boot_check: { marker: MARKER, timeout_seconds: 1 },
      image: ref(images.image),
      upgrade_image: images.upgrade ? ref(images.upgrade) : null,
      previous_image: images.previous ? ref(images.previous) : null,
    }),
  );

describe('upgrade and rollback jobs', { timeout: 30_000 }, () => {
  let dir: string;
  let hv: MemoryHypervisor;
  let ctx: JobContext;
  const bases = new Map<string, CachedImage>();
  const signal = new AbortController().signal;

  async function base(id: string, firstLine: string): Promise<void> {
    const path = join(dir, `${id}.raw`);
    await writeFile(path, `${firstLine}\n`.padEnd(4096, '\0'));
    bases.set(id, { id, path, format: 'raw', size: 4096, virtualSize: 4096, sha512: '' });
  }
  /** Which image the file's overlay sits on. */
  async function imageOf(path: string): Promise<string | undefined> {
    const backing = await qcow2BackingFile(path);
    return [...bases.values()].find((cached) => cached.path === backing)?.id;
  }
  const lastConsoleLine = async () =>
    (await readFile(ctx.files.paths(INSTANCE).consoleLog, 'utf8')).trimEnd().split('\n').at(-1);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-upgrade-jobs-'));
    bases.clear();
    await base('v1', `${MARKER} v1`);
    await base('v2', `${MARKER} v2`);
    await base('broken', 'no init found');
    const cache = stubCache(async (image) => {
      const found = bases.get(image.id);
      if (!found) throw new Error(`no base ${image.id}`);
      return found;
    });
    hv = new MemoryHypervisor({ guest: bootFromDisk });
    ctx = await jobContext(dir, hv, cache, { consoleTailBytes: 4_000 });
    await JOB_HANDLERS.build(job('build', { image: 'v1' }), ctx, silentLogger, signal);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('upgrades: a new overlay on the new base boots, the old overlay becomes the previous disk', async () => {
    // Act
    await JOB_HANDLERS.upgrade(job('upgrade', { image: 'v1', upgrade: 'v2' }), ctx, silentLogger, signal);

    // Assess
    const paths = ctx.files.paths(INSTANCE);
    expect(await imageOf(paths.overlay)).toBe('v2');
    expect(await imageOf(paths.previous)).toBe('v1');
    expect(await ctx.files.exists(paths.rollback)).toBe(false);
    expect(await ctx.files.exists(paths.upgrade)).toBe(false);
    expect(await ctx.files.readRecord(INSTANCE)).toMatchObject({ image_id: 'v2', previous_image_id: 'v1' });
    expect(await ctx.files.imagesInUse()).toEqual(new Set(['v2', 'v1']));
    expect(await lastConsoleLine()).toBe(`${MARKER} v2`);
    // Shut off before the disks moved, one domain throughout (same name and UUID: never redefined).
    expect(hv.calls.filter((call) => /^(shutdown|start|define) /.test(call))).toEqual([
      `define ${NAME}`,
      `start ${NAME}`,
      `shutdown ${NAME}`,
      `start ${NAME}`,
    ]);
  });

  it('a failed boot check puts the old disk back, starts it again and fails the job saying so', async () => {
    // Prepare: upgraded once, so there is a previous disk (v1) to keep
    await JOB_HANDLERS.upgrade(job('upgrade', { image: 'v1', upgrade: 'v2' }), ctx, silentLogger, signal);

    // Act
    const attempt = JOB_HANDLERS.upgrade(
      job('upgrade', { image: 'v2', upgrade: 'broken', previous: 'v1' }),
      ctx,
      silentLogger,
      signal,
    );

    // Assess
    await expect(attempt).rejects.toThrow(UpgradeRolledBackError);
    await expect(attempt).rejects.toThrow(
      /image broken failed its boot check .*rolled back to the previous disk \(image v2\)/,
    );
    const paths = ctx.files.paths(INSTANCE);
    expect(await imageOf(paths.overlay)).toBe('v2');
    expect(await imageOf(paths.previous)).toBe('v1');
    expect(await ctx.files.exists(paths.rollback)).toBe(false);
    const record = await ctx.files.readRecord(INSTANCE);
    expect(record).toMatchObject({ image_id: 'v2', previous_image_id: 'v1' });
    expect(record?.upgrade_image_id).toBeUndefined();
    expect(hv.domains.get(NAME)?.state).toBe('running');
    expect(await lastConsoleLine()).toBe(`${MARKER} v2`);
  });

  it('a retried upgrade puts back the disk an interrupted attempt swapped out, then upgrades', async () => {
    // Prepare: an attempt died after the swap, before the boot check (rollback.qcow2 holds the v1 disk)
    const paths = ctx.files.paths(INSTANCE);
    await ctx.files.move(paths.overlay, paths.rollback);
    await ctx.files.createOverlay(INSTANCE, bases.get('v2') as CachedImage, 1, signal);

    // Act
    await JOB_HANDLERS.upgrade(job('upgrade', { image: 'v1', upgrade: 'v2' }), ctx, silentLogger, signal);

    // Assess
    expect(await imageOf(paths.overlay)).toBe('v2');
    expect(await imageOf(paths.previous)).toBe('v1');
    expect(await ctx.files.exists(paths.rollback)).toBe(false);
  });

  it('a repeated upgrade that already passed changes nothing', async () => {
    // Prepare
    const upgrade = job('upgrade', { image: 'v1', upgrade: 'v2' });
    await JOB_HANDLERS.upgrade(upgrade, ctx, silentLogger, signal);
    const starts = hv.count('start');

    // Act
    await JOB_HANDLERS.upgrade(upgrade, ctx, silentLogger, signal);

    // Assess
    const paths = ctx.files.paths(INSTANCE);
    expect(await imageOf(paths.overlay)).toBe('v2');
    expect(await imageOf(paths.previous)).toBe('v1');
    expect(hv.count('start')).toBe(starts);
  });

  it('rolls back by hand: the disks swap places, twice returns to the upgraded one', async () => {
    // Prepare
    await JOB_HANDLERS.upgrade(job('upgrade', { image: 'v1', upgrade: 'v2' }), ctx, silentLogger, signal);
    const paths = ctx.files.paths(INSTANCE);

    // Act
    await JOB_HANDLERS.rollback(job('rollback', { image: 'v2', previous: 'v1' }), ctx, silentLogger, signal);

    // Assess
    expect(await imageOf(paths.overlay)).toBe('v1');
    expect(await imageOf(paths.previous)).toBe('v2');
    expect(await ctx.files.readRecord(INSTANCE)).toMatchObject({ image_id: 'v1', previous_image_id: 'v2' });
    expect(hv.domains.get(NAME)?.state).toBe('running');
    expect(await lastConsoleLine()).toBe(`${MARKER} v1`);

    // Act again: back to v2
    await JOB_HANDLERS.rollback(job('rollback', { image: 'v1', previous: 'v2' }), ctx, silentLogger, signal);
    expect(await imageOf(paths.overlay)).toBe('v2');
    expect(await imageOf(paths.previous)).toBe('v1');
  });

  it('a retried rollback finishes a half-done swap', async () => {
    // Prepare: an attempt died after moving overlay.qcow2 aside
    await JOB_HANDLERS.upgrade(job('upgrade', { image: 'v1', upgrade: 'v2' }), ctx, silentLogger, signal);
    const paths = ctx.files.paths(INSTANCE);
    await hv.shutdown(NAME);
    await ctx.files.move(paths.overlay, paths.swap);

    // Act
    await JOB_HANDLERS.rollback(job('rollback', { image: 'v2', previous: 'v1' }), ctx, silentLogger, signal);

    // Assess
    expect(await imageOf(paths.overlay)).toBe('v1');
    expect(await imageOf(paths.previous)).toBe('v2');
    expect(await ctx.files.exists(paths.swap)).toBe(false);
  });

  it('an upgrade whose image cannot be had leaves the instance as it was', async () => {
    // Act
    const attempt = JOB_HANDLERS.upgrade(
      job('upgrade', { image: 'v1', upgrade: 'gone' }),
      ctx,
      silentLogger,
      signal,
    );

    // Assess
    await expect(attempt).rejects.toThrow(/no base gone/);
    const paths = ctx.files.paths(INSTANCE);
    expect(await imageOf(paths.overlay)).toBe('v1');
    expect(await ctx.files.exists(paths.upgrade)).toBe(false);
    expect(await ctx.files.imagesInUse()).toEqual(new Set(['v1']));
    expect(hv.domains.get(NAME)?.state).toBe('running');
    expect(hv.count('shutdown')).toBe(0);
  });

  it('refuses a rollback with no previous disk on the host', async () => {
    // Act
    const attempt = JOB_HANDLERS.rollback(
      job('rollback', { image: 'v1', previous: 'v0' }),
      ctx,
      silentLogger,
      signal,
    );

    // Assess
    await expect(attempt).rejects.toThrow(JobRejectedError);
    expect(await imageOf(ctx.files.paths(INSTANCE).overlay)).toBe('v1');
  });
});
