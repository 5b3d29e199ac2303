/**
 * One handler per job kind. Every handler is idempotent: a job can be retried (a new attempt after a lost
 * lease or a killed agent) and must converge on the same single domain, never a second one.
 */
import { copyFile, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AgentError,
  BootTimeoutError,
  describeError,
  JobRejectedError,
  LibvirtError,
  UpgradeRolledBackError,
} from './errors.ts';
import { run } from './exec.ts';
import { type DomainType, domainNameFor, domainUuidFor } from './hypervisor/domain-xml.ts';
import type { DomainInfo, Hypervisor, ShutdownOptions } from './hypervisor/hypervisor.ts';
import type { ImageCache } from './image-cache.ts';
import type { InstanceFiles } from './instance-files.ts';
import type { Logger } from './log.ts';
import type { ImageUploader, Job, JobResult } from './service-client.ts';

export interface JobContext {
  hostId: string;
  hypervisor: Hypervisor;
  cache: ImageCache;
  files: InstanceFiles;
  domainType: DomainType;
  network: 'user' | 'none';
  seedDevice: 'disk' | 'cdrom';
  shutdown: ShutdownOptions;
  /** When set, a (re)boot completes only once the console prints a match (fresh output only). */
  bootMarker?: RegExp;
  bootTimeoutMs: number;
  /** How much of the console log goes back to the service with a result. */
  consoleTailBytes: number;
  /** Snapshot uploads (absent: snapshot jobs are rejected). */
  uploader?: ImageUploader;
  /** qemu-img convert's bound (default 30 min). */
  convertTimeoutMs?: number;
}

export type JobHandler = (job: Job, ctx: JobContext, log: Logger, signal: AbortSignal) => Promise<JobResult>;

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Polls the console log past `fromOffset` for the boot marker; fails if the domain stops or time runs out. */
async function waitForBoot(
  ctx: JobContext,
  job: Job,
  fromOffset: number,
  signal: AbortSignal,
): Promise<void> {
  // The instance's check is literal text, never a pattern: it comes from the service's users.
  const check = job.instance.boot_check;
  const marker = check ? new RegExp(escapeRegExp(check.marker)) : ctx.bootMarker;
  if (!marker) return;
  const timeoutMs = check ? check.timeout_seconds * 1000 : ctx.bootTimeoutMs;
  const name = domainNameFor(job.instance.id);
  const deadline = Date.now() + timeoutMs;
  for (let poll = 0; ; poll += 1) {
    // The log is appended across boots: only bytes written since this start count.
    if (marker.test(await ctx.files.consoleSince(job.instance.id, fromOffset))) return;
    if (poll % 10 === 9) {
      const state = (await ctx.hypervisor.info(name, signal))?.state;
      if (state !== 'running')
        throw new BootTimeoutError(`domain ${name} is ${state ?? 'gone'} before the boot marker appeared`);
    }
    if (Date.now() > deadline) {
      throw new BootTimeoutError(`domain ${name}: no ${marker} on the console within ${timeoutMs} ms`);
    }
    await sleep(200, undefined, { signal });
  }
}

async function result(ctx: JobContext, job: Job): Promise<JobResult> {
  return {
    domain_uuid: domainUuidFor(job.instance.id),
    console_log: await ctx.files.consoleTail(job.instance.id, ctx.consoleTailBytes),
  };
}

async function requireDomain(ctx: JobContext, job: Job, signal: AbortSignal): Promise<DomainInfo> {
  const name = domainNameFor(job.instance.id);
  const info = await ctx.hypervisor.info(name, signal);
  if (info === null) throw new LibvirtError(`domain ${name} does not exist on this host`, 'not_found', name);
  return info;
}

