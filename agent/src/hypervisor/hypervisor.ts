/** The hypervisor port: what the worker and reconcile need from libvirt, nothing more. */
import type { DomainSpec, DomainType } from './domain-xml.ts';

/**
 * Domain states, reduced from libvirt's. 'saved' = shut off with a managed save image (the Sleep stage);
 * 'shutting_down' = libvirt's "in shutdown".
 */
export type DomainState =
  | 'running'
  | 'paused'
  | 'shutting_down'
  | 'shutoff'
  | 'saved'
  | 'crashed'
  | 'pmsuspended'
  | 'other';

export interface DomainInfo {
  name: string;
  state: DomainState;
  managedSave: boolean;
  /** Only from info(); list() leaves it undefined to spare one virsh call per domain. */
  uuid?: string;
}

/** Read from the domain's <metadata>: which Hangar instance and host it belongs to. */
export interface DomainOwner {
  instanceId: string;
  hostId: string;
}

export interface HostCapabilities {
  vcpus: number;
  ramMb: number;
  architecture: string;
  /** libvirt's version as one number: major * 1_000_000 + minor * 1_000 + micro (9.0.0 -> 9000000). */
  libvirtVersion: number;
}

export interface ShutdownOptions {
  /** Force off (destroy) once this has passed without the guest powering off. */
  deadlineMs: number;
  /** Resend the ACPI request this often: one sent while the guest is still booting is lost. */
  retryIntervalMs: number;
  pollMs?: number;
}

export type StartOutcome = 'started' | 'restored' | 'already_running';
export type ShutdownOutcome = 'shut_down' | 'destroyed' | 'already_off';
export type SaveOutcome = 'saved' | 'already_saved';
export type DestroyOutcome = 'destroyed' | 'already_off' | 'not_found';
export type UndefineOutcome = 'undefined' | 'not_found';

export interface Hypervisor {
  readonly uri: string;
  capabilities(signal?: AbortSignal): Promise<HostCapabilities>;
  /** null when no such domain. */
  info(name: string, signal?: AbortSignal): Promise<DomainInfo | null>;
  list(prefix: string, signal?: AbortSignal): Promise<DomainInfo[]>;
  /** Define (or redefine: same name and UUID update the one domain) from the spec. Returns the UUID. */
  define(spec: DomainSpec, signal?: AbortSignal): Promise<string>;
  /**
   * Start, restoring the managed save image if there is one. `known`: the caller's fresh view of the domain
   * (e.g. it just defined it), which spares a lookup.
   */
  start(name: string, signal?: AbortSignal, known?: DomainInfo): Promise<StartOutcome>;
  shutdown(name: string, options: ShutdownOptions, signal?: AbortSignal): Promise<ShutdownOutcome>;
  managedSave(name: string, signal?: AbortSignal): Promise<SaveOutcome>;
  /** Drop a managed save image (a stop while asleep): the next start boots afresh. */
  managedSaveRemove(name: string, signal?: AbortSignal): Promise<void>;
  /** Graceful shutdown (with the same retries and deadline), then start: a fresh boot either way. */
  reboot(name: string, options: ShutdownOptions, signal?: AbortSignal): Promise<void>;
  /** Pause the guest's vCPUs (virsh suspend); qemu drains and flushes its disks when it stops the VM. */
  suspend(name: string, signal?: AbortSignal): Promise<void>;
  /** Let a paused guest run again (virsh resume). */
  resume(name: string, signal?: AbortSignal): Promise<void>;
  /** Force off. */
  destroy(name: string, signal?: AbortSignal): Promise<DestroyOutcome>;
  /** Undefine, removing the managed save image and NVRAM with it. */
  undefine(name: string, signal?: AbortSignal): Promise<UndefineOutcome>;
  /** null when the domain has no Hangar metadata (then it is not ours to touch) or does not exist. */
  owner(name: string, signal?: AbortSignal): Promise<DomainOwner | null>;
}

export type { DomainType };
