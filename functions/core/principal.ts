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

export function makePrincipal(project: string, user: string, roles: readonly string[]): Principal {
  return { project, user, roles, isAdmin: roles.includes('admin') };
}
