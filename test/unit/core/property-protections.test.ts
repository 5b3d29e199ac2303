import { describe, expect, it } from 'vitest';
import { parseCreateRequest } from '#core/images/create';
import type { ImageRecord } from '#core/images/image';
import { applyPatch } from '#core/images/patch';
import {
  EVERY_PROPERTY,
  InvalidPropertyProtections,
  type PropertyOperation,
  PropertyProtections,
} from '#core/images/property-protections';
import { makePrincipal, type Principal } from '#core/kernel/principal';
import { errorOf, LATER, makeImage, NOW, QUOTAS } from './fixtures.ts';

/** Modelled on the roles file of Glance's functional tests (glance/tests/functional/__init__.py). */
const RULES = `
# Glance's sample: owners' properties first, then everything else for admins only.
[^x_owner_.*]
create = admin,member
read = admin,member
update = admin,member
delete = admin,member

[^x_all_permitted.*]
create = @
read = @
update = @
delete = @

[^x_none_permitted.*]
create = !
read = !
update = !
delete = !

[x_none_read]
create = admin,member
read = !
update = !
delete = !

[x_none_update]
create = admin,member
read = admin,member
update = !
delete = admin,member

[x_none_delete]
create = admin,member
read = admin,member
update = admin,member
delete = !

[x_case_insensitive]
create = admin,Member
read = admin,Member
update = admin,Member
delete = admin,Member

[x_empty_update]
create = admin,member
read = admin,member
update =
delete = admin,member

[^admin_only_]
create = admin
read = admin
update = admin
delete = admin
`;

const rules = PropertyProtections.parse(RULES);
const member = makePrincipal('projA', 'alice', ['member']);
const adminOnly = makePrincipal('admin-project', 'root', ['admin']);
const joeSoap = makePrincipal('projB', 'joe', ['joe_soap']);
const nobody = makePrincipal('projC', 'anon', []);

function invalid(text: string, format?: string): string {
  try {
    PropertyProtections.parse(text, format);
  } catch (error) {
    if (error instanceof InvalidPropertyProtections) return error.message;
    throw error;
  }
  throw new Error('expected InvalidPropertyProtections');
}

const ALL: PropertyOperation[] = ['create', 'read', 'update', 'delete'];
const allowed = (principal: Principal, key: string, protections = rules) =>
  ALL.filter((op) => protections.allows(principal, key, op));

