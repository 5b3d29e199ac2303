/**
 * The stage machine. A stage changes only when a host agent reports a job done (or reports what
 * libvirt really shows, see applyObserved); a user action only queues a job, and while a job is
 * pending every other action is refused (409). Pure: no I/O, no clock of its own (callers pass
 * `now`).
 */
import type { ImageRecord } from '../images/image.ts';
import { ConflictError } from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import { isoSeconds } from '../kernel/time.ts';
import type {
  Action,
  HostRecord,
  InstanceImage,
  InstanceRecord,
  JobKind,
  ObservedState,
  Stage,
} from './records.ts';
import { type CreateInstanceRequest, isImageId } from './requests.ts';

/** The stages each action may start from. Destroy takes anything that still exists. */
export const ACTION_FROM: Readonly<Record<Action, readonly Stage[]>> = {
  stop: ['Running', 'Sleep'],
  start: ['Shutoff'],
  sleep: ['Running'],
  wake: ['Sleep'],
  reboot: ['Running'],
  destroy: ['Running', 'Sleep', 'Shutoff', 'Error'],
  // A sleeping instance's saved RAM belongs to its current disk: wake or stop it first.
  upgrade: ['Running', 'Shutoff'],
  rollback: ['Running', 'Shutoff'],
};

/** The stage a job leaves the instance in once the agent reports it done (a snapshot keeps it). */
export const STAGE_AFTER: Readonly<Record<Exclude<JobKind, 'snapshot'>, Stage>> = {
  build: 'Running',
  start: 'Running',
  stop: 'Shutoff',
  sleep: 'Sleep',
  wake: 'Running',
  reboot: 'Running',
  destroy: 'Inexistent',
  // Like Nova's rebuild, both boot the instance on the disk they leave it with.
  upgrade: 'Running',
  rollback: 'Running',
};

/** The reference an instance follows; records made before `reference` existed name it in image_ref. */
export function referenceOf(instance: InstanceRecord): string | null {
  if (instance.reference !== undefined) return instance.reference;
  return isImageId(instance.image_ref) ? null : instance.image_ref;
}

/** What the agent keeps of an image for an instance's disk (a snapshot of the record). */
export function instanceImage(image: ImageRecord): InstanceImage {
  return {
    id: image.id,
    name: image.name,
    disk_format: image.disk_format ?? 'raw',
    size: image.size,
    os_hash_algo: 'sha512',
    os_hash_value: image.os_hash_value ?? '',
  };
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
    image: instanceImage(image),
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
    reference: isImageId(request.image) ? null : request.image,
    previous_image: null,
    upgrade_to: null,
    version: 1,
  };
}

/** 409 unless `action` may start now: no job pending, a stage it starts from, a disk to roll back to. */
export function assertCanRequest(instance: InstanceRecord, action: Action): void {
  if (instance.pending_job)
    throw new ConflictError(
      `Instance ${instance.id} has a ${instance.pending_job.kind} job pending; try again once it has finished.`,
    );
  if (!ACTION_FROM[action].includes(instance.stage))
    throw new ConflictError(
      `Cannot ${action} instance ${instance.id} while it is ${instance.stage} ` +
        `(${action} needs ${ACTION_FROM[action].join(' or ')}).`,
    );
  if (action === 'rollback' && !instance.previous_image)
    throw new ConflictError(
      `Instance ${instance.id} has no previous disk to roll back to: only an upgrade keeps one.`,
    );
}

/**
 * The instance with `action`'s job pending; 409 when a job is pending or the stage does not fit.
 * An upgrade names its target (`upgrade`): its disk counts against the host until the job ends.
 */
export function requestAction(
  instance: InstanceRecord,
  action: Action,
  jobId: string,
  now: Date,
  upgrade?: NonNullable<InstanceRecord['upgrade_to']>,
): InstanceRecord {
  assertCanRequest(instance, action);
  if (action === 'upgrade' && !upgrade) throw new Error('an upgrade needs its target image');
  return {
    ...instance,
    pending_job: { id: jobId, kind: action },
    ...(action === 'upgrade' ? { upgrade_to: upgrade ?? null } : {}),
    updated_at: isoSeconds(now),
    version: instance.version + 1,
  };
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
  // A pending upgrade's target goes either way: onto the instance, or (failed) away.
  const base: InstanceRecord = {
    ...instance,
    pending_job: null,
    ...(job.kind === 'upgrade' ? { upgrade_to: null } : {}),
    updated_at: at,
    version: instance.version + 1,
  };
  if (!outcome.ok) {
    const reason = outcome.reason.slice(0, MAX_REASON_CHARS);
    if (job.kind === 'build')
      return { ...base, stage: 'Error', reason: `build failed: ${reason}`, last_error: reason };
    // A failed upgrade left the instance on its disk (the agent rolled back if it had swapped).
    return { ...base, last_error: `${job.kind} failed: ${reason}` };
  }
  const { console_log, domain_uuid } = outcome.result;
  const stage = job.kind === 'snapshot' ? instance.stage : STAGE_AFTER[job.kind];
  return {
    ...base,
    ...disksAfter(instance, job.kind),
    stage,
    reason: null,
    last_error: null,
    console_log: console_log === undefined ? instance.console_log : console_log.slice(-MAX_CONSOLE_LOG_CHARS),
    domain_uuid: domain_uuid ?? instance.domain_uuid,
    destroyed_at: stage === 'Inexistent' ? at : instance.destroyed_at,
  };
}

/** Which image the disk and the previous disk hold after a successful upgrade or rollback. */
function disksAfter(instance: InstanceRecord, kind: JobKind): Partial<InstanceRecord> {
  if (kind === 'upgrade' && instance.upgrade_to)
    return {
      image: instance.upgrade_to.image,
      image_ref: instance.upgrade_to.requested_as,
      reference: instance.upgrade_to.reference ?? referenceOf(instance),
      previous_image: instance.image,
    };
  if (kind === 'rollback' && instance.previous_image)
    return {
      image: instance.previous_image,
      image_ref: instance.previous_image.id,
      previous_image: instance.image,
    };
  return {};
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
