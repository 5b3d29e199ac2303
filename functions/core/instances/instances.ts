/**
 * Instances (VMs) and the hosts they run on: records, the stage machine, placement and the API
 * views. Pure: no I/O, no clock of its own (callers pass `now`), so all of it is unit-tested.
 *
 * Stages follow the life cycle of the 'Knowledge' seed: Inexistent -> Building -> Running ->
 * Sleep -> Shutoff, plus Error (with a reason). A stage changes only when a host agent reports a
 * job done (or reports what libvirt really shows, see applyObserved); a user action only queues a
 * job, and while a job is pending every other action is refused (409).
 */
import { z } from 'zod';
import type { ImageRecord } from '../images/image.ts';
import { BadRequestError, ConflictError, ForbiddenError } from '../kernel/errors.ts';
import { canReadProject, canWriteProject, isHostAgent, type Principal } from '../kernel/principal.ts';
import { isoSeconds } from '../kernel/time.ts';

export { HOST_ROLE, isHostAgent } from '../kernel/principal.ts';

export const STAGES = ['Building', 'Running', 'Sleep', 'Shutoff', 'Error', 'Inexistent'] as const;
export type Stage = (typeof STAGES)[number];

export const ACTIONS = ['stop', 'start', 'sleep', 'wake', 'reboot', 'destroy'] as const;
export type Action = (typeof ACTIONS)[number];

export const JOB_KINDS = ['build', ...ACTIONS] as const;
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

// ---------------------------------------------------------------------------------------------
// Requests.

const MAX_USER_DATA_BYTES = 65535;

/**
 * A boot that counts only once the serial console prints `marker` (literal text), within
 * `timeout_seconds` of the domain's start; otherwise the build (or start, reboot) fails.
 */
export const BootCheckSchema = z.strictObject({
  marker: z.string().min(1).max(200),
  timeout_seconds: z.number().int().min(10).max(3600),
});
export type BootCheck = z.infer<typeof BootCheckSchema>;

export const CreateInstanceRequestSchema = z.strictObject({
  name: z.string().trim().min(1).max(255),
  /** An image id, or a name:tag reference (see isImageId). */
  image: z.string().min(1).max(300),
  vcpus: z.number().int().min(1).max(1024),
  // The agent refuses less than 16 MiB (agent/src/service-client.ts JobSchema).
  ram_mb: z
    .number()
    .int()
    .min(16)
    .max(16 * 1024 * 1024),
  disk_gb: z
    .number()
    .int()
    .min(1)
    .max(64 * 1024),
  user_data: z
    .string()
    .refine((text) => Buffer.byteLength(text, 'utf8') <= MAX_USER_DATA_BYTES, {
      message: `user_data is limited to ${MAX_USER_DATA_BYTES} bytes`,
    })
    .nullish(),
  boot_check: BootCheckSchema.nullish(),
});
export type CreateInstanceRequest = z.infer<typeof CreateInstanceRequestSchema>;

export const HostRegistrationSchema = z.object({
  vcpus: z.number().int().min(1),
  ram_mb: z.number().int().min(1),
  disk_gb: z.number().int().min(0),
  architecture: z.string().min(1).max(64),
  hypervisor_type: z.enum(['qemu', 'kvm']),
  hypervisor_version: z.number().int().nonnegative(),
});

/** zod's verdict as one 400 line, naming the fields. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const path = issue.path.join('.');
    return path ? `${path}: ${issue.message}` : issue.message;
  });
  throw new BadRequestError(`Invalid ${what}: ${problems.join('; ')}`);
}

/**
 * Image ids are UUIDs (Glance's id schema); anything else names a reference, `name:tag` or a bare
 * `name` (= name:latest), as in docs/references-api.md.
 */
export function isImageId(ref: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(ref);
}

/** A DNS label from the instance name (the guest's local-hostname). */
export function hostnameFor(name: string, id: string): string {
  const label = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .slice(0, 63)
    .replace(/^-+|-+$/g, '');
  return label || `instance-${id.slice(0, 8)}`;
}

// ---------------------------------------------------------------------------------------------
// Who may do what.

