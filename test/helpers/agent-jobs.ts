/**
 * What the agent's job-handler unit tests share: a job for one instance (a fresh lease, first
 * attempt), a stub image cache, and the handler context over a hypervisor and real instance files.
 */
import { join } from 'node:path';
import type { CachedImage, ImageCache } from '../../agent/src/image-cache.ts';
import { InstanceFiles } from '../../agent/src/instance-files.ts';
import type { JobContext } from '../../agent/src/jobs.ts';
import type { Job } from '../../agent/src/service-client.ts';
import type { MemoryHypervisor } from './agent-memory-hypervisor.ts';

export function jobFor(kind: Job['kind'], instance: Job['instance'], extra: Partial<Job> = {}): Job {
  return {
    id: `job-${kind}`,
    kind,
    lease_token: 'lease',
    lease_expires_at: new Date(Date.now() + 60_000).toISOString(),
    attempt: 1,
    instance,
    ...extra,
  };
}

/** An instance of one vCPU, 256 MiB and 1 GB on image img-1 (a qcow2), as a job carries it. */
export function testInstance(
  id: string,
  name: string,
  extra: Partial<Job['instance']> = {},
): Job['instance'] {
  return {
    id,
    name,
    hostname: name,
    vcpus: 1,
    ram_mb: 256,
    disk_gb: 1,
    user_data: null,
    image: {
      id: 'img-1',
      disk_format: 'qcow2',
      size: 1,
      os_hash_algo: 'sha512',
      os_hash_value: 'a'.repeat(128),
    },
    ...extra,
  };
}

/** A cache that has what `ensure` answers and never evicts. */
export function stubCache(ensure: (image: { id: string }) => Promise<CachedImage>): ImageCache {
  return { ensure, evict: async () => [] } as unknown as ImageCache;
}

/** What every test's handlers run with: plain qemu, no network, a seed disk, a short shutdown. */
export const TEST_JOB_SETTINGS = {
  domainType: 'qemu',
  network: 'none',
  seedDevice: 'disk',
  shutdown: { deadlineMs: 1_000, retryIntervalMs: 100 },
} as const satisfies Partial<JobContext>;

/** The handlers' context: instance files under `dir`, short boot and shutdown bounds. */
export async function jobContext(
  dir: string,
  hypervisor: MemoryHypervisor,
  cache: ImageCache,
  overrides: Partial<JobContext> = {},
): Promise<JobContext> {
  const files = new InstanceFiles(join(dir, 'instances'));
  await files.init();
  return {
    hostId: 'host-a',
    hypervisor,
    cache,
    files,
    ...TEST_JOB_SETTINGS,
    bootTimeoutMs: 1_000,
    consoleTailBytes: 1_000,
    ...overrides,
  };
}
