/** Wires the agent together and runs it: register the host, reconcile, then heartbeat + poll until aborted. */
import { chmod, mkdir, readFile, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AgentConfig, notificationUrl } from './config.ts';
import { resolveDomainType } from './hypervisor/kvm-probe.ts';
import { VirshHypervisor } from './hypervisor/virsh.ts';
import { ImageCache } from './image-cache.ts';
import { InstanceFiles } from './instance-files.ts';
import { JOB_HANDLERS } from './jobs.ts';
import type { Logger } from './log.ts';
import { JobNotifications } from './notifications.ts';
import { Prefetcher } from './prefetch.ts';
import { observe, reconcile } from './reconcile.ts';
import { ServiceClient } from './service-client.ts';
import { Worker } from './worker.ts';

const GiB = 1024 ** 3;

/** Retries `call` with capped exponential backoff until it succeeds or the signal aborts. */
async function untilDone<T>(
  what: string,
  log: Logger,
  signal: AbortSignal,
  call: () => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await call();
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      const waitMs = Math.min(1_000 * 2 ** (attempt - 1), 30_000);
      log.warn(`${what} failed, retrying`, { attempt, wait_ms: waitMs, error });
      await sleep(waitMs, undefined, { signal });
    }
  }
}

/** Under qemu:///system qemu runs as libvirt-qemu, which must be able to traverse every parent of data_dir. */
async function warnIfNotTraversable(dataDir: string, log: Logger): Promise<void> {
  for (let dir = dataDir; ; dir = dirname(dir)) {
    const st = await stat(dir).catch(() => undefined);
    if (st && (st.mode & 0o001) === 0) {
      log.warn(
        'a parent of data_dir is not traversable by others: qemu (libvirt-qemu) will not reach the disks',
        {
          dir,
          mode: (st.mode & 0o777).toString(8),
        },
      );
    }
    if (dirname(dir) === dir) return;
  }
}

/**
 * Without udev, /dev/kvm stays root:root 0600. qemu's capability probe still reports KVM, but libvirt then
 * finds /dev/kvm unusable for libvirt-qemu, calls its cached capabilities outdated and re-probes qemu on
 * every lookup: a `virsh define` took 30-55 s here instead of 40 ms. Debian's udev rule makes it root:kvm 0660.
 */
async function warnIfKvmDeviceUnusable(log: Logger): Promise<void> {
  const st = await stat('/dev/kvm').catch(() => undefined);
  if (!st) return;
  const kvmGid = (await readFile('/etc/group', 'utf8').catch(() => ''))
    .split('\n')
    .map((line) => line.split(':'))
    .find((fields) => fields[0] === 'kvm')?.[2];
  const worldRw = (st.mode & 0o006) === 0o006;
  const groupRw = (st.mode & 0o060) === 0o060 && kvmGid !== undefined && st.gid === Number(kvmGid);
  if (!worldRw && !groupRw) {
    log.warn('/dev/kvm is not accessible to the kvm group: libvirt will re-probe qemu on every call (slow)', {
      mode: (st.mode & 0o777).toString(8),
      gid: st.gid,
      fix: 'chgrp kvm /dev/kvm && chmod 0660 /dev/kvm (what the udev rule does)',
    });
  }
}