/** Host endpoints: a host token, acting for its own host only. */
export function assertActsForHost(principal: Principal, hostId: string): void {
  if (!isHostAgent(principal))
    throw new ForbiddenError('Only host agents (tokens with the host role) may use this endpoint.');
  if (principal.user !== hostId)
    throw new ForbiddenError(`This token acts for host ${principal.user}, not for host ${hostId}.`);
}

/** Instance endpoints are for projects; a host token manages nothing. */
export function assertProjectCaller(principal: Principal): void {
  if (isHostAgent(principal) && !principal.isAdmin)
    throw new ForbiddenError('Host tokens cannot manage instances.');
}

/** Readers of the instance's project (and admins) see it; no one else learns that it exists. */
export function canSeeInstance(instance: InstanceRecord, principal: Principal): boolean {
  return canReadProject(principal, instance.project);
}

/** Creating, acting on and destroying instances: members of the project (and admins), 403 otherwise. */
export function assertManagesInstances(principal: Principal, project: string): void {
  if (!canWriteProject(principal, project))
    throw new ForbiddenError(`Only members of project ${project} may create or change its instances.`);
}

// ---------------------------------------------------------------------------------------------
// The image: what it demands of the request and of the host.

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

export interface VersionClause {
  op: '<' | '<=' | '==' | '!=' | '>' | '>=';
  version: number[];
}

/**
 * Nova's hypervisor_version_requires: a distutils VersionPredicate body, comma-separated
 * `<op> <version>` clauses that must all hold (a bare version means ==). null when malformed.
 */
export function parseVersionPredicate(text: string): VersionClause[] | null {
  const body = text.trim().replace(/^\((.*)\)$/, '$1');
  const clauses: VersionClause[] = [];
  for (const part of body.split(',')) {
    const match = /^\s*(<=|>=|==|!=|<|>)?\s*(\d+(?:\.\d+){0,2})\s*$/.exec(part);
    if (!match) return null;
    clauses.push({
      op: (match[1] ?? '==') as VersionClause['op'],
      version: (match[2] ?? '').split('.').map(Number),
    });
  }
  return clauses;
}

/** Nova's convert_version_to_str: 9001002 -> "9.1.2". */
export function versionString(version: number): string {
  const parts: number[] = [];
  for (let rest = version; rest > 0; rest = Math.floor(rest / 1000)) parts.unshift(rest % 1000);
  return parts.length > 0 ? parts.join('.') : '0';
}

function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const diff = (a[i] ?? 0) - (b[i] ?? 0);
    if (diff !== 0) return Math.sign(diff);
  }
  return 0;
}

export function satisfiesVersion(hostVersion: number, clauses: readonly VersionClause[]): boolean {
  const have = versionString(hostVersion).split('.').map(Number);
  return clauses.every(({ op, version }) => {
    const c = compareVersions(have, version);
    switch (op) {
      case '<':
        return c < 0;
      case '<=':
        return c <= 0;
      case '==':
        return c === 0;
      case '!=':
        return c !== 0;
      case '>':
        return c > 0;
      case '>=':
        return c >= 0;
    }
    return false;
  });
}

// ---------------------------------------------------------------------------------------------
// Placement.

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

// ---------------------------------------------------------------------------------------------
// The stage machine.

/** The stages each action may start from. Destroy takes anything that still exists. */
export const ACTION_FROM: Readonly<Record<Action, readonly Stage[]>> = {
  stop: ['Running', 'Sleep'],
  start: ['Shutoff'],
  sleep: ['Running'],
  wake: ['Sleep'],
  reboot: ['Running'],
  destroy: ['Running', 'Sleep', 'Shutoff', 'Error'],
};

/** The stage a job leaves the instance in once the agent reports it done. */
export const STAGE_AFTER: Readonly<Record<JobKind, Stage>> = {
  build: 'Running',
  start: 'Running',
  stop: 'Shutoff',
  sleep: 'Sleep',
  wake: 'Running',
  reboot: 'Running',
  destroy: 'Inexistent',
};

