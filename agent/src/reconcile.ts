/**
 * Start-up reconciliation between libvirt, the instance dirs and the service's view of this host.
 *
 * - hangar-* domains of this host (by the <metadata> host id) and instance dirs the service does not know:
 *   destroyed, undefined (with managed save) and removed. Domains of other hosts or without Hangar
 *   metadata are left alone: another agent may share this libvirt.
 * - Instances the service has but libvirt lacks: reported 'missing' (except while Building: the build job
 *   will create the domain).
 * - Everything else: its real state is reported (running / shutoff / saved).
 * Nothing is removed unless the service's list was read: an unreachable service must not empty a host.
 */
import { describeError } from './errors.ts';
import { DOMAIN_PREFIX, domainNameFor } from './hypervisor/domain-xml.ts';
import type { DomainInfo, DomainState, Hypervisor } from './hypervisor/hypervisor.ts';
import type { InstanceFiles } from './instance-files.ts';
import type { Logger } from './log.ts';
import type { ObservedState, ServicePort } from './service-client.ts';

export interface ReconcileReport {
  removed: string[];
  observed: Array<{ instanceId: string; state: ObservedState; reason?: string }>;
  skipped: string[];
  errors: string[];
}

export function observedStateOf(state: DomainState): { state: ObservedState; reason?: string } {
  switch (state) {
    case 'running':
    case 'shutting_down':
      return { state: 'running' };
    case 'paused':
      return { state: 'running', reason: 'paused' };
    case 'pmsuspended':
      return { state: 'running', reason: 'guest suspended itself (pmsuspended)' };
    case 'saved':
      return { state: 'saved' };
    case 'crashed':
      return { state: 'shutoff', reason: 'crashed' };
    case 'shutoff':
      return { state: 'shutoff' };
    default:
      return { state: 'shutoff', reason: `libvirt state ${state}` };
  }
}

export async function reconcile(deps: {
  service: ServicePort;
  hypervisor: Hypervisor;
  files: InstanceFiles;
  hostId: string;
  log: Logger;
  signal?: AbortSignal;
}): Promise<ReconcileReport> {
  const { service, hypervisor, files, hostId, log, signal } = deps;
  const report: ReconcileReport = { removed: [], observed: [], skipped: [], errors: [] };
  const known = await service.listInstances(signal);
  const knownIds = new Set(known.map((instance) => instance.id));
  const domains = new Map<string, DomainInfo>();
  for (const domain of await hypervisor.list(DOMAIN_PREFIX, signal)) {
    domains.set(domain.name.slice(DOMAIN_PREFIX.length), domain);
  }
  const dirs = new Set(await files.list());

  for (const [instanceId, domain] of domains) {
    if (knownIds.has(instanceId)) continue;
    try {
      const owner = await hypervisor.owner(domain.name, signal);
      if (owner?.hostId !== hostId) {
        log.warn('unknown hangar domain not owned by this host; left alone', { domain: domain.name, owner });
        report.skipped.push(instanceId);
        continue;
      }
      await hypervisor.destroy(domain.name, signal);
      await hypervisor.undefine(domain.name, signal);
      await files.remove(instanceId);
      dirs.delete(instanceId);
      report.removed.push(instanceId);
      log.info('removed a domain the service does not know', { domain: domain.name, state: domain.state });
    } catch (error) {
      report.errors.push(`${domain.name}: ${describeError(error)}`);
      log.error('could not remove unknown domain', { domain: domain.name, error });
    }
  }

  for (const instanceId of dirs) {
    if (knownIds.has(instanceId) || domains.has(instanceId)) continue;
    await files.remove(instanceId);
    report.removed.push(instanceId);
    log.info('removed an instance dir the service does not know', { instance_id: instanceId });
  }

  for (const instance of known) {
    const domain = domains.get(instance.id);
    let observed: { state: ObservedState; reason?: string };
    if (domain) {
      observed = observedStateOf(domain.state);
    } else if (instance.stage === 'Building') {
      report.skipped.push(instance.id);
      continue;
    } else {
      observed = { state: 'missing', reason: `no libvirt domain ${domainNameFor(instance.id)} on this host` };
    }
    try {
      await service.reportObserved(instance.id, observed.state, observed.reason, signal);
      report.observed.push({ instanceId: instance.id, ...observed });
    } catch (error) {
      report.errors.push(`${instance.id}: ${describeError(error)}`);
      log.warn('could not report observed state', { instance_id: instance.id, error });
    }
  }
  log.info('reconciled', {
    removed: report.removed.length,
    observed: report.observed.length,
    skipped: report.skipped.length,
    errors: report.errors.length,
  });
  return report;
}

/** The stage the service shows for a domain in each observed state (what needs no report). */
const STAGE_OF: Readonly<Record<ObservedState, string>> = {
  running: 'Running',
  shutoff: 'Shutoff',
  saved: 'Sleep',
  missing: 'Error',
};

/**
 * Between start-ups: a guest that changed state by itself (powered itself off, as a build's
 * recipe does last, or crashed) is reported. Only the domains of known, built instances whose
 * state differs from the service's stage are reported; nothing is removed (that is reconcile's,
 * at start-up, before any job runs). The service ignores a report while a job is in flight.
 */
export async function observe(deps: {
  service: ServicePort;
  hypervisor: Hypervisor;
  log: Logger;
  signal?: AbortSignal;
}): Promise<number> {
  const { service, hypervisor, log, signal } = deps;
  const domains = new Map<string, DomainInfo>();
  for (const domain of await hypervisor.list(DOMAIN_PREFIX, signal))
    domains.set(domain.name.slice(DOMAIN_PREFIX.length), domain);
  let reported = 0;
  for (const instance of await service.listInstances(signal)) {
    const domain = domains.get(instance.id);
    if (!domain || !['Running', 'Shutoff', 'Sleep'].includes(instance.stage)) continue;
    const observed = observedStateOf(domain.state);
    if (STAGE_OF[observed.state] === instance.stage) continue;
    try {
      await service.reportObserved(instance.id, observed.state, observed.reason, signal);
      reported += 1;
      log.info('reported a state change', { instance_id: instance.id, stage: instance.stage, ...observed });
    } catch (error) {
      log.warn('could not report observed state', { instance_id: instance.id, error });
    }
  }
  return reported;
}