export async function runAgent(config: AgentConfig, log: Logger, signal: AbortSignal): Promise<void> {
  const service = new ServiceClient({
    baseUrl: config.service_url,
    hostId: config.host_id,
    token: config.token,
    timeoutMs: config.http_timeout_ms,
  });
  const hypervisor = new VirshHypervisor({ uri: config.libvirt_uri, log });
  await mkdir(config.data_dir, { recursive: true });
  await chmod(config.data_dir, 0o755);
  const files = new InstanceFiles(join(config.data_dir, 'instances'));
  const cache = new ImageCache({
    dir: join(config.data_dir, 'cache'),
    maxBytes: config.cache_max_bytes,
    source: service,
    imagesInUse: () => files.imagesInUse(),
    verify: config.verify_cached_images,
    downloadTimeoutMs: config.download_timeout_ms,
    log,
    signal,
  });
  await files.init();
  await cache.init();
  if (config.libvirt_uri.startsWith('qemu:///system')) {
    await warnIfNotTraversable(config.data_dir, log);
    await warnIfKvmDeviceUnusable(log);
  }

  const domainType = await resolveDomainType(config.domain_type, {
    qemuBinary: config.qemu_binary,
    timeoutMs: config.kvm_probe_timeout_ms,
    log,
    signal,
  });
  const caps = await untilDone('libvirt capabilities', log, signal, () => hypervisor.capabilities(signal));
  const fs = await statfs(config.data_dir);
  const registration = {
    vcpus: config.capacity.vcpus ?? caps.vcpus,
    ram_mb: config.capacity.ram_mb ?? caps.ramMb,
    disk_gb: config.capacity.disk_gb ?? Math.floor((fs.blocks * fs.bsize) / GiB),
    architecture: caps.architecture,
    hypervisor_type: domainType,
    hypervisor_version: caps.libvirtVersion,
  };
  await untilDone('host registration', log, signal, () => service.registerHost(registration, signal));
  log.info('host registered', { ...registration, libvirt_uri: config.libvirt_uri });

  // Reconcile before the first claim, so a retried build never races a clean-up of its own domain.
  await untilDone('reconcile', log, signal, () =>
    reconcile({ service, hypervisor, files, hostId: config.host_id, log, signal }),
  );

  // Beside the job loop, never in it: a pass only logs its failures, and a build that needs an image being
  // prefetched shares that download through the cache.
  const prefetching =
    config.prefetch.length === 0
      ? Promise.resolve()
      : new Prefetcher({
          entries: config.prefetch,
          resolver: service,
          cache,
          log: log.child({ component: 'prefetch' }),
          intervalMs: config.prefetch_interval_ms,
        }).run(signal);

  const heartbeats = (async () => {
    while (!signal.aborted) {
      await sleep(config.heartbeat_interval_ms, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      await service.heartbeatHost(signal).catch((error: unknown) => {
        if (!signal.aborted) log.warn('host heartbeat failed', { error });
      });
    }
  })();

  // A guest that powers itself off (a build's recipe ends so) shows as Shutoff within one interval.
  const observing = (async () => {
    while (!signal.aborted) {
      await sleep(config.observe_interval_ms, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      await observe({ service, hypervisor, log, signal }).catch((error: unknown) => {
        if (!signal.aborted) log.warn('observing domain states failed', { error });
      });
    }
  })();

  // Told when the queue gains a job; polls slowly beside it (and at poll_interval_ms without it).
  const notifications = config.notifications
    ? new JobNotifications({
        url: notificationUrl(config),
        hostId: config.host_id,
        token: config.token,
        fallbackMs: config.fallback_poll_interval_ms,
        disconnectedPollMs: config.poll_interval_ms,
        keepaliveMs: config.notify_keepalive_ms,
        log: log.child({ component: 'notifications' }),
      })
    : undefined;
  const listening = notifications?.run(signal) ?? Promise.resolve();

  const worker = new Worker({
    service,
    handlers: JOB_HANDLERS,
    context: {
      hostId: config.host_id,
      hypervisor,
      cache,
      files,
      domainType,
      network: config.network,
      seedDevice: config.seed_device,
      shutdown: {
        deadlineMs: config.shutdown_timeout_ms,
        retryIntervalMs: config.shutdown_retry_interval_ms,
      },
      bootMarker: config.boot_marker === undefined ? undefined : new RegExp(config.boot_marker),
      bootTimeoutMs: config.boot_timeout_ms,
      consoleTailBytes: 16 * 1024,
      uploader: service,
    },
    log,
    leaseSeconds: config.lease_seconds,
    pollIntervalMs: config.poll_interval_ms,
    ...(notifications ? { pacer: notifications } : {}),
    maxConcurrent: config.max_concurrent_jobs,
  });
  log.info('agent ready', { domain_type: domainType, data_dir: config.data_dir });
  await worker.run(signal);
  await heartbeats;
  await observing;
  await listening;
  await prefetching;
  log.info('agent stopped');
}