export function newInstance(input: {
  id: string;
  request: CreateInstanceRequest;
  image: ImageRecord;
  principal: Principal;
  host: HostRecord;
  buildJobId: string;
  now: Date;
  gateToken?: string;
}): InstanceRecord {
  const { id, request, image, principal, host, now } = input;
  const at = isoSeconds(now);
  return {
    id,
    name: request.name,
    hostname: hostnameFor(request.name, id),
    project: principal.project,
    user_id: principal.user,
    image_ref: request.image,
    image: {
      id: image.id,
      name: image.name,
      disk_format: image.disk_format ?? 'raw',
      size: image.size,
      os_hash_algo: 'sha512',
      os_hash_value: image.os_hash_value ?? '',
    },
    vcpus: request.vcpus,
    ram_mb: request.ram_mb,
    disk_gb: request.disk_gb,
    user_data: request.user_data ?? null,
    host_id: host.id,
    stage: 'Building',
    reason: null,
    last_error: null,
    pending_job: { id: input.buildJobId, kind: 'build' },
    domain_uuid: null,
    console_log: null,
    observed: null,
    created_at: at,
    updated_at: at,
    destroyed_at: null,
    boot_check: request.boot_check ?? null,
    gate_token: input.gateToken ?? null,
    version: 1,
  };
}

/** The instance with `action`'s job pending; 409 when a job is pending or the stage does not fit. */
export function requestAction(
  instance: InstanceRecord,
  action: Action,
  jobId: string,
  now: Date,
): InstanceRecord {
  if (instance.pending_job)
    throw new ConflictError(
      `Instance ${instance.id} has a ${instance.pending_job.kind} job pending; try again once it has finished.`,
    );
  if (!ACTION_FROM[action].includes(instance.stage))
    throw new ConflictError(
      `Cannot ${action} instance ${instance.id} while it is ${instance.stage} ` +
        `(${action} needs ${ACTION_FROM[action].join(' or ')}).`,
    );
  return {
    ...instance,
    pending_job: { id: jobId, kind: action },
    updated_at: isoSeconds(now),
    version: instance.version + 1,
  };
}

/** Seconds since the host was last heard from (registration or heartbeat). */
export function silentSeconds(host: Pick<HostRecord, 'heartbeat_at'>, now: Date): number {
  return (now.getTime() - Date.parse(host.heartbeat_at)) / 1000;
}

/**
 * Destroying an instance whose host is lost (not heard from for longer than the host timeout):
 * no agent would ever run a destroy job, so the record goes straight to Inexistent (its capacity
 * is released with it). Any pending job is abandoned. If the host comes back, its agent's
 * start-up reconcile removes the domain, which the service no longer knows.
 */
export function destroyOnLostHost(
  instance: InstanceRecord,
  host: Pick<HostRecord, 'id' | 'heartbeat_at'>,
  now: Date,
): InstanceRecord {
  if (instance.stage === 'Inexistent')
    throw new ConflictError(`Cannot destroy instance ${instance.id}: it is already destroyed.`);
  const at = isoSeconds(now);
  const note =
    `destroyed while host ${host.id} was unreachable (last heard from ${host.heartbeat_at}); ` +
    'its agent removes the domain when it reconciles';
  return {
    ...instance,
    stage: 'Inexistent',
    pending_job: null,
    last_error: note,
    updated_at: at,
    destroyed_at: at,
    version: instance.version + 1,
  };
}

/** Console tails are kept short: the agent sends at most 16 KiB, a record holds at most 400 KB. */
export const MAX_CONSOLE_LOG_CHARS = 16 * 1024;
const MAX_REASON_CHARS = 4000;

export type JobOutcome =
  | { ok: true; result: { console_log?: string | undefined; domain_uuid?: string | undefined } }
  | { ok: false; reason: string };

/**
 * The instance once the agent reported its pending job `jobId` done or failed; null when that job
 * is not the instance's pending one (then nothing about the instance changes). A failed build
 * leaves the instance in Error; any other failed job leaves the stage as it was, with last_error.
 */
export function applyJobOutcome(
  instance: InstanceRecord,
  job: { id: string; kind: JobKind },
  outcome: JobOutcome,
  now: Date,
): InstanceRecord | null {
  if (instance.pending_job?.id !== job.id) return null;
  const at = isoSeconds(now);
  const base = { ...instance, pending_job: null, updated_at: at, version: instance.version + 1 };
  if (!outcome.ok) {
    const reason = outcome.reason.slice(0, MAX_REASON_CHARS);
    if (job.kind === 'build')
      return { ...base, stage: 'Error', reason: `build failed: ${reason}`, last_error: reason };
    return { ...base, last_error: `${job.kind} failed: ${reason}` };
  }
  const { console_log, domain_uuid } = outcome.result;
  const stage = STAGE_AFTER[job.kind];
  return {
    ...base,
    stage,
    reason: null,
    last_error: null,
    console_log: console_log === undefined ? instance.console_log : console_log.slice(-MAX_CONSOLE_LOG_CHARS),
    domain_uuid: domain_uuid ?? instance.domain_uuid,
    destroyed_at: stage === 'Inexistent' ? at : instance.destroyed_at,
  };
}

