/**
 * Placement: what the image demands of the request and of the host, and which registered host
 * takes the instance (or why none can).
 */
import type { ImageRecord } from '../images/image.ts';
import { BadRequestError, ConflictError } from '../kernel/errors.ts';
import { type HostRecord, INSTANCE_DISK_FORMATS, type InstanceRecord } from './records.ts';
import type { CreateInstanceRequest } from './requests.ts';
import { parseVersionPredicate, satisfiesVersion, type VersionClause, versionString } from './versions.ts';

export interface ImageRequirements {
  architecture: string | null;
  hypervisorType: string | null;
  /** The parsed hypervisor_version_requires predicate, and its text for messages. */
  hypervisorVersion: { text: string; clauses: VersionClause[] } | null;
}

/** Glance's and Nova's spellings of the same property (the legacy name first). */
function property(image: ImageRecord, ...keys: string[]): string | null {
  for (const key of keys) {
    const value = image.properties[key]?.trim();
    if (value) return value;
  }
  return null;
}

const ARCH_ALIASES: Record<string, string> = {
  amd64: 'x86_64',
  x64: 'x86_64',
  x86: 'i686',
  i386: 'i686',
  i486: 'i686',
  i586: 'i686',
  arm64: 'aarch64',
  ppc64el: 'ppc64le',
};

/** Nova's Architecture.canonicalize, for the names that matter here. */
export function canonicalArchitecture(arch: string): string {
  const lower = arch.trim().toLowerCase();
  return ARCH_ALIASES[lower] ?? lower;
}

/**
 * Checks the image against the request (400/409) and returns what it asks of a host.
 * min_ram is in MB and min_disk in GB, as in Glance.
 */
export function imageRequirements(
  image: ImageRecord,
  request: Pick<CreateInstanceRequest, 'ram_mb' | 'disk_gb'>,
) {
  if (image.status !== 'active')
    throw new ConflictError(`Image ${image.id} is ${image.status}; only active images can boot an instance.`);
  if (image.os_hash_algo !== 'sha512' || !image.os_hash_value)
    throw new ConflictError(`Image ${image.id} has no sha512 hash to verify its data with.`);
  if (!image.disk_format || !(INSTANCE_DISK_FORMATS as readonly string[]).includes(image.disk_format))
    throw new BadRequestError(
      `Image ${image.id} has disk_format ${image.disk_format ?? 'none'}, which cannot back an instance disk ` +
        `(one of ${INSTANCE_DISK_FORMATS.join(', ')} can).`,
    );
  if (image.min_ram > request.ram_mb)
    throw new BadRequestError(
      `Image ${image.id} needs at least ${image.min_ram} MB of RAM (min_ram); ${request.ram_mb} MB were asked for.`,
    );
  if (image.min_disk > request.disk_gb)
    throw new BadRequestError(
      `Image ${image.id} needs a disk of at least ${image.min_disk} GB (min_disk); ${request.disk_gb} GB were asked for.`,
    );
  const architecture = property(image, 'architecture', 'hw_architecture');
  const hypervisorType = property(image, 'hypervisor_type', 'img_hv_type');
  const versionText = property(image, 'hypervisor_version_requires', 'img_hv_requested_version');
  let hypervisorVersion: ImageRequirements['hypervisorVersion'] = null;
  if (versionText !== null) {
    const clauses = parseVersionPredicate(versionText);
    if (!clauses)
      throw new BadRequestError(
        `Image ${image.id} has hypervisor_version_requires '${versionText}', which is not a version ` +
          "predicate (e.g. '>=6.1' or '>=6.1,<7').",
      );
    hypervisorVersion = { text: versionText, clauses };
  }
  return {
    architecture: architecture === null ? null : canonicalArchitecture(architecture),
    hypervisorType: hypervisorType?.toLowerCase() ?? null,
    hypervisorVersion,
  } satisfies ImageRequirements;
}

export interface Demand {
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
}

export interface PlacementOptions {
  now: Date;
  /** A host not heard from (registration or heartbeat) for this long takes no new instances. */
  hostTimeoutSeconds: number;
}

