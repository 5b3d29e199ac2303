/**
 * Job handlers against an in-memory hypervisor, real instance files (qemu-img, genisoimage) and a stub image
 * cache: above all, a retried build converges on one domain.
 */
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BootTimeoutError, JobRejectedError, LibvirtError } from '../../../agent/src/errors.ts';
import { run } from '../../../agent/src/exec.ts';
import type { CachedImage } from '../../../agent/src/image-cache.ts';
import { JOB_HANDLERS, type JobContext } from '../../../agent/src/jobs.ts';
import { silentLogger } from '../../../agent/src/log.ts';
import type { Job } from '../../../agent/src/service-client.ts';
import { jobContext, jobFor, stubCache, testInstance } from '../../helpers/agent-jobs.ts';
import { MemoryHypervisor } from '../../helpers/agent-memory-hypervisor.ts';

const INSTANCE = '6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d';
const NAME = `hangar-${INSTANCE}`;

const job = (kind: Job['kind']): Job => jobFor(kind, testInstance(INSTANCE, 'web-1'));

describe('job handlers', { timeout: 30_000 }, () => {
  let dir: string;
  let hv: MemoryHypervisor;
  let ctx: JobContext;
  let ensured: number;
  const signal = new AbortController().signal;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-jobs-'));
    const basePath = join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', basePath, String(64 * 1024 * 1024)]);
    const base: CachedImage = {
      id: 'img-1',
      path: basePath,
      format: 'qcow2',
      size: 0,
      virtualSize: 64 << 20,
      sha512: '',
    };
    ensured = 0;
    const cache = stubCache(async () => {
      ensured += 1;
      return base;
    });
    hv = new MemoryHypervisor();
    ctx = await jobContext(dir, hv, cache);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The instance's directory and record, as a build makes them before anything else. */
  const prepared = () =>
    ctx.files.prepare({
      instance_id: INSTANCE,
      image_id: 'img-1',
      domain_name: NAME,
      domain_uuid: INSTANCE,
      created_at: '',
    });

  it('builds: overlay, seed, one domain with the instance UUID and this host in its metadata, started', async () => {
    // Act
    const result = await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);

    // Assess
    expect(result.domain_uuid).toBe(INSTANCE);
    const domain = hv.domains.get(NAME);
    expect(domain?.state).toBe('running');
    expect(domain?.spec).toMatchObject({ uuid: INSTANCE, type: 'qemu', vcpus: 1, memoryMib: 256 });
    expect(domain?.owner).toEqual({ instanceId: INSTANCE, hostId: 'host-a' });
    const paths = ctx.files.paths(INSTANCE);
    await expect(stat(paths.overlay)).resolves.toBeDefined();
    await expect(stat(paths.seed)).resolves.toBeDefined();
  });

  it('a retried build after a crash between define and start keeps the overlay and starts the one domain', async () => {
    // Prepare: the first attempt got as far as define, and the guest's disk has data
    await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);
    await hv.shutdown(NAME);
    const overlay = ctx.files.paths(INSTANCE).overlay;
    const before = (await stat(overlay)).mtimeMs;

    // Act
    await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);

    // Assess
    expect(hv.domains.size).toBe(1);
    expect(hv.domains.get(NAME)?.state).toBe('running');
    expect((await stat(overlay)).mtimeMs).toBe(before);
    expect(hv.count('define')).toBe(2);
  });

  it('a retried build of a domain that is already running defines and starts nothing', async () => {
    // Prepare
    await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);
    hv.calls.length = 0;

    // Act
    const result = await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);

    // Assess
    expect(result.domain_uuid).toBe(INSTANCE);
    expect(hv.count('define')).toBe(0);
    expect(hv.count('start')).toBe(0);
    expect(hv.domains.size).toBe(1);
  });

  it('a build without a domain replaces a half-made overlay left by a killed attempt', async () => {
    // Prepare
    const paths = await prepared();
    await writeFile(paths.overlay, 'garbage');

    // Act
    await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);

    // Assess
    const info = JSON.parse(
      (await run('qemu-img', ['info', '-U', '--output=json', paths.overlay])).stdout,
    ) as {
      format: string;
    };
    expect(info.format).toBe('qcow2');
  });

  it('waits for the boot marker in output written after the start, and times out without it', async () => {
    // Prepare: an old boot's marker is already in the log
    const paths = await prepared();
    await writeFile(paths.consoleLog, 'READY from the previous boot\n');

    // Act
    const error = await JOB_HANDLERS.build(
      job('build'),
      { ...ctx, bootMarker: /READY/ },
      silentLogger,
      signal,
    ).catch((e: unknown) => e);

    // Assess
    expect(error).toBeInstanceOf(BootTimeoutError);
  });

  it("uses the instance's own boot check (literal text, its own timeout) over the agent's marker", async () => {
    // Prepare: the agent has no marker of its own; the log holds text a pattern 'R.ADY' would match
    const paths = await prepared();
    await writeFile(paths.consoleLog, '');
    const gated = job('build');
    gated.instance.boot_check = { marker: 'R.ADY', timeout_seconds: 2 };
    const appending = setInterval(() => void appendFile(paths.consoleLog, 'READY\n'), 50);

    // Act
    const error = await JOB_HANDLERS.build(gated, { ...ctx, bootMarker: undefined }, silentLogger, signal)
      .catch((e: unknown) => e)
      .finally(() => clearInterval(appending));

    // Assess: 'READY' does not count as the literal 'R.ADY', and the check's own 2 s limit applied
    expect(error).toBeInstanceOf(BootTimeoutError);
    expect(String((error as Error).message)).toContain('2000 ms');
  });

  it('sleep saves, wake restores, stop of a sleeping instance drops the save', async () => {
    // Prepare
    await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);

    // Act + Assess
    await JOB_HANDLERS.sleep(job('sleep'), ctx, silentLogger, signal);
    expect(hv.domains.get(NAME)).toMatchObject({ state: 'saved', managedSave: true });
    await JOB_HANDLERS.wake(job('wake'), ctx, silentLogger, signal);
    expect(hv.domains.get(NAME)?.state).toBe('running');
    await JOB_HANDLERS.sleep(job('sleep'), ctx, silentLogger, signal);
    await JOB_HANDLERS.stop(job('stop'), ctx, silentLogger, signal);
    expect(hv.domains.get(NAME)).toMatchObject({ state: 'shutoff', managedSave: false });
    expect(hv.count('managedsave-remove')).toBe(1);
  });

  it('rejects sleeping or waking a shut-off instance and rebooting a stopped one', async () => {
    // Prepare
    await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);
    await JOB_HANDLERS.stop(job('stop'), ctx, silentLogger, signal);

    // Act + Assess
    await expect(JOB_HANDLERS.sleep(job('sleep'), ctx, silentLogger, signal)).rejects.toBeInstanceOf(
      JobRejectedError,
    );
    await expect(JOB_HANDLERS.wake(job('wake'), ctx, silentLogger, signal)).rejects.toBeInstanceOf(
      JobRejectedError,
    );
    await expect(JOB_HANDLERS.reboot(job('reboot'), ctx, silentLogger, signal)).rejects.toBeInstanceOf(
      JobRejectedError,
    );
  });

  it('fails start/stop on an instance with no domain', async () => {
    await expect(JOB_HANDLERS.start(job('start'), ctx, silentLogger, signal)).rejects.toBeInstanceOf(
      LibvirtError,
    );
    await expect(JOB_HANDLERS.stop(job('stop'), ctx, silentLogger, signal)).rejects.toBeInstanceOf(
      LibvirtError,
    );
  });

  it('destroy removes the domain and the instance dir, and is idempotent', async () => {
    // Prepare
    await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);
    await writeFile(ctx.files.paths(INSTANCE).consoleLog, 'last words\n');

    // Act
    const result = await JOB_HANDLERS.destroy(job('destroy'), ctx, silentLogger, signal);
    const again = await JOB_HANDLERS.destroy(job('destroy'), ctx, silentLogger, signal);

    // Assess
    expect(result.console_log).toBe('last words\n');
    expect(again).toEqual({ console_log: '' });
    expect(hv.domains.size).toBe(0);
    await expect(readFile(ctx.files.paths(INSTANCE).record)).rejects.toThrow();
    expect(ensured).toBe(1);
  });
});
