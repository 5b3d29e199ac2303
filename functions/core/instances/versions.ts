/** Hypervisor versions: libvirt's integer encoding, and the predicates an image puts on it. */

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