const build: JobHandler = async (job, ctx, log, signal) => {
  const instance = job.instance;
  const image = instance.image;
  if (!image) throw new JobRejectedError('build job without an image');
  const name = domainNameFor(instance.id);
  const uuid = domainUuidFor(instance.id);
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  const lap = (phase: string) => {
    timings[`${phase}_ms`] = Math.round(performance.now() - t0);
  };
  const previous = await ctx.files.readRecord(instance.id);

  // instance.json first: from then on the image cache sees this instance as a user of the image.
  const prepared = ctx.files.prepare({
    instance_id: instance.id,
    image_id: image.id,
    domain_name: name,
    domain_uuid: uuid,
    created_at: previous?.created_at ?? new Date().toISOString(),
  });
  // The libvirt lookup, the cache check and the seed do not depend on each other: run them side by side.
  // (Settled into values so a failure is raised below, in order, never as an unhandled rejection.)
  const settle = <T>(promise: Promise<T>) =>
    promise.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
  const cached = settle(prepared.then(() => ctx.cache.ensure(image, signal)));
  const seeded = settle(
    prepared.then(() =>
      ctx.files.createSeed(
        instance.id,
        { hostname: instance.hostname, userData: instance.user_data },
        signal,
      ),
    ),
  );
  const existing = await ctx.hypervisor.info(name, signal);
  const paths = await prepared;

  if (existing && (existing.state === 'running' || existing.state === 'shutting_down')) {
    // An earlier attempt got as far as starting it: reuse, never a second domain.
    await Promise.all([cached, seeded]);
    log.info('domain already running from an earlier attempt; reusing it', { domain: name });
    await waitForBoot(ctx, job, 0, signal);
    return result(ctx, job);
  }

  const outcome = await cached;
  if ('error' in outcome) throw outcome.error;
  lap('cached');
  // Without a domain no guest has written to an old overlay (a half-made one may be left by a killed
  // attempt): make it afresh. With a defined domain the overlay may hold the guest's writes: keep it.
  if (!existing || !(await ctx.files.exists(paths.overlay))) {
    await ctx.files.createOverlay(instance.id, outcome.value, instance.disk_gb, signal);
  }
  const seed = await seeded;
  if ('error' in seed) throw seed.error;
  lap('files');
  // Same name + same UUID: defining again updates the one domain.
  await ctx.hypervisor.define(
    {
      name,
      uuid,
      title: instance.name,
      type: ctx.domainType,
      vcpus: instance.vcpus,
      memoryMib: instance.ram_mb,
      disk: { path: paths.overlay },
      seed: { path: paths.seed, device: ctx.seedDevice },
      consoleLogPath: paths.consoleLog,
      network: ctx.network,
      metadata: { instanceId: instance.id, hostId: ctx.hostId },
    },
    signal,
  );
  lap('defined');
  const offset = await ctx.files.consoleSize(instance.id);
  // Defining changes no run state: what we saw before is still true (a new domain is shut off).
  const known = existing ?? { name, state: 'shutoff' as const, managedSave: false };
  const started = await ctx.hypervisor.start(name, signal, known);
  lap('started');
  // Cumulative milliseconds since the handler began, per phase.
  log.info('domain started', {
    domain: name,
    outcome: started,
    reused_domain: existing !== null,
    ...timings,
  });
  await waitForBoot(ctx, job, offset, signal);
  return result(ctx, job);
};

const start: JobHandler = async (job, ctx, log, signal) => {
  const info = await requireDomain(ctx, job, signal);
  const offset = await ctx.files.consoleSize(job.instance.id);
  const outcome = await ctx.hypervisor.start(info.name, signal);
  log.info('domain start', { domain: info.name, outcome });
  // A restore carries on where the guest was: it prints no boot marker.
  if (outcome === 'started') await waitForBoot(ctx, job, offset, signal);
  return result(ctx, job);
};

const stop: JobHandler = async (job, ctx, log, signal) => {
  const info = await requireDomain(ctx, job, signal);
  if (info.state === 'saved') {
    // Stopping a sleeping instance drops its saved state: the next start is a cold boot.
    await ctx.hypervisor.managedSaveRemove(info.name, signal);
    log.info('managed save discarded', { domain: info.name });
    return result(ctx, job);
  }
  const outcome = await ctx.hypervisor.shutdown(info.name, ctx.shutdown, signal);
  log.info('domain stopped', { domain: info.name, outcome });
  return result(ctx, job);
};

const sleepJob: JobHandler = async (job, ctx, log, signal) => {
  const info = await requireDomain(ctx, job, signal);
  if (info.state === 'shutoff' || info.state === 'crashed') {
    throw new JobRejectedError(`instance ${job.instance.id} is shut off: there is no running state to save`);
  }
  const outcome = await ctx.hypervisor.managedSave(info.name, signal);
  log.info('domain saved', { domain: info.name, outcome });
  return result(ctx, job);
};