describe('PropertyProtections.parse and allows', () => {
  it('lets the roles a section lists do what it lists them for', () => {
    // Act
    const forMember = allowed(member, 'x_owner_foo');
    const forStranger = allowed(joeSoap, 'x_owner_foo');

    // Assess
    expect(forMember).toEqual(ALL);
    expect(forStranger).toEqual([]);
  });

  it("lets everyone do what '@' allows, whatever their roles, and no one what '!' forbids", () => {
    // Act
    const everyone = [member, adminOnly, joeSoap, nobody].map((p) => allowed(p, 'x_all_permitted_a'));
    const noOne = [member, adminOnly, joeSoap, nobody].map((p) => allowed(p, 'x_none_permitted_a'));

    // Assess
    expect(everyone).toEqual([ALL, ALL, ALL, ALL]);
    expect(noOne).toEqual([[], [], [], []]);
  });

  it('lets no one do an operation whose role list is empty', () => {
    // Act
    const result = [member, adminOnly].map((p) => rules.allows(p, 'x_empty_update', 'update'));

    // Assess
    expect(result).toEqual([false, false]);
    expect(allowed(member, 'x_empty_update')).toEqual(['create', 'read', 'delete']);
  });

  it('gives the admin role no exemption: only what the rules list it for', () => {
    // Act
    const ownerProperty = allowed(adminOnly, 'x_owner_foo');
    const readLocked = allowed(adminOnly, 'x_none_read');

    // Assess
    expect(ownerProperty).toEqual(ALL);
    expect(readLocked).toEqual(['create']);
  });

  it('compares roles without regard to case', () => {
    // Act
    const lower = rules.allows(member, 'x_case_insensitive', 'read');
    const upper = rules.allows(makePrincipal('p', 'u', ['MEMBER']), 'x_owner_x', 'read');

    // Assess
    expect(lower).toBe(true);
    expect(upper).toBe(true);
  });

  it('allows nothing to anyone for a property no section matches', () => {
    // Act
    const result = [member, adminOnly].map((p) => allowed(p, 'os_distro'));

    // Assess
    expect(result).toEqual([[], []]);
  });

  it('searches the section pattern anywhere in the name, as Python re.search does', () => {
    // Prepare: unanchored, so "x_none_read" also covers "a_x_none_read_b".
    const key = 'a_x_none_read_b';

    // Act
    const result = allowed(member, key);

    // Assess
    expect(result).toEqual(['create']);
    expect(allowed(member, 'y_x_owner_foo')).toEqual([]);
  });

  it('takes the first section that matches, in file order', () => {
    // Prepare
    const catchAllFirst = PropertyProtections.parse(
      '[.*]\ncreate = admin\nread = admin\nupdate = admin\ndelete = admin\n' +
        '[^x_owner_]\ncreate = @\nread = @\nupdate = @\ndelete = @\n',
    );

    // Act
    const result = allowed(member, 'x_owner_foo', catchAllFirst);

    // Assess
    expect(result).toEqual([]);
    expect(allowed(adminOnly, 'x_owner_foo', catchAllFirst)).toEqual(ALL);
  });

  it('allows everything when there are no rules: no file, or a file without sections', () => {
    // Prepare
    const empty = PropertyProtections.parse('# nothing protected yet\n');

    // Act
    const result = [PropertyProtections.NONE, empty].map((p) => allowed(nobody, 'any', p));

    // Assess
    expect(result).toEqual([ALL, ALL]);
    expect(empty.enabled).toBe(false);
    expect(rules.enabled).toBe(true);
    expect(PropertyProtections.NONE.readableBy(nobody)).toBe(EVERY_PROPERTY);
  });

  it('fills operations a section leaves out from [DEFAULT]', () => {
    // Prepare
    const withDefaults = PropertyProtections.parse(
      '[DEFAULT]\nupdate = admin\ndelete = admin\n[^x_]\ncreate = @\nread = @\n[^y_]\ncreate = !\nread = !\nupdate = @\ndelete = @\n',
    );

    // Act
    const x = allowed(member, 'x_a', withDefaults);
    const y = allowed(member, 'y_a', withDefaults);

    // Assess
    expect(x).toEqual(['create', 'read']);
    expect(y).toEqual(['update', 'delete']);
  });

  it("throws Glance's 403 from enforce, and a remembered read filter from readableBy", () => {
    // Act
    const refused = errorOf(() => rules.enforce(member, 'admin_only_flag', 'create'));
    const readable = rules.readableBy(member);

    // Assess
    expect(refused).toEqual({ kind: 'forbidden', message: "Attribute 'admin_only_flag' is reserved." });
    expect(['x_owner_a', 'x_none_read', 'admin_only_flag', 'x_owner_a'].map(readable)).toEqual([
      true,
      false,
      false,
      true,
    ]);
  });
});

