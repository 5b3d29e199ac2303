/** Who may do what with instances and hosts: projects manage instances, host agents their host. */
import { ForbiddenError } from '../kernel/errors.ts';
import { canReadProject, canWriteProject, isHostAgent, type Principal } from '../kernel/principal.ts';
import type { InstanceRecord } from './records.ts';

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
