/**
 * Glance's property protections, `roles` format (glance/common/property_utils.py PropertyRules,
 * applied as glance/api/property_protections.py does): who may create, read, update and delete
 * each extra (custom) image property. Base attributes (name, visibility, ...) are never subject.
 *
 * The rules come from an INI file. Each section header is a regular expression, searched for
 * anywhere in the property name (Python's re.search, so anchor it with ^ and $ to match whole
 * names); the first section in file order that matches decides. Each section must give all four
 * operations, each a comma-separated list of roles: `@` is everyone, `!` no one, an empty list no
 * one either. Roles compare case-insensitively, and the admin role has no exemption: it is allowed
 * only where a rule lists it. With rules, a property no section matches allows nothing to anyone;
 * with no rules at all (no file, or a file without sections) everything is allowed.
 *
 * Section headers are compiled as JavaScript regular expressions, where Glance uses Python's re.
 * The common syntax means the same in both; escapes the two read differently (\A, \Z, unknown
 * letter escapes) are refused, and Python-only groups such as (?P<name>...) fail to compile.
 */

import { parseIni } from '../kernel/ini.ts';
import type { Principal } from '../kernel/principal.ts';
import { reservedError } from './validation.ts';

export const PROPERTY_OPERATIONS = ['create', 'read', 'update', 'delete'] as const;
export type PropertyOperation = (typeof PROPERTY_OPERATIONS)[number];

/** Which of an image's extra properties a caller may see. */
export type PropertyFilter = (key: string) => boolean;

/** Every property visible: for callers that are not subject to protections (and tests). */
export const EVERY_PROPERTY: PropertyFilter = () => true;

/** Glance's property_protection_rule_format values; Hangar has no policy engine for `policies`. */
export const RULE_FORMATS = ['roles', 'policies'] as const;

/** A protection file (or text) that cannot be used: the service must not start with it. */
export class InvalidPropertyProtections extends Error {
  override name = 'InvalidPropertyProtections';
}

type Grant =
  | { readonly kind: 'everyone' }
  | { readonly kind: 'nobody' }
  | { readonly kind: 'roles'; readonly roles: ReadonlySet<string> };

interface Rule {
  /** The section header as written. */
  readonly pattern: string;
  readonly regex: RegExp;
  readonly grants: Readonly<Record<PropertyOperation, Grant>>;
}

export class PropertyProtections {
  /** No rules: every operation on every property is allowed (protections off). */
  static readonly NONE = new PropertyProtections([]);

  private constructor(private readonly rules: readonly Rule[]) {}

  /** Builds the rules of a `roles`-format file. Throws InvalidPropertyProtections. */
  static parse(text: string, format = 'roles'): PropertyProtections {
    if (format === 'policies')
      throw new InvalidPropertyProtections(
        "the 'policies' rule format is not supported (Hangar has no policy engine): use 'roles'",
      );
    if (format !== 'roles')
      throw new InvalidPropertyProtections(
        `invalid rule format '${format}': the permitted values are ${RULE_FORMATS.map((f) => `'${f}'`).join(' and ')}`,
      );
    let document: ReturnType<typeof parseIni>;
    try {
      document = parseIni(text);
    } catch (error) {
      throw new InvalidPropertyProtections(error instanceof Error ? error.message : String(error), {
        cause: error,
      });
    }
    const rules = document.sections.map(({ name, line, entries }): Rule => {
      const where = `line ${line}: [${name}]`;
      const grants = {} as Record<PropertyOperation, Grant>;
      for (const operation of PROPERTY_OPERATIONS) {
        const value = entries.get(operation) ?? document.defaults.get(operation);
        if (value === undefined)
          throw new InvalidPropertyProtections(
            `${where} has no '${operation}' (every section needs create, read, update and delete)`,
          );
        grants[operation] = parseGrant(value, `${where} ${operation}`);
      }
      return { pattern: name, regex: compilePattern(name, where), grants };
    });
    return new PropertyProtections(rules);
  }

  /** Whether there are rules at all (without any, everything is allowed). */
  get enabled(): boolean {
    return this.rules.length > 0;
  }

  /** Glance's check_property_rules. */
  allows(principal: Pick<Principal, 'roles'>, key: string, operation: PropertyOperation): boolean {
    if (this.rules.length === 0) return true;
    const rule = this.rules.find((candidate) => candidate.regex.test(key));
    if (!rule) return false;
    const grant = rule.grants[operation];
    if (grant.kind === 'everyone') return true;
    if (grant.kind === 'nobody') return false;
    return principal.roles.some((role) => grant.roles.has(role.toLowerCase()));
  }

  /** Throws Glance's 403 (ReservedProperty) when `operation` on `key` is not allowed. */
  enforce(principal: Pick<Principal, 'roles'>, key: string, operation: PropertyOperation): void {
    if (!this.allows(principal, key, operation)) throw reservedError(key);
  }

  /** What `principal` may read, remembered per key (a list repeats the same keys). */
  readableBy(principal: Pick<Principal, 'roles'>): PropertyFilter {
    if (this.rules.length === 0) return EVERY_PROPERTY;
    const known = new Map<string, boolean>();
    return (key) => {
      let readable = known.get(key);
      if (readable === undefined) {
        readable = this.allows(principal, key, 'read');
        known.set(key, readable);
      }
      return readable;
    };
  }
}

function parseGrant(value: string, where: string): Grant {
  // Glance: an empty value lets no one (and logs a warning); otherwise a comma-separated list.
  if (value === '') return { kind: 'nobody' };
  const roles = value.split(',').map((role) => role.trim());
  if (roles.includes('@') && roles.includes('!'))
    throw new InvalidPropertyProtections(`${where} = ${value}: '@' and '!' are mutually exclusive`);
  if (roles.includes('!')) return { kind: 'nobody' };
  if (roles.includes('@')) return { kind: 'everyone' };
  return { kind: 'roles', roles: new Set(roles.map((role) => role.toLowerCase())) };
}

/** Letter escapes that mean the same in Python's re and in a JavaScript RegExp (without flags). */
const PORTABLE_LETTER_ESCAPES = new Set('bBdDfnrsStvwWxu');

function compilePattern(pattern: string, where: string): RegExp {
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] !== '\\') continue;
    const next = pattern[i + 1] ?? '';
    if (/[A-Za-z]/.test(next) && !PORTABLE_LETTER_ESCAPES.has(next))
      throw new InvalidPropertyProtections(
        `${where}: the escape \\${next} is not supported (Python and JavaScript read it differently; use ^ and $ for anchors)`,
      );
    i++;
  }
  try {
    // No flags: a flagless RegExp keeps no state between test() calls.
    return new RegExp(pattern);
  } catch (error) {
    throw new InvalidPropertyProtections(
      `${where} is not a valid regular expression: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}