describe('PropertyProtections.parse: files the service must not start with', () => {
  const FULL = 'create = @\nread = @\nupdate = @\ndelete = @\n';

  it('refuses a section header that is not a regular expression', () => {
    // Act
    const message = invalid(`[x_(]\n${FULL}`);

    // Assess
    expect(message).toMatch(/^line 1: \[x_\(\] is not a valid regular expression: /);
  });

  it.each([
    ['\\A', '[\\Ax_]'],
    ['\\Z', '[x_\\Z]'],
    ['\\q', '[x_\\q]'],
  ])('refuses %s, which Python and JavaScript read differently', (sequence, header) => {
    // Act
    const message = invalid(`${header}\n${FULL}`);

    // Assess
    expect(message).toContain(`the escape ${sequence} is not supported`);
  });

  it('refuses Python-only syntax such as (?P<name>...)', () => {
    // Act
    const message = invalid(`[(?P<prefix>x_).*]\n${FULL}`);

    // Assess
    expect(message).toMatch(/is not a valid regular expression/);
  });

  it('accepts the escapes both languages read the same way', () => {
    // Prepare
    const protections = PropertyProtections.parse(`[^hw_\\w+\\.\\d$]\n${FULL}`);

    // Act
    const result = [
      protections.allows(nobody, 'hw_disk.1', 'read'),
      protections.allows(nobody, 'hw_.1', 'read'),
    ];

    // Assess
    expect(result).toEqual([true, false]);
  });

  it.each(['create', 'read', 'update', 'delete'])('refuses a section without %s', (operation) => {
    // Prepare
    const text = `[x_]\n${FULL.split('\n')
      .filter((line) => !line.startsWith(operation))
      .join('\n')}`;

    // Act
    const message = invalid(text);

    // Assess
    expect(message).toBe(
      `line 1: [x_] has no '${operation}' (every section needs create, read, update and delete)`,
    );
  });

  it('refuses a misspelt operation, since the real one is then missing', () => {
    // Act
    const message = invalid('[x_]\ncraete = @\nread = @\nupdate = @\ndelete = @\n');

    // Assess
    expect(message).toMatch(/has no 'create'/);
  });

  it("refuses '@' and '!' in the same list", () => {
    // Act
    const message = invalid('[x_]\ncreate = @,!\nread = @\nupdate = @\ndelete = @\n');

    // Assess
    expect(message).toBe("line 1: [x_] create = @,!: '@' and '!' are mutually exclusive");
  });

  it('refuses INI syntax errors with their line', () => {
    // Act
    const message = invalid('[x_]\ncreate @\n');

    // Assess
    expect(message).toBe("line 2: expected 'key = value': create @");
  });

  it.each([
    ['policies', /'policies' rule format is not supported/],
    ['Roles', /invalid rule format 'Roles': the permitted values are 'roles' and 'policies'/],
    ['acl', /invalid rule format 'acl'/],
  ])('refuses the rule format %s', (format, message) => {
    // Act
    const text = invalid(`[x_]\n${FULL}`, format);

    // Assess
    expect(text).toMatch(message);
  });
});

describe('parseCreateRequest with property protections', () => {
  const create = (body: object, principal: Principal = member) =>
    parseCreateRequest(body, principal, QUOTAS, NOW, rules);

  it('refuses an extra property the caller may not create (403, first refused key in body order)', () => {
    // Act
    const error = errorOf(() => create({ name: 'n', x_owner_a: '1', admin_only_x: '2', os_distro: '3' }));

    // Assess
    expect(error).toEqual({ kind: 'forbidden', message: "Attribute 'admin_only_x' is reserved." });
  });

  it('refuses a property that no section matches, even to an admin', () => {
    // Act
    const error = errorOf(() => create({ os_distro: 'debian' }, adminOnly));

    // Assess
    expect(error).toEqual({ kind: 'forbidden', message: "Attribute 'os_distro' is reserved." });
  });

  it('keeps the properties the caller may create, readable or not', () => {
    // Act
    const image = create({ x_owner_a: '1', x_none_read: '2' });

    // Assess
    expect(image.properties).toEqual({ x_owner_a: '1', x_none_read: '2' });
  });

  it('never checks base attributes', () => {
    // Prepare: no section matches name, visibility, tags and the rest.
    const body = {
      name: 'n',
      disk_format: 'raw',
      container_format: 'bare',
      visibility: 'private',
      protected: true,
      min_ram: 1,
      min_disk: 1,
      tags: ['t'],
      os_hidden: true,
    };

    // Act
    const image = create(body);

    // Assess
    expect(image).toMatchObject({ name: 'n', visibility: 'private', tags: ['t'], properties: {} });
  });
});

describe('applyPatch with property protections', () => {
  const V20 = 'application/openstack-images-v2.0-json-patch';
  const V21 = 'application/openstack-images-v2.1-json-patch';
  const image = makeImage({
    properties: { x_owner_a: 'o', x_none_read: 'r', x_none_update: 'u', x_none_delete: 'd' },
  });
  const patch = (body: unknown, principal: Principal = member, from: ImageRecord = image, mediaType = V21) =>
    applyPatch(from, mediaType, body, principal, QUOTAS, LATER, rules);

  it('replaces, adds and removes properties the caller has the rights for', () => {
    // Act
    const next = patch([
      { op: 'replace', path: '/x_owner_a', value: 'o2' },
      { op: 'add', path: '/x_owner_b', value: 'b' },
      { op: 'remove', path: '/x_none_update' },
    ]);

    // Assess
    expect(next.properties).toEqual({
      x_owner_a: 'o2',
      x_owner_b: 'b',
      x_none_read: 'r',
      x_none_delete: 'd',
    });
  });

  it.each([
    ['replace without update', [{ op: 'replace', path: '/x_none_update', value: 'v' }], 'x_none_update'],
    [
      'add over a readable property without update',
      [{ op: 'add', path: '/x_none_update', value: 'v' }],
      'x_none_update',
    ],
    ['remove without delete', [{ op: 'remove', path: '/x_none_delete' }], 'x_none_delete'],
    [
      'add of a new property without create',
      [{ op: 'add', path: '/admin_only_a', value: 'v' }],
      'admin_only_a',
    ],
    ['add of a property no section matches', [{ op: 'add', path: '/os_distro', value: 'v' }], 'os_distro'],
  ])('refuses %s with 403', (_case, body, key) => {
    // Act
    const error = errorOf(() => patch(body));

    // Assess
    expect(error).toEqual({ kind: 'forbidden', message: `Attribute '${key}' is reserved.` });
  });

  it('treats a property the caller cannot read as absent: replace and remove are 409', () => {
    // Act
    const replaced = errorOf(() => patch([{ op: 'replace', path: '/x_none_update', value: 'v' }], joeSoap));
    const removed = errorOf(() => patch([{ op: 'remove', path: '/x_none_delete' }], joeSoap));
    const unreadable = errorOf(() => patch([{ op: 'remove', path: '/x_none_read' }]));

    // Assess
    expect(replaced).toEqual({ kind: 'conflict', message: 'Property x_none_update does not exist.' });
    expect(removed).toEqual({ kind: 'conflict', message: 'Property x_none_delete does not exist.' });
    expect(unreadable).toEqual({ kind: 'conflict', message: 'Property x_none_read does not exist.' });
  });

  it('checks an add over an unreadable property against create, as Glance does', () => {
    // Act: member may create x_none_read but not read it, so the add is a create (no v2.0 409 either).
    const v21 = patch([{ op: 'add', path: '/x_none_read', value: 'new' }]);
    const v20 = patch([{ add: '/x_none_read', value: 'newer' }], member, image, V20);
    const refused = errorOf(() => patch([{ op: 'add', path: '/x_none_read', value: 'x' }], joeSoap));

    // Assess
    expect(v21.properties.x_none_read).toBe('new');
    expect(v20.properties.x_none_read).toBe('newer');
    expect(refused).toEqual({ kind: 'forbidden', message: "Attribute 'x_none_read' is reserved." });
  });

  it('keeps the properties the caller cannot see when it changes others', () => {
    // Act
    const next = patch([{ op: 'replace', path: '/name', value: 'renamed' }], joeSoap);

    // Assess
    expect(next.name).toBe('renamed');
    expect(next.properties).toEqual(image.properties);
  });

  it('never checks base attributes', () => {
    // Act
    const next = patch(
      [
        { op: 'replace', path: '/name', value: 'n' },
        { op: 'replace', path: '/min_ram', value: 512 },
        { op: 'add', path: '/tags', value: ['a'] },
      ],
      nobody,
    );

    // Assess
    expect(next).toMatchObject({ name: 'n', min_ram: 512, tags: ['a'] });
  });

  it('changes nothing when protections are off', () => {
    // Act
    const next = applyPatch(
      image,
      V21,
      [{ op: 'remove', path: '/x_none_read' }],
      nobody,
      QUOTAS,
      LATER,
      PropertyProtections.NONE,
    );

    // Assess
    expect(next.properties).not.toHaveProperty('x_none_read');
  });
});
