import { describe, expect, it } from 'vitest';
import { parseCreateRequest } from '#core/images/create';
import { admin, alice, errorOf, NOW, QUOTAS } from './fixtures.ts';

const SCHEMA = "Provided object does not match schema 'image': ";
const UUID_PATTERN =
  '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$';

const create = (body: unknown, principal = alice, quotas = QUOTAS) =>
  parseCreateRequest(body, principal, quotas, NOW);

describe('parseCreateRequest', () => {
  describe('accepted bodies', () => {
    it('builds a queued record with Glance defaults from an empty body', () => {
      // Prepare
      const body = {};

      // Act
      const image = create(body);

      // Assess
      expect(image).toEqual({
        id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
        name: null,
        status: 'queued',
        visibility: 'shared',
        protected: false,
        os_hidden: false,
        checksum: null,
        os_hash_algo: null,
        os_hash_value: null,
        owner: 'projA',
        size: null,
        virtual_size: null,
        min_ram: 0,
        min_disk: 0,
        container_format: null,
        disk_format: null,
        created_at: '2026-11-22T02:11:29Z',
        updated_at: '2026-11-22T02:11:29Z',
        tags: [],
        properties: {},
        version: 1,
        blob_key: null,
      });
    });

    it('gives every create a fresh id', () => {
      // Act
      const first = create({});
      const second = create({});

      // Assess
      expect(first.id).not.toBe(second.id);
    });

    it('takes base attributes, tags and extra properties from a full body', () => {
      // Prepare
      const body = {
        name: 'probe-1',
        disk_format: 'raw',
        container_format: 'bare',
        tags: ['t1', 't2'],
        min_disk: 1,
        min_ram: 128,
        visibility: 'private',
        protected: true,
        os_hidden: true,
        custom_prop: 'v1',
        os_distro: 'debian',
      };

      // Act
      const image = create(body);

      // Assess
      expect(image).toMatchObject({
        name: 'probe-1',
        disk_format: 'raw',
        container_format: 'bare',
        tags: ['t1', 't2'],
        min_disk: 1,
        min_ram: 128,
        visibility: 'private',
        protected: true,
        os_hidden: true,
        owner: 'projA',
        properties: { custom_prop: 'v1', os_distro: 'debian' },
      });
    });

    it('keeps a client-chosen id', () => {
      // Act
      const image = create({ id: 'aaaaaaaa-bbbb-cccc-dddd-000000000001', name: 'fixed-id' });

      // Assess
      expect(image.id).toBe('aaaaaaaa-bbbb-cccc-dddd-000000000001');
      expect(image.name).toBe('fixed-id');
    });

    it('collapses duplicate tags', () => {
      // Act
      const image = create({ name: 'duptags', tags: ['a', 'a', 'b'] });

      // Assess
      expect(image.tags).toEqual(['a', 'b']);
    });

    it('accepts explicit nulls for nullable attributes', () => {
      // Act
      const image = create({ name: null, disk_format: null, container_format: null });

      // Assess
      expect(image).toMatchObject({ name: null, disk_format: null, container_format: null });
    });

    it('accepts a 255-character name and community visibility from a member', () => {
      // Act
      const image = create({ name: 'n'.repeat(255), visibility: 'community' });

      // Assess
      expect(image.name).toHaveLength(255);
      expect(image.visibility).toBe('community');
    });

    it('lets a member name its own project as owner', () => {
      // Act
      const image = create({ owner: 'projA' });

      // Assess
      expect(image.owner).toBe('projA');
    });

    it('lets an admin create a public image owned by another project, or by nobody', () => {
      // Act
      const owned = create({ visibility: 'public', owner: 'projB' }, admin);
      const ownerless = create({ owner: null }, admin);

      // Assess
      expect(owned).toMatchObject({ visibility: 'public', owner: 'projB' });
      expect(ownerless.owner).toBeNull();
    });

    it('accepts well-formed values for the extra properties the schema describes', () => {
      // Act
      const image = create({
        kernel_id: 'aaaaaaaa-bbbb-cccc-dddd-000000000001',
        cinder_encryption_key_deletion_policy: 'do_not_delete',
      });

      // Assess
      expect(image.properties).toEqual({
        kernel_id: 'aaaaaaaa-bbbb-cccc-dddd-000000000001',
        cinder_encryption_key_deletion_policy: 'do_not_delete',
      });
    });

    it('keeps a "__proto__" extra property as plain data', () => {
      // Prepare
      const body = JSON.parse('{"__proto__": "x", "a": "b"}');

      // Act
      const image = create(body);

      // Assess
      expect(Object.hasOwn(image.properties, '__proto__')).toBe(true);
      expect(Object.keys(image.properties)).toEqual(['__proto__', 'a']);
      expect(Object.getPrototypeOf(image.properties)).toBe(Object.prototype);
    });

    it('accepts exactly as many properties and tags as the quotas allow', () => {
      // Act
      const image = create({ a: '1', b: '2', tags: ['x', 'y', 'x'] }, alice, { properties: 2, tags: 2 });

      // Assess
      expect(Object.keys(image.properties)).toHaveLength(2);
      expect(image.tags).toEqual(['x', 'y']);
    });

    it('treats a negative quota as unlimited', () => {
      // Act
      const image = create({ a: '1', b: '2', tags: ['x', 'y'] }, alice, { properties: -1, tags: -1 });

      // Assess
      expect(image.tags).toHaveLength(2);
    });
  });

  describe('refused bodies', () => {
    it.each([
      ['an array', [1], `${SCHEMA}[1] is not of type 'object'`],
      ['null', null, `${SCHEMA}None is not of type 'object'`],
      ['a string', 'x', `${SCHEMA}'x' is not of type 'object'`],
      ['a number', 5, `${SCHEMA}5 is not of type 'object'`],
    ])('answers 400 (not 500 like Glance) to %s', (_label, body, message) => {
      // Act
      const error = errorOf(() => create(body));

      // Assess
      expect(error).toEqual({ kind: 'bad_request', message });
    });

    it.each([
      [{ id: 'not-a-uuid' }, `'not-a-uuid' does not match '${UUID_PATTERN}'`],
      [{ id: 5 }, "5 is not of type 'string'"],
      [
        { disk_format: 'bogus' },
        "'bogus' is not one of [None, 'ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop']",
      ],
      [
        { container_format: 'bogus' },
        "'bogus' is not one of [None, 'ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed']",
      ],
      [{ disk_format: 5 }, "5 is not of type 'null', 'string'"],
      [{ visibility: 'bogus' }, "'bogus' is not one of ['community', 'public', 'private', 'shared']"],
      [{ visibility: 5 }, "5 is not of type 'string'"],
      [{ name: 'n'.repeat(256) }, `'${'n'.repeat(256)}' is too long`],
      [{ name: 5 }, "5 is not of type 'null', 'string'"],
      [{ min_ram: 'abc' }, "'abc' is not of type 'integer'"],
      [{ min_disk: 1.5 }, "1.5 is not of type 'integer'"],
      [{ min_ram: true }, "True is not of type 'integer'"],
      [{ protected: 'yes' }, "'yes' is not of type 'boolean'"],
      [{ os_hidden: null }, "None is not of type 'boolean'"],
      [{ tags: 'abc' }, "'abc' is not of type 'array'"],
      [{ tags: ['ok', 5] }, "5 is not of type 'string'"],
      [{ tags: ['x'.repeat(256)] }, `'${'x'.repeat(256)}' is too long`],
      [{ owner: 'o'.repeat(256) }, `'${'o'.repeat(256)}' is too long`],
      [{ custom: 5 }, "5 is not of type 'string'"],
      [{ custom: null }, "None is not of type 'string'"],
      [{ custom: ["it's"] }, `["it's"] is not of type 'string'`],
      [{ custom: { a: false } }, "{'a': False} is not of type 'string'"],
      [{ kernel_id: 'nope' }, `'nope' does not match '${UUID_PATTERN}'`],
      [{ ramdisk_id: null }, "None is not of type 'string'"],
      [
        { cinder_encryption_key_deletion_policy: 'bogus' },
        "'bogus' is not one of ['on_image_deletion', 'do_not_delete']",
      ],
      [
        { status: 'bogus' },
        "'bogus' is not one of ['queued', 'saving', 'active', 'killed', 'deleted', 'uploading', 'importing', 'pending_delete', 'deactivated']",
      ],
      [{ locations: 'x' }, "'x' is not of type 'array'"],
    ])('answers a schema 400 to %j', (body, detail) => {
      // Act
      const error = errorOf(() => create(body));

      // Assess
      expect(error).toEqual({ kind: 'bad_request', message: `${SCHEMA}${detail}` });
    });

    it.each([
      ['min_ram', -1],
      ['min_disk', -5],
    ])('answers 400 to a negative %s', (key, value) => {
      // Act
      const error = errorOf(() => create({ name: 'x', [key]: value }));

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: `Invalid value '${value}' for parameter '${key}': Cannot be a negative value`,
      });
    });

    it('answers 400 to a custom property name longer than 255 characters', () => {
      // Act
      const error = errorOf(() => create({ ['k'.repeat(256)]: 'v' }));

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: 'Custom property should not be greater than 255 characters.',
      });
    });

    it.each([
      'status',
      'checksum',
      'created_at',
      'updated_at',
      'size',
      'virtual_size',
      'os_hash_algo',
      'os_hash_value',
    ])('answers 403 to the read-only attribute %s', (key) => {
      // Prepare
      const values: Record<string, unknown> = {
        status: 'active',
        checksum: 'abc',
        created_at: '2020-01-01T00:00:00Z',
        updated_at: '2020-01-01T00:00:00Z',
        size: 5,
        virtual_size: 5,
        os_hash_algo: 'sha512',
        os_hash_value: 'ab',
      };

      // Act
      const error = errorOf(() => create({ name: 'x', [key]: values[key] }));

      // Assess
      expect(error).toEqual({ kind: 'forbidden', message: `Attribute '${key}' is read-only.` });
    });

    it.each(['direct_url', 'self', 'file', 'schema', 'stores'])(
      'answers 403 to the disallowed attribute %s',
      (key) => {
        // Act
        const error = errorOf(() => create({ [key]: 'x' }));

        // Assess
        expect(error).toEqual({ kind: 'forbidden', message: `Attribute '${key}' is read-only.` });
      },
    );

    it.each(['os_glance_foo', 'os_glance_import_task', 'location', 'deleted', 'deleted_at'])(
      'answers 403 to the reserved property %s',
      (key) => {
        // Act
        const error = errorOf(() => create({ name: 'x', [key]: 'bar' }));

        // Assess
        expect(error).toEqual({ kind: 'forbidden', message: `Attribute '${key}' is reserved.` });
      },
    );

    it('answers 403 to locations, which Hangar does not support', () => {
      // Act
      const error = errorOf(() => create({ name: 'x', locations: [] }));

      // Assess
      expect(error).toEqual({ kind: 'forbidden', message: "Attribute 'locations' is reserved." });
    });

    it('answers 403 when a member asks for a public image', () => {
      // Act
      const error = errorOf(() => create({ name: 'pub-by-alice', visibility: 'public' }));

      // Assess
      expect(error).toEqual({
        kind: 'forbidden',
        message: 'You are not authorized to complete publicize_image action.',
      });
    });

    it.each([
      ['projB', "You are not permitted to create images owned by 'projB'."],
      [null, "You are not permitted to create images owned by 'None'."],
    ])('answers 403 when a member sets owner to %s', (owner, message) => {
      // Act
      const error = errorOf(() => create({ owner }));

      // Assess
      expect(error).toEqual({ kind: 'forbidden', message });
    });

    it('answers 413 when the extra properties exceed the property quota', () => {
      // Act
      const error = errorOf(() => create({ a: '1', b: '2', c: '3' }, alice, { properties: 2, tags: 128 }));

      // Assess
      expect(error).toEqual({
        kind: 'too_large',
        message:
          'The limit has been exceeded on the number of allowed image properties. Attempted: 3, Maximum: 2',
      });
    });

    it('answers 413 when the tags exceed the tag quota', () => {
      // Act
      const error = errorOf(() => create({ tags: ['a', 'b', 'c'] }, alice, { properties: 128, tags: 2 }));

      // Assess
      expect(error).toEqual({
        kind: 'too_large',
        message: 'The limit has been exceeded on the number of allowed image tags. Attempted: 3, Maximum: 2',
      });
    });
  });

  describe('check order (as Glance)', () => {
    it('refuses disallowed attributes before validating the schema', () => {
      // Act
      const error = errorOf(() => create({ min_ram: 'x', self: '/v2/images/x' }));

      // Assess
      expect(error.kind).toBe('forbidden');
    });

    it('validates the schema before refusing read-only attributes', () => {
      // Act
      const error = errorOf(() => create({ status: 'active', min_ram: 'x' }));

      // Assess
      expect(error).toEqual({ kind: 'bad_request', message: `${SCHEMA}'x' is not of type 'integer'` });
    });

    it('refuses a foreign owner before a public visibility', () => {
      // Act
      const error = errorOf(() => create({ owner: 'projB', visibility: 'public' }));

      // Assess
      expect(error.message).toBe("You are not permitted to create images owned by 'projB'.");
    });

    it('checks quotas on an admin request too', () => {
      // Act
      const error = errorOf(() => create({ tags: ['a', 'b'] }, admin, { properties: 1, tags: 1 }));

      // Assess
      expect(error.kind).toBe('too_large');
    });
  });
});