/** Why `host` cannot take the instance, or null when it can. */
export function hostRefusal(
  host: HostRecord,
  demand: Demand,
  requirements: ImageRequirements,
  options: PlacementOptions,
): string | null {
  const silentFor = silentSeconds(host, options.now);
  if (silentFor > options.hostTimeoutSeconds) return `not heard from for ${Math.floor(silentFor)} s`;
  if (
    requirements.architecture !== null &&
    canonicalArchitecture(host.architecture) !== requirements.architecture
  )
    return `architecture ${host.architecture}, the image needs ${requirements.architecture}`;
  // A KVM host runs plain-qemu (TCG) guests too, as Nova's libvirt driver advertises; not the reverse.
  const types = host.hypervisor_type === 'kvm' ? ['kvm', 'qemu'] : ['qemu'];
  if (requirements.hypervisorType !== null && !types.includes(requirements.hypervisorType))
    return `hypervisor ${host.hypervisor_type}, the image needs ${requirements.hypervisorType}`;
  if (
    requirements.hypervisorVersion &&
    !satisfiesVersion(host.hypervisor_version, requirements.hypervisorVersion.clauses)
  )
    return (
      `hypervisor version ${versionString(host.hypervisor_version)} does not satisfy the image's ` +
      `hypervisor_version_requires '${requirements.hypervisorVersion.text}'`
    );
  const free = freeCapacity(host);
  const short: string[] = [];
  if (demand.vcpus > free.vcpus) short.push(`${free.vcpus} of ${host.vcpus} vCPUs free`);
  if (demand.ram_mb > free.ram_mb) short.push(`${free.ram_mb} of ${host.ram_mb} MB RAM free`);
  if (demand.disk_gb > free.disk_gb) short.push(`${free.disk_gb} of ${host.disk_gb} GB disk free`);
  return short.length > 0 ? `no room: ${short.join(', ')}` : null;
}

export function freeCapacity(host: HostRecord): Demand {
  return {
    vcpus: Math.max(0, host.vcpus - host.used_vcpus),
    ram_mb: Math.max(0, host.ram_mb - host.used_ram_mb),
    disk_gb: Math.max(0, host.disk_gb - host.used_disk_gb),
  };
}

export type Placement = { host: HostRecord } | { refused: string };

const MAX_LISTED_REFUSALS = 10;

/**
 * Picks the host with the most free RAM (then vCPUs, then id) among those that can take the
 * instance; otherwise says why none can, host by host.
 */
export function place(
  hosts: readonly HostRecord[],
  demand: Demand,
  requirements: ImageRequirements,
  options: PlacementOptions,
): Placement {
  if (hosts.length === 0) return { refused: 'no hosts are registered' };
  const refusals: string[] = [];
  const fit: HostRecord[] = [];
  for (const host of [...hosts].sort((a, b) => a.id.localeCompare(b.id))) {
    const why = hostRefusal(host, demand, requirements, options);
    if (why === null) fit.push(host);
    else refusals.push(`host ${host.id}: ${why}`);
  }
  const best = fit.sort((a, b) => {
    const fa = freeCapacity(a);
    const fb = freeCapacity(b);
    return fb.ram_mb - fa.ram_mb || fb.vcpus - fa.vcpus || a.id.localeCompare(b.id);
  })[0];
  if (best) return { host: best };
  const listed = refusals.slice(0, MAX_LISTED_REFUSALS);
  if (refusals.length > listed.length) listed.push(`and ${refusals.length - listed.length} more`);
  return { refused: listed.join('; ') };
}

/** Seconds since the host was last heard from (registration or heartbeat). */
export function silentSeconds(host: Pick<HostRecord, 'heartbeat_at'>, now: Date): number {
  return (now.getTime() - Date.parse(host.heartbeat_at)) / 1000;
}

/**
 * What the instance holds of its host: its vCPUs and RAM, and a disk_gb for each of its disks
 * (the disk, the one previous disk kept for a rollback, a pending upgrade's new disk); nothing
 * once destroyed.
 */
export function demandOf(instance: InstanceRecord): Demand {
  if (instance.stage === 'Inexistent') return { vcpus: 0, ram_mb: 0, disk_gb: 0 };
  const disks = 1 + (instance.previous_image ? 1 : 0) + (instance.upgrade_to ? 1 : 0);
  return { vcpus: instance.vcpus, ram_mb: instance.ram_mb, disk_gb: instance.disk_gb * disks };
}

/** How much more (positive) or less (negative) of its host `next` holds than `previous`. */
export function demandChange(previous: InstanceRecord, next: InstanceRecord): Demand {
  const before = demandOf(previous);
  const after = demandOf(next);
  return {
    vcpus: after.vcpus - before.vcpus,
    ram_mb: after.ram_mb - before.ram_mb,
    disk_gb: after.disk_gb - before.disk_gb,
  };
}