const wake: JobHandler = async (job, ctx, log, signal) => {
  const info = await requireDomain(ctx, job, signal);
  if (info.state === 'shutoff' || info.state === 'crashed') {
    throw new JobRejectedError(`instance ${job.instance.id} has no saved state to wake from (use start)`);
  }
  const outcome = await ctx.hypervisor.start(info.name, signal);
  log.info('domain woken', { domain: info.name, outcome });
  return result(ctx, job);
};

const reboot: JobHandler = async (job, ctx, log, signal) => {
  const info = await requireDomain(ctx, job, signal);
  if (info.state !== 'running' && info.state !== 'paused' && info.state !== 'shutting_down') {
    throw new JobRejectedError(`instance ${job.instance.id} is not running (${info.state})`);
  }
  await ctx.hypervisor.shutdown(info.name, ctx.shutdown, signal);
  const offset = await ctx.files.consoleSize(job.instance.id);
  await ctx.hypervisor.start(info.name, signal);
  log.info('domain rebooted', { domain: info.name });
  await waitForBoot(ctx, job, offset, signal);
  return result(ctx, job);
};

const destroy: JobHandler = async (job, ctx, log, signal) => {
  const name = domainNameFor(job.instance.id);
  const console_log = await ctx.files.consoleTail(job.instance.id, ctx.consoleTailBytes);
  const destroyed = await ctx.hypervisor.destroy(name, signal);
  const undefined_ = await ctx.hypervisor.undefine(name, signal);
  await ctx.files.remove(job.instance.id);
  log.info('instance destroyed', { domain: name, destroy: destroyed, undefine: undefined_ });
  // The image may now be unused: trim the cache back under its cap.
  await ctx.cache.evict(0);
  return { console_log };
};

const RUNNING_STATES: ReadonlySet<DomainInfo['state']> = new Set(['running', 'paused', 'shutting_down']);

/** Starts the domain unless it runs already (a retried job may find it started). */
async function ensureRunning(ctx: JobContext, name: string, signal: AbortSignal): Promise<void> {
  const info = await ctx.hypervisor.info(name, signal);
  if (info && !RUNNING_STATES.has(info.state)) await ctx.hypervisor.start(name, signal, info);
}

/**
 * A new disk (overlay on the new image's base) for the instance, same domain, seed and identity:
 *   upgrade.qcow2 made on the new base -> domain shut off (libvirt must not hold the disk while
 *   it changes under the same path) -> overlay.qcow2 moved to rollback.qcow2, upgrade.qcow2 to
 *   overlay.qcow2 -> booted, its boot check awaited -> rollback.qcow2 becomes previous.qcow2 (the
 *   older previous disk goes: one is kept).
 * A boot that fails the check puts rollback.qcow2 back as overlay.qcow2 (the failed disk goes),
 * starts the instance again if it was running, and fails the job saying so. A retried attempt
 * finishes what an earlier one did (instance.json says which image the disk holds).
 */
