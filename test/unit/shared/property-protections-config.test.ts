import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PropertyProtections } from '#core/images/property-protections';
import { makePrincipal } from '#core/kernel/principal';
import { loadPropertyProtections, resetServiceConfig, serviceConfig } from '#platform/config';

const RULES = '[^x_]\ncreate = member\nread = @\nupdate = member\ndelete = !\n';
const member = makePrincipal('projA', 'alice', ['member']);
const dir = mkdtempSync(join(tmpdir(), 'hangar-protections-'));
const VARIABLES = [
  'HANGAR_PROPERTY_PROTECTION_FILE',
  'HANGAR_PROPERTY_PROTECTIONS',
  'HANGAR_PROPERTY_PROTECTION_RULE_FORMAT',
] as const;
const saved = Object.fromEntries(VARIABLES.map((name) => [name, process.env[name]]));

afterEach(() => {
  for (const name of VARIABLES) {
    const value = saved[name];
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  resetServiceConfig();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('loadPropertyProtections', () => {
  it('has no protections when neither setting is given (or both are empty)', () => {
    // Act
    const none = [loadPropertyProtections({}), loadPropertyProtections({ file: '', text: '' })];

    // Assess
    expect(none).toEqual([PropertyProtections.NONE, PropertyProtections.NONE]);
  });

  it('reads the rules from a file, or from the text itself', () => {
    // Act
    const fromFile = loadPropertyProtections({ file: file('ok.conf', RULES) });
    const fromText = loadPropertyProtections({ text: RULES });

    // Assess
    for (const protections of [fromFile, fromText]) {
      expect(protections.allows(member, 'x_a', 'create')).toBe(true);
      expect(protections.allows(member, 'x_a', 'delete')).toBe(false);
    }
  });

  it('names the setting and the problem when the rules are unusable', () => {
    // Prepare
    const path = file('bad.conf', '[x_(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n');

    // Act / Assess
    expect(() => loadPropertyProtections({ file: path })).toThrow(
      `Invalid property protections in HANGAR_PROPERTY_PROTECTION_FILE (${path}): line 1: [x_(] is not a valid regular expression`,
    );
    expect(() => loadPropertyProtections({ text: '[x_]\ncreate = @\n' })).toThrow(
      "Invalid property protections in HANGAR_PROPERTY_PROTECTIONS: line 1: [x_] has no 'read'",
    );
    expect(() => loadPropertyProtections({ text: RULES, format: 'policies' })).toThrow(
      /HANGAR_PROPERTY_PROTECTIONS: the 'policies' rule format is not supported/,
    );
  });

  it('refuses a file it cannot read, and both settings at once', () => {
    // Act / Assess
    expect(() => loadPropertyProtections({ file: join(dir, 'missing.conf') })).toThrow(
      /HANGAR_PROPERTY_PROTECTION_FILE \(.*missing\.conf\): cannot read the file: ENOENT/,
    );
    expect(() => loadPropertyProtections({ file: file('both.conf', RULES), text: RULES })).toThrow(
      'Set HANGAR_PROPERTY_PROTECTION_FILE or HANGAR_PROPERTY_PROTECTIONS, not both.',
    );
  });
});

describe('serviceConfig().propertyProtections', () => {
  it('comes from HANGAR_PROPERTY_PROTECTIONS', () => {
    // Prepare
    process.env.HANGAR_PROPERTY_PROTECTIONS = RULES;
    resetServiceConfig();

    // Act
    const protections = serviceConfig().propertyProtections;

    // Assess
    expect(protections.enabled).toBe(true);
    expect(protections.allows(member, 'y_unmatched', 'read')).toBe(false);
  });

  it('fails when the configuration is read, not later', () => {
    // Prepare
    process.env.HANGAR_PROPERTY_PROTECTION_FILE = file('missing-op.conf', '[x_]\ncreate = @\n');
    resetServiceConfig();

    // Act / Assess
    expect(() => serviceConfig()).toThrow(/has no 'read'/);
  });
});
