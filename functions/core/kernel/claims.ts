/**
 * The `claims` auth mode's mapping: on AWS an API Gateway authorizer has already checked the
 * caller (a JWT authorizer's claims, or a Lambda authorizer's context such as the Keystone one),
 * and its claims name the project, user and roles exactly as a Keystone token would.
 */
import { makePrincipal, type Principal } from './principal.ts';

export interface ClaimNames {
  project: string;
  roles: string;
  user: string;
}

/**
 * Roles as a claim may carry them: a JSON array, or text. API Gateway hands JWT array claims over
 * as "[admin member]", and Lambda authorizer contexts hold only strings ("admin,member").
 */
export function parseRoles(value: unknown): string[] {
  let items: unknown[];
  if (Array.isArray(value)) items = value;
  else if (typeof value === 'string') {
    const text = value.trim();
    if (text.startsWith('[') && text.endsWith(']')) {
      try {
        const parsed: unknown = JSON.parse(text);
        if (Array.isArray(parsed)) return parseRoles(parsed);
      } catch {
        // Not JSON: API Gateway's "[a b]" form, split below.
      }
      items = text.slice(1, -1).split(/[\s,]+/);
    } else items = text.split(/[\s,]+/);
  } else items = [];
  const roles = items.filter((role): role is string => typeof role === 'string').map((role) => role.trim());
  return [...new Set(roles.filter((role) => role !== ''))];
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string' && value.trim() !== '') return value.trim();
  if (typeof value === 'number') return String(value);
  return undefined;
}

/** The caller the claims describe, or null when they name no project (then the request is 401). */
export function principalFromClaims(
  claims: Readonly<Record<string, unknown>> | undefined,
  names: ClaimNames,
): Principal | null {
  if (!claims) return null;
  const project = text(claims[names.project]);
  if (!project) return null;
  return makePrincipal(project, text(claims[names.user]) ?? '', parseRoles(claims[names.roles]));
}