/**
 * Reconciliation: what the host agent sees in libvirt repairs the service's view. Nothing changes
 * while a job is pending (the job's outcome decides), during Building (the build job makes the
 * domain), after destroy, or in Error (its reason stays until the instance is destroyed).
 * The observation itself is always recorded; `stageChanged` says whether the stage moved.
 */
export function applyObserved(
  instance: InstanceRecord,
  state: ObservedState,
  reason: string | null,
  now: Date,
): { next: InstanceRecord; stageChanged: boolean } {
  const at = isoSeconds(now);
  const noted: InstanceRecord = {
    ...instance,
    observed: { state, reason: reason?.slice(0, MAX_REASON_CHARS) ?? null, at },
    updated_at: at,
    version: instance.version + 1,
  };
  const settled = ['Running', 'Sleep', 'Shutoff'].includes(instance.stage) && instance.pending_job === null;
  if (!settled) return { next: noted, stageChanged: false };
  let stage: Stage = instance.stage;
  if (state === 'missing') {
    const why = `domain missing on host ${instance.host_id}${reason ? ` (${reason})` : ''}`;
    return { next: { ...noted, stage: 'Error', reason: why.slice(0, MAX_REASON_CHARS) }, stageChanged: true };
  }
  if (state === 'running') stage = 'Running';
  else if (state === 'saved') stage = 'Sleep';
  else if (state === 'shutoff') stage = 'Shutoff';
  return { next: { ...noted, stage }, stageChanged: stage !== instance.stage };
}

// ---------------------------------------------------------------------------------------------
// Views.

export const instancePath = (id: string) => `/v1/instances/${id}`;

/** The user's view. user_data is never shown back (it may hold secrets), only whether there is one. */
export function renderInstance(instance: InstanceRecord, options: { console?: boolean } = {}) {
  return {
    id: instance.id,
    name: instance.name,
    hostname: instance.hostname,
    project_id: instance.project,
    user_id: instance.user_id,
    image_id: instance.image.id,
    image: { id: instance.image.id, name: instance.image.name, requested_as: instance.image_ref },
    vcpus: instance.vcpus,
    ram_mb: instance.ram_mb,
    disk_gb: instance.disk_gb,
    has_user_data: instance.user_data !== null,
    host_id: instance.host_id,
    stage: instance.stage,
    reason: instance.reason,
    last_error: instance.last_error,
    pending_action: instance.pending_job?.kind ?? null,
    pending_job_id: instance.pending_job?.id ?? null,
    domain_uuid: instance.domain_uuid,
    observed: instance.observed,
    created_at: instance.created_at,
    updated_at: instance.updated_at,
    destroyed_at: instance.destroyed_at,
    boot_check: instance.boot_check ?? null,
    ...(options.console ? { console_log: instance.console_log } : {}),
    self: instancePath(instance.id),
  };
}

export function renderHost(host: HostRecord) {
  return {
    id: host.id,
    vcpus: host.vcpus,
    ram_mb: host.ram_mb,
    disk_gb: host.disk_gb,
    architecture: host.architecture,
    hypervisor_type: host.hypervisor_type,
    hypervisor_version: host.hypervisor_version,
    used: { vcpus: host.used_vcpus, ram_mb: host.used_ram_mb, disk_gb: host.used_disk_gb },
    free: freeCapacity(host),
    registered_at: host.registered_at,
    updated_at: host.updated_at,
    heartbeat_at: host.heartbeat_at,
  };
}

/** What an agent's reconcile reads: the instances placed on its host that still exist. */
export function renderHostInstance(instance: InstanceRecord) {
  return {
    id: instance.id,
    name: instance.name,
    stage: instance.stage,
    pending_action: instance.pending_job?.kind ?? null,
    image_id: instance.image.id,
  };
}
