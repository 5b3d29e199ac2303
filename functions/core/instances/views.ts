/** The API views of instances and hosts. */
import { referenceOf } from './lifecycle.ts';
import { freeCapacity } from './placement.ts';
import type { HostRecord, InstanceRecord } from './records.ts';

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
    reference: referenceOf(instance),
    previous_image: instance.previous_image
      ? { id: instance.previous_image.id, name: instance.previous_image.name }
      : null,
    upgrading_to: instance.upgrade_to
      ? { id: instance.upgrade_to.image.id, name: instance.upgrade_to.image.name }
      : null,
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