const upgrade: JobHandler = async (job, ctx, log, signal) => {
  const instance = job.instance;
  const target = instance.upgrade_image;
  if (!target) throw new JobRejectedError('upgrade job without an upgrade_image');
  const name = domainNameFor(instance.id);
  const paths = ctx.files.paths(instance.id);
  const record = await ctx.files.readRecord(instance.id);
  if (!record) throw new JobRejectedError(`instance ${instance.id} has no disk on this host to upgrade`);
  if (record.image_id === target.id) {
    // An earlier attempt passed the boot check and recorded it; only keeping the old disk may be left.
    if (await ctx.files.exists(paths.rollback)) await ctx.files.move(paths.rollback, paths.previous);
    await ensureRunning(ctx, name, signal);
    return result(ctx, job);
  }
  const info = await requireDomain(ctx, job, signal);
  const wasRunning = RUNNING_STATES.has(info.state);
  if (info.state === 'saved') await ctx.hypervisor.managedSaveRemove(name, signal);
  if (await ctx.files.exists(paths.rollback)) {
    // An earlier attempt swapped and never confirmed the boot: the instance's own disk goes back first.
    await ctx.hypervisor.destroy(name, signal);
    await ctx.files.move(paths.rollback, paths.overlay);
  }
  await ctx.files.writeRecord({ ...record, upgrade_image_id: target.id });
  try {
    const base = await ctx.cache.ensure(target, signal);
    await ctx.files.createOverlay(instance.id, base, instance.disk_gb, signal, paths.upgrade);
  } catch (error) {
    // Nothing was swapped: the instance is as it was, and the new image no longer in use here.
    if (!signal.aborted) {
      await ctx.files.removeFile(paths.upgrade);
      await ctx.files.writeRecord(record);
    }
    throw error;
  }
  await ctx.hypervisor.shutdown(name, ctx.shutdown, signal);
  await ctx.files.move(paths.overlay, paths.rollback);
  await ctx.files.move(paths.upgrade, paths.overlay);
  const offset = await ctx.files.consoleSize(instance.id);
  await ctx.hypervisor.start(name, signal);
  try {
    await waitForBoot(ctx, job, offset, signal);
  } catch (error) {
    if (signal.aborted) throw error;
    // The failed disk is thrown away: no need to wait for its guest to power off.
    await ctx.hypervisor.destroy(name, signal);
    await ctx.files.move(paths.rollback, paths.overlay);
    const { upgrade_image_id: _dropped, ...kept } = record;
    await ctx.files.writeRecord(kept);
    if (wasRunning) await ctx.hypervisor.start(name, signal);
    log.warn('upgraded boot failed its check; rolled back to the previous disk', {
      domain: name,
      image_id: target.id,
      error,
    });
    throw new UpgradeRolledBackError(
      `the boot on image ${target.id} failed its boot check (${describeError(error)}); ` +
        `rolled back to the previous disk (image ${record.image_id})`,
    );
  }
  const { upgrade_image_id: _done, ...rest } = record;
  await ctx.files.writeRecord({ ...rest, image_id: target.id, previous_image_id: record.image_id });
  await ctx.files.move(paths.rollback, paths.previous);
  log.info('instance upgraded', { domain: name, image_id: target.id, previous_image_id: record.image_id });
  // The previous upgrade's base may be unused now: trim the cache back under its cap.
  await ctx.cache.evict(0);
  return result(ctx, job);
};

/**
 * Back to the previous disk by hand: domain shut off, overlay.qcow2 and previous.qcow2 swap places
 * (through swap.qcow2; a retry finishes a half-done swap), booted. The disk left behind becomes
 * the previous one, so a second rollback returns to it. No boot check is awaited: the disk booted
 * before.
 */
const rollback: JobHandler = async (job, ctx, log, signal) => {
  const instance = job.instance;
  const back = instance.previous_image;
  if (!back) throw new JobRejectedError('rollback job without a previous_image');
  const name = domainNameFor(instance.id);
  const paths = ctx.files.paths(instance.id);
  const record = await ctx.files.readRecord(instance.id);
  if (!record) throw new JobRejectedError(`instance ${instance.id} has no disk on this host`);
  const swapping = await ctx.files.exists(paths.swap);
  if (record.image_id === back.id && !swapping) {
    await ensureRunning(ctx, name, signal);
    return result(ctx, job);
  }
  if (!swapping && !(await ctx.files.exists(paths.previous)))
    throw new JobRejectedError(`instance ${instance.id} has no previous disk on this host`);
  const info = await requireDomain(ctx, job, signal);
  if (info.state === 'saved') await ctx.hypervisor.managedSaveRemove(name, signal);
  await ctx.hypervisor.shutdown(name, ctx.shutdown, signal);
  if (!swapping) await ctx.files.move(paths.overlay, paths.swap);
  if (!(await ctx.files.exists(paths.overlay))) await ctx.files.move(paths.previous, paths.overlay);
  if (record.image_id !== back.id)
    await ctx.files.writeRecord({ ...record, image_id: back.id, previous_image_id: record.image_id });
  await ctx.files.move(paths.swap, paths.previous);
  await ctx.hypervisor.start(name, signal);
  log.info('instance rolled back', { domain: name, image_id: back.id, previous_image_id: record.image_id });
  return result(ctx, job);
};

