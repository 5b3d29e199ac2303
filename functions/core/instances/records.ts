/**
 * Instances (VMs) and the hosts they run on, as stored: the records and their vocabularies.
 *
 * Stages follow the life cycle of the 'Knowledge' seed: Inexistent -> Building -> Running ->
 * Sleep -> Shutoff, plus Error (with a reason); lifecycle.ts moves them.
 */
import type { BootCheck } from './requests.ts';

export const STAGES = ['Building', 'Running', 'Sleep', 'Shutoff', 'Error', 'Inexistent'] as const;
export type Stage = (typeof STAGES)[number];

export const ACTIONS = [
  'stop',
  'start',
  'sleep',
  'wake',
  'reboot',
  'destroy',
  'upgrade',
  'rollback',
] as const;
export type Action = (typeof ACTIONS)[number];

/** `snapshot` is not an Action: it has its own request (core/instances/snapshots.ts) and keeps the stage. */
export const JOB_KINDS = ['build', ...ACTIONS, 'snapshot'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

export const OBSERVED_STATES = ['running', 'shutoff', 'saved', 'missing'] as const;
export type ObservedState = (typeof OBSERVED_STATES)[number];

/** Disk formats the agent can put a qcow2 overlay on (agent/src/image-cache.ts QEMU_FORMATS). */
export const INSTANCE_DISK_FORMATS = ['qcow2', 'raw', 'vmdk', 'vdi', 'vhd', 'vhdx'] as const;

/** How long a destroyed instance stays readable (stage Inexistent) before TTL removes it. */
export const DESTROYED_RETENTION_HOURS = 48;

/** What the agent needs of the image: a snapshot taken at create, so the build boots those bytes. */
export interface InstanceImage {
  id: string;
  name: string | null;
  disk_format: string;
  size: number | null;
  os_hash_algo: 'sha512';
  os_hash_value: string;
}

export interface InstanceRecord {
  id: string;
  name: string;
  hostname: string;
  project: string;
  user_id: string;
  /** What the caller asked for: the image id or a name:tag reference. */
  image_ref: string;
  image: InstanceImage;
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  user_data: string | null;
  host_id: string;
  stage: Stage;
  /** Why the instance is in Error (null otherwise). */
  reason: string | null;
  /** The last action that failed without changing the stage. */
  last_error: string | null;
  /** The job in flight; at most one per instance. */
  pending_job: { id: string; kind: JobKind } | null;
  domain_uuid: string | null;
  /** The tail of the serial console, as the agent last sent it. */
  console_log: string | null;
  /** What the host agent last reported that libvirt shows. */
  observed: { state: ObservedState; reason: string | null; at: string } | null;
  created_at: string;
  updated_at: string;
  destroyed_at: string | null;
  /** What its boots must print (see BootCheckSchema); absent on records made before it existed. */
  boot_check?: BootCheck | null;
  /**
   * A publish boot gate's Step Functions task token: the end of the build job answers it
   * (core/references/publish.ts). Never shown.
   */
  gate_token?: string | null;
  /**
   * The name:tag reference the instance follows (an upgrade without an image goes where it points
   * now). Absent on records made before upgrades existed: referenceOf reads it from image_ref.
   */
  reference?: string | null;
  /** The image of the one previous disk kept for a rollback (null: none). */
  previous_image?: InstanceImage | null;
  /** A pending upgrade's target (its disk counts against the host while the job runs). */
  upgrade_to?: { image: InstanceImage; requested_as: string; reference: string | null } | null;
  /** Optimistic-concurrency counter, bumped by every write. */
  version: number;
}

export interface HostRecord {
  id: string;
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  architecture: string;
  hypervisor_type: 'qemu' | 'kvm';
  /** libvirt's integer encoding: major * 1,000,000 + minor * 1,000 + micro. */
  hypervisor_version: number;
  used_vcpus: number;
  used_ram_mb: number;
  used_disk_gb: number;
  registered_at: string;
  updated_at: string;
  heartbeat_at: string;
}

export type HostRegistration = Pick<
  HostRecord,
  'vcpus' | 'ram_mb' | 'disk_gb' | 'architecture' | 'hypervisor_type' | 'hypervisor_version'
>;
