/**
 * The real host agent without libvirt: its service client, image cache (downloading from the
 * backend), instance files (qemu-img, genisoimage), job handlers and worker, over the in-memory
 * hypervisor whose guests print the first line of their image (agent-memory-hypervisor.ts
 * bootFromDisk). Integration tests drive it through the real jobs API.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageCache } from '../../agent/src/image-cache.ts';
import { InstanceFiles } from '../../agent/src/instance-files.ts';
import { JOB_HANDLERS } from '../../agent/src/jobs.ts';
import { silentLogger } from '../../agent/src/log.ts';
import { observe } from '../../agent/src/reconcile.ts';
import { type HostRegistration, ServiceClient } from '../../agent/src/service-client.ts';
import { Worker } from '../../agent/src/worker.ts';
import { TEST_JOB_SETTINGS } from './agent-jobs.ts';
import { bootFromDisk, MemoryHypervisor, recipePowersOff } from './agent-memory-hypervisor.ts';

export interface MemoryAgent {
  readonly hypervisor: MemoryHypervisor;
  readonly files: InstanceFiles;
  stop(): Promise<void>;
}

export async function startMemoryAgent(options: {
  serviceUrl: string;
  hostId: string;
  token: string;
  registration: HostRegistration;
}): Promise<MemoryAgent> {
  const controller = new AbortController();
  const { signal } = controller;
  const dir = await mkdtemp(join(tmpdir(), 'hangar-memory-agent-'));
  const service = new ServiceClient({
    baseUrl: options.serviceUrl,
    hostId: options.hostId,
    token: options.token,
    timeoutMs: 10_000,
  });
  const files = new InstanceFiles(join(dir, 'instances'));
  await files.init();
  const cache = new ImageCache({
    dir: join(dir, 'cache'),
    maxBytes: 1024 ** 3,
    source: service,
    imagesInUse: () => files.imagesInUse(),
    log: silentLogger,
    signal,
  });
  await cache.init();
  const hypervisor = new MemoryHypervisor({ guest: bootFromDisk, powersOff: recipePowersOff });
  await service.registerHost(options.registration, signal);
  const worker = new Worker({
    service,
    handlers: JOB_HANDLERS,
    context: {
      hostId: options.hostId,
      hypervisor,
      cache,
      files,
      ...TEST_JOB_SETTINGS,
      bootTimeoutMs: 10_000,
      consoleTailBytes: 16 * 1024,
      // Snapshots upload through the agent's own service client, as agent/src/agent.ts wires it.
      uploader: service,
    },
    log: silentLogger,
    leaseSeconds: 60,
    pollIntervalMs: 100,
    maxConcurrent: 2,
    shutdownGraceMs: 2_000,
  });
  const running = worker.run(signal);
  // As agent/src/agent.ts does: a guest that powered itself off (a recipe) is reported.
  const observing = (async () => {
    while (!signal.aborted) {
      await sleep(200, undefined, { signal }).catch(() => undefined);
      if (!signal.aborted)
        await observe({ service, hypervisor, log: silentLogger, signal }).catch(() => undefined);
    }
  })();
  return {
    hypervisor,
    files,
    async stop() {
      controller.abort();
      await running;
      await observing;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
