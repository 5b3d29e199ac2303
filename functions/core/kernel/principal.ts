/** Who is calling: resolved from a token by an Authenticator, never from request headers. */
export interface Principal {
  readonly project: string;
  readonly user: string;
  readonly roles: readonly string[];
  readonly isAdmin: boolean;
}

export interface Authenticator {
  /** Returns null for an unknown, expired or malformed token. */
  authenticate(token: string): Promise<Principal | null>;
}

/** The role of host agents' tokens (`{project: 'hosts', user: '<host id>', roles: ['host']}`). */
export const HOST_ROLE = 'host';

export function makePrincipal(project: string, user: string, roles: readonly string[]): Principal {
  return { project, user, roles, isAdmin: hasRoleNamed(roles, 'admin') };
}

// oslo.policy compares role names without regard to case.
function hasRoleNamed(roles: readonly string[], name: string): boolean {
  return roles.some((role) => role.toLowerCase() === name);
}

/*
 * Roles, in one place: Glance's secure-RBAC defaults (enforce_new_defaults; glance/policies/base.py
 * ADMIN_OR_PROJECT_READER, ADMIN_OR_PROJECT_MEMBER). `reader` reads its project, `member` also
 * writes it, `admin` reads and writes everything. Keystone's implied roles (admin ⇒ member ⇒
 * reader) are applied here, since a token file lists roles without their implications. A token
 * with none of the three reads and writes nothing, as under Glance's defaults; host agents
 * (role `host`) are not projects' users and follow their own rules (core/instances/access.ts,
 * core/images/access.ts).
 */

export function isHostAgent(principal: Principal): boolean {
  return hasRoleNamed(principal.roles, HOST_ROLE);
}

/** reader, member or admin: may read at all (its project's resources, and public ones). */
export function hasReaderRole(principal: Principal): boolean {
  return (
    principal.isAdmin || hasRoleNamed(principal.roles, 'member') || hasRoleNamed(principal.roles, 'reader')
  );
}

/** member or admin: may write its project's resources (and download image data, as in Glance). */
export function hasMemberRole(principal: Principal): boolean {
  return principal.isAdmin || hasRoleNamed(principal.roles, 'member');
}

/** Glance's ADMIN_OR_PROJECT_READER: an admin, or a reader (or member) of `project`. */
export function canReadProject(principal: Principal, project: string | null): boolean {
  return principal.isAdmin || (project !== null && project === principal.project && hasReaderRole(principal));
}

/** Glance's ADMIN_OR_PROJECT_MEMBER: an admin, or a member of `project`. Every write is decided here. */
export function canWriteProject(principal: Principal, project: string | null): boolean {
  return principal.isAdmin || (project !== null && project === principal.project && hasMemberRole(principal));
}
