/**
 * Glance's property protections (roles format) through HTTP: a protection file given with
 * HANGAR_PROPERTY_PROTECTION_FILE, the personas' roles (admin: admin+member; alice: member) against
 * it, and files the backend must refuse to start with. Without a file nothing is protected; the
 * other images suites cover that.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { expectError, ImagesApi, type ImageView, peek } from '../helpers/images.ts';

const RULES = `
# Owners' own properties: members and admins do everything.
[^x_owner_]
create = admin,member
read = admin,member
update = admin,member
delete = admin,member

# Written by members, read (and changed) by admins only.
[^x_write_only_]
create = admin,member
read = admin
update = admin
delete = admin

# Set by members, then locked: everyone reads it, only admins change or remove it.
[^x_locked_]
create = admin,member
read = @
update = admin
delete = admin

# Admin-only.
[^x_admin_]
create = admin
read = admin
update = admin
delete = admin

# Readable by no one, admins included.
[^x_sealed_]
create = admin,member
read = !
update = !
delete = !

# Anyone, anything.
[^x_free_]
create = @
read = @
update = @
delete = @

# No catch-all section: any other extra property allows nothing to anyone.
`;

const dir = mkdtempSync(join(tmpdir(), 'hangar-protections-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function protectionFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

describe('start-up with an unusable protection file', () => {
  const FULL = 'create = @\nread = @\nupdate = @\ndelete = @\n';

  const cases: Array<[string, string, Record<string, string>, RegExp]> = [
    [
      'a section that is not a regular expression',
      `[x_(]\n${FULL}`,
      {},
      /line 1: \[x_\(\] is not a valid regular expression/,
    ],
    [
      'a section without delete',
      '[^x_]\ncreate = @\nread = @\nupdate = @\n',
      {},
      /line 1: \[\^x_\] has no 'delete'/,
    ],
    [
      'the policies rule format',
      `[^x_]\n${FULL}`,
      { HANGAR_PROPERTY_PROTECTION_RULE_FORMAT: 'policies' },
      /the 'policies' rule format is not supported/,
    ],
  ];

  it.each(cases)('refuses to start with %s', async (_case, text, env, message) => {
    const path = protectionFile(`${unique('bad')}.conf`, text);
    const starting = startTestBackend({ env: { HANGAR_PROPERTY_PROTECTION_FILE: path, ...env } });
    await expect(starting).rejects.toThrow(
      `Invalid property protections in HANGAR_PROPERTY_PROTECTION_FILE (${path})`,
    );
    await expect(starting).rejects.toThrow(message);
  });
});

describe('with a protection file', () => {
  let t: TestBackend;
  let api: ImagesApi;

  beforeAll(async () => {
    t = await startTestBackend({
      env: { HANGAR_PROPERTY_PROTECTION_FILE: protectionFile('protections.conf', RULES) },
    });
    api = new ImagesApi(t);
  });
  afterAll(async () => {
    await t?.stop();
  });

  async function listed(persona: Persona, name: string): Promise<ImageView[]> {
    return (await api.list(persona, `name=${name}`)).images;
  }

  function create(persona: Persona, body: object): Promise<Response> {
    return t.request('POST', '/v2/images', { token: t.tokens[persona], body });
  }

  async function patchOk(persona: Persona, id: string, body: unknown): Promise<ImageView> {
    const response = await api.patch(persona, id, body);
    expect(response.status, await peek(response)).toBe(200);
    return (await response.json()) as ImageView;
  }

  it('refuses to create an image with a property the caller may not create, and stores nothing', async () => {
    const name = unique('create-denied');

    await expectError(
      await create('alice', { name, x_owner_a: '1', x_admin_note: 'n' }),
      403,
      "Attribute 'x_admin_note' is reserved.",
    );

    expect(await listed('alice', name)).toEqual([]);
    expect(await listed('admin', name)).toEqual([]);
  });

  it('refuses a property no section matches to everyone, admins included', async () => {
    const name = unique('unmatched');

    for (const persona of ['alice', 'admin'] as const)
      await expectError(
        await create(persona, { name, os_distro: 'debian' }),
        403,
        "Attribute 'os_distro' is reserved.",
      );

    expect(await listed('admin', name)).toEqual([]);
  });

  it('hides a property from a caller who may not read it (create, show, list, patch), not from an admin', async () => {
    const name = unique('read-hidden');

    const created = await api.create('alice', { name, x_owner_a: '1', x_write_only_src: 'build-7' });
    expect(created).toHaveProperty('x_owner_a', '1');
    expect(created).not.toHaveProperty('x_write_only_src');

    const shown = await api.show('alice', created.id);
    expect(shown).not.toHaveProperty('x_write_only_src');
    expect(shown).toEqual(created);
    const [inList] = await listed('alice', name);
    expect(inList).toEqual(created);

    expect(await api.show('admin', created.id)).toMatchObject({
      x_owner_a: '1',
      x_write_only_src: 'build-7',
    });
    const [inAdminList] = await listed('admin', name);
    expect(inAdminList).toHaveProperty('x_write_only_src', 'build-7');

    // alice's own PATCH neither shows the property nor loses it.
    const patched = await patchOk('alice', created.id, [{ op: 'replace', path: '/x_owner_a', value: '2' }]);
    expect(patched).toHaveProperty('x_owner_a', '2');
    expect(patched).not.toHaveProperty('x_write_only_src');
    expect(await api.show('admin', created.id)).toMatchObject({
      x_owner_a: '2',
      x_write_only_src: 'build-7',
    });
  });

  it("hides a property nobody may read even from an admin, and from the reference API's image", async () => {
    const name = unique('sealed');

    const created = await api.createActive('admin', new Uint8Array(0), {
      name,
      x_sealed_key: 'k',
      x_free_a: '1',
    });
    expect(created).not.toHaveProperty('x_sealed_key');
    expect(created).toHaveProperty('x_free_a', '1');

    const reference = `${name}:latest`;
    const made = await t.request('POST', '/v1/references', {
      token: t.tokens.admin,
      body: { reference, image_id: created.id },
    });
    expect(made.status, await peek(made)).toBe(201);
    const resolved = await t.request('GET', `/v1/references/${reference}`, { token: t.tokens.admin });
    expect(resolved.status, await peek(resolved)).toBe(200);
    const { image } = (await resolved.json()) as { image: ImageView };
    expect(image.id).toBe(created.id);
    expect(image).toHaveProperty('x_free_a', '1');
    expect(image).not.toHaveProperty('x_sealed_key');
  });

  it('refuses to update a property without update rights (403) and leaves it unchanged', async () => {
    const image = await api.create('alice', { name: unique('locked'), x_locked_a: 'v1' });

    await expectError(
      await api.patch('alice', image.id, [{ op: 'replace', path: '/x_locked_a', value: 'v2' }]),
      403,
      "Attribute 'x_locked_a' is reserved.",
    );
    await expectError(
      await api.patch('alice', image.id, [{ op: 'add', path: '/x_locked_a', value: 'v2' }]),
      403,
      "Attribute 'x_locked_a' is reserved.",
    );
    await api.expectUnchanged(image);

    const byAdmin = await patchOk('admin', image.id, [{ op: 'replace', path: '/x_locked_a', value: 'v3' }]);
    expect(byAdmin).toHaveProperty('x_locked_a', 'v3');
  });

  it('refuses to delete a property without delete rights (403) and leaves it in place', async () => {
    const image = await api.create('alice', { name: unique('undeletable'), x_locked_a: 'v1' });

    await expectError(
      await api.patch('alice', image.id, [{ op: 'remove', path: '/x_locked_a' }]),
      403,
      "Attribute 'x_locked_a' is reserved.",
    );
    await api.expectUnchanged(image);

    const byAdmin = await patchOk('admin', image.id, [{ op: 'remove', path: '/x_locked_a' }]);
    expect(byAdmin).not.toHaveProperty('x_locked_a');
  });

  it('answers 409 to replacing or removing a property the caller cannot read, as Glance does', async () => {
    const image = await api.create('alice', { name: unique('unreadable'), x_write_only_src: 'build-7' });

    await expectError(
      await api.patch('alice', image.id, [{ op: 'replace', path: '/x_write_only_src', value: 'forged' }]),
      409,
      'Property x_write_only_src does not exist.',
    );
    await expectError(
      await api.patch('alice', image.id, [{ op: 'remove', path: '/x_write_only_src' }]),
      409,
      'Property x_write_only_src does not exist.',
    );

    expect(await api.show('admin', image.id)).toHaveProperty('x_write_only_src', 'build-7');
  });

  it('leaves unprotected properties and base attributes as they always were', async () => {
    const image = await api.create('alice', {
      name: unique('free'),
      disk_format: 'raw',
      container_format: 'bare',
      x_free_a: '1',
    });

    const patched = await patchOk('alice', image.id, [
      { op: 'replace', path: '/x_free_a', value: '2' },
      { op: 'add', path: '/x_free_b', value: '3' },
      { op: 'replace', path: '/name', value: 'renamed' },
      { op: 'replace', path: '/min_ram', value: 512 },
      { op: 'add', path: '/tags', value: ['t'] },
    ]);
    expect(patched).toMatchObject({
      x_free_a: '2',
      x_free_b: '3',
      name: 'renamed',
      min_ram: 512,
      tags: ['t'],
    });

    const trimmed = await patchOk('alice', image.id, [{ op: 'remove', path: '/x_free_a' }]);
    expect(trimmed).not.toHaveProperty('x_free_a');
    expect(await api.show('alice', image.id)).toEqual(trimmed);
  });
});