/**
 * A standalone qcow2 of the instance's disk, uploaded to the job's image with the job's grant.
 * Shut off or asleep, nothing writes the overlay: it is read in place. Running, the guest is paused
 * only while its overlay (the guest's own writes, not the base) is copied; qemu drains and flushes
 * the disk when it stops the vCPUs, so the copy is what a power cut at that moment would leave
 * (crash-consistent). The conversion through the backing chain then runs with the guest going.
 */
const snapshot: JobHandler = async (job, ctx, log, signal) => {
  const spec = job.snapshot;
  if (!spec) throw new JobRejectedError('snapshot job without its image and upload grant');
  if (!ctx.uploader) throw new JobRejectedError('this agent has no uploader for snapshots');
  // A retried job finds its image no longer queued once an earlier attempt uploaded (or began to):
  // that upload's bytes cannot be checked any more, so the job fails and the service discards it.
  const target = await ctx.uploader.getImage(spec.image_id, signal);
  if (target?.status !== 'queued')
    throw new AgentError(`snapshot image ${spec.image_id} is ${target?.status ?? 'gone'}, not queued`);
  const info = await requireDomain(ctx, job, signal);
  const paths = ctx.files.paths(job.instance.id);
  const work = join(paths.dir, `snapshot-${job.id}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    let source = paths.overlay;
    let pausedMs: number | null = null;
    if (info.state === 'running' || info.state === 'paused') {
      const copy = join(work, 'overlay.qcow2');
      const wasPaused = info.state === 'paused';
      const t0 = performance.now();
      if (!wasPaused) await ctx.hypervisor.suspend(info.name, signal);
      try {
        await copyFile(paths.overlay, copy);
      } finally {
        // Never left paused: not even an aborted job may skip the resume.
        if (!wasPaused) await ctx.hypervisor.resume(info.name);
      }
      pausedMs = Math.round(performance.now() - t0);
      source = copy;
      log.info('guest paused for the snapshot copy', { domain: info.name, paused_ms: pausedMs });
    } else if (info.state !== 'shutoff' && info.state !== 'saved' && info.state !== 'crashed') {
      throw new JobRejectedError(`instance ${job.instance.id} is ${info.state}: no consistent disk to read`);
    }
    const out = join(work, 'snapshot.qcow2');
    const t1 = performance.now();
    // -U: a running qemu holds a shared lock on the base; the read here needs no write lock.
    await run('qemu-img', ['convert', '-U', '-O', 'qcow2', source, out], {
      timeoutMs: ctx.convertTimeoutMs ?? 30 * 60_000,
      signal,
    });
    const convertMs = Math.round(performance.now() - t1);
    const t2 = performance.now();
    // The service says which path: its own streaming PUT, or presigned multipart where bodies cannot pass it.
    const sent =
      spec.upload === 'multipart'
        ? await ctx.uploader.uploadImageMultipart(spec.image_id, spec.upload_grant, out, signal)
        : await ctx.uploader.uploadImageFile(spec.image_id, spec.upload_grant, out, signal);
    const uploadMs = Math.round(performance.now() - t2);
    // The service hashed the same bytes on the way in: both must agree before the job is done.
    const stored = await ctx.uploader.getImage(spec.image_id, signal);
    if (stored?.status !== 'active')
      throw new AgentError(`snapshot image ${spec.image_id} is ${stored?.status ?? 'gone'} after the upload`);
    if (stored.os_hash_value !== sent.sha512 || stored.checksum !== sent.md5)
      throw new AgentError(
        `snapshot digests differ: sent md5 ${sent.md5} sha512 ${sent.sha512}, the service stored md5 ${stored.checksum} sha512 ${stored.os_hash_value}`,
      );
    log.info('snapshot uploaded', {
      image_id: spec.image_id,
      upload: spec.upload,
      size: sent.size,
      source_state: info.state,
      paused_ms: pausedMs,
      convert_ms: convertMs,
      upload_ms: uploadMs,
      file_bytes: (await stat(out)).size,
    });
    return {
      ...(await result(ctx, job)),
      snapshot: { size: sent.size, checksum: sent.md5, os_hash_value: sent.sha512, paused_ms: pausedMs },
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
};

export const JOB_HANDLERS: Record<Job['kind'], JobHandler> = {
  snapshot,
  build,
  start,
  stop,
  sleep: sleepJob,
  wake,
  reboot,
  destroy,
  upgrade,
  rollback,
};
