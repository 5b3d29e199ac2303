import { describe, expect, it } from 'vitest';
import type { ImageRecord } from '#core/images/image';
import { ACCEPT_PATCH, applyPatch, decodePointer, parsePatch } from '#core/images/patch';
import { UnsupportedMediaTypeError } from '#core/kernel/errors';
import type { Principal } from '#core/kernel/principal';
import {
  admin,
  alice,
  captureError,
  errorOf,
  LATER,
  makeActiveImage,
  makeImage,
  QUOTAS,
} from './fixtures.ts';

const V21 = 'application/openstack-images-v2.1-json-patch';
const V20 = 'application/openstack-images-v2.0-json-patch';
const SCHEMA = "Provided object does not match schema 'image': ";

function patch(
  image: ImageRecord,
  body: unknown,
  options: { mediaType?: string | undefined; principal?: Principal; quotas?: typeof QUOTAS } = {},
): ImageRecord {
  const mediaType = 'mediaType' in options ? options.mediaType : V21;
  return applyPatch(image, mediaType, body, options.principal ?? alice, options.quotas ?? QUOTAS, LATER);
}

describe('applyPatch', () => {
  describe('media types', () => {
    it.each([
      ['application/json', 'application/json'],
      ['text/plain', 'text/plain'],
      [undefined, 'None'],
    ])('answers 415 with Accept-Patch to %s', (mediaType, shown) => {
      // Act
      const error = captureError(() => patch(makeImage(), [], { mediaType }));

      // Assess
      expect(error).toBeInstanceOf(UnsupportedMediaTypeError);
      expect(error.kind).toBe('unsupported_media_type');
      expect(error.message).toBe(`The request media type ${shown} is not supported by this server.`);
      expect((error as UnsupportedMediaTypeError).acceptPatch).toEqual([V20, V21]);
    });

    it('lists both patch media types, v2.0 first as Glance sorts them', () => {
      // Assess
      expect(ACCEPT_PATCH).toEqual([V20, V21]);
    });

    it('accepts the v2.1 type with parameters and in any case', () => {
      // Act
      const image = patch(makeImage(), [{ op: 'replace', path: '/name', value: 'x' }], {
        mediaType: 'Application/OpenStack-Images-v2.1-JSON-Patch; charset=UTF-8',
      });

      // Assess
      expect(image.name).toBe('x');
    });
  });

  describe('v2.1 operations', () => {
    it('applies add, replace and remove in one request (Glance transcript #69)', () => {
      // Prepare
      const image = makeActiveImage();

      // Act
      const next = patch(image, [
        { op: 'replace', path: '/name', value: 'probe-1-renamed' },
        { op: 'add', path: '/newprop', value: 'x' },
        { op: 'remove', path: '/custom_prop' },
        { op: 'replace', path: '/min_ram', value: 256 },
      ]);

      // Assess
      expect(next).toMatchObject({
        name: 'probe-1-renamed',
        min_ram: 256,
        properties: { os_distro: 'debian', newprop: 'x' },
        updated_at: '2026-11-22T03:00:00Z',
        status: 'active',
      });
      expect(next.properties).not.toHaveProperty('custom_prop');
    });

    it('returns a new record and leaves the input untouched', () => {
      // Prepare
      const image = makeImage();
      const snapshot = structuredClone(image);

      // Act
      const next = patch(image, [
        { op: 'add', path: '/tags', value: ['z'] },
        { op: 'add', path: '/p', value: 'v' },
      ]);

      // Assess
      expect(next).not.toBe(image);
      expect(image).toEqual(snapshot);
      expect(next.version).toBe(image.version);
      expect(next.blob_key).toBe(image.blob_key);
    });

    it('leaves the record unchanged, updated_at included, for an empty list', () => {
      // Prepare
      const image = makeImage();

      // Act
      const next = patch(image, []);

      // Assess
      expect(next).toEqual(image);
    });

    it('lets add overwrite an existing property (RFC 6902)', () => {
      // Act
      const next = patch(makeImage(), [{ op: 'add', path: '/custom_prop', value: 'y' }]);

      // Assess
      expect(next.properties.custom_prop).toBe('y');
    });

    it('lets add set a base attribute', () => {
      // Act
      const next = patch(makeImage(), [{ op: 'add', path: '/name', value: 'added' }]);

      // Assess
      expect(next.name).toBe('added');
    });

    it('replaces the whole tag list and drops duplicates', () => {
      // Act
      const next = patch(makeImage(), [{ op: 'replace', path: '/tags', value: ['x1', 'x2', 't1', 'x1'] }]);

      // Assess
      expect(next.tags).toEqual(['x1', 'x2', 't1']);
    });

    it.each([
      ['visibility', 'shared'],
      ['visibility', 'community'],
      ['protected', true],
      ['os_hidden', true],
      ['min_disk', 0],
      ['name', null],
    ])('replaces %s with %j', (key, value) => {
      // Act
      const next = patch(makeImage(), [{ op: 'replace', path: `/${key}`, value }]);

      // Assess
      expect(next).toHaveProperty(key, value);
    });

    it('lets an admin make an image public and give it away', () => {
      // Act
      const next = patch(
        makeImage(),
        [
          { op: 'replace', path: '/visibility', value: 'public' },
          { op: 'replace', path: '/owner', value: 'projB' },
        ],
        { principal: admin },
      );

      // Assess
      expect(next).toMatchObject({ visibility: 'public', owner: 'projB' });
    });

    it.each(['queued', 'importing'] as const)('changes disk and container format while %s', (status) => {
      // Act
      const next = patch(makeImage({ status }), [
        { op: 'replace', path: '/disk_format', value: 'qcow2' },
        { op: 'replace', path: '/container_format', value: 'ova' },
      ]);

      // Assess
      expect(next).toMatchObject({ disk_format: 'qcow2', container_format: 'ova' });
    });

    it('still edits the metadata of a deactivated image', () => {
      // Act
      const next = patch(makeActiveImage({ status: 'deactivated' }), [
        { op: 'replace', path: '/name', value: 'still editable' },
        { op: 'add', path: '/note', value: 'yes' },
      ]);

      // Assess
      expect(next).toMatchObject({
        status: 'deactivated',
        name: 'still editable',
        properties: { note: 'yes' },
      });
    });

    it('decodes ~1 and ~0 and trims pointer segments as Glance does', () => {
      // Act
      const next = patch(makeImage(), [
        { op: 'add', path: '/a~1b', value: '1' },
        { op: 'add', path: '/c~0d', value: '2' },
        { op: 'add', path: '/ spaced ', value: '3' },
      ]);

      // Assess
      expect(next.properties).toMatchObject({ 'a/b': '1', 'c~d': '2', spaced: '3' });
    });

    it('keeps a "__proto__" property as plain data', () => {
      // Act
      const next = patch(makeImage({ properties: {} }), [{ op: 'add', path: '/__proto__', value: 'x' }]);

      // Assess
      expect(Object.hasOwn(next.properties, '__proto__')).toBe(true);
      expect(Object.getPrototypeOf(next.properties)).toBe(Object.prototype);
    });
  });

  describe('v2.0 (draft 4) operations', () => {
    it('applies {"replace": path} objects (Glance transcript #68)', () => {
      // Act
      const next = patch(makeActiveImage(), [{ replace: '/name', value: 'probe-1-v20' }], { mediaType: V20 });

      // Assess
      expect(next.name).toBe('probe-1-v20');
    });

    it('applies add of a new property and remove', () => {
      // Act
      const next = patch(makeImage(), [{ add: '/fresh', value: 'v' }, { remove: '/custom_prop' }], {
        mediaType: V20,
      });

      // Assess
      expect(next.properties).toEqual({ os_distro: 'debian', fresh: 'v' });
    });

    it.each([
      ['/custom_prop', 'Property custom_prop already present.'],
      ['/name', 'Property name already present.'],
    ])('answers 409 to add of the existing %s', (path, message) => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ add: path, value: 'v' }], { mediaType: V20 }));

      // Assess
      expect(error).toEqual({ kind: 'conflict', message });
    });

    it('answers 400 to an operation object naming two operations', () => {
      // Act
      const error = errorOf(() =>
        patch(makeImage(), [{ add: '/a', replace: '/b', value: 'v' }], { mediaType: V20 }),
      );

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: 'Operation objects must contain only one member named "add", "remove", or "replace".',
      });
    });

    it('answers 400 to an operation object naming no operation', () => {
      // Act
      const error = errorOf(() =>
        patch(makeImage(), [{ op: 'add', path: '/a', value: 'v' }], { mediaType: V20 }),
      );

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: 'Operation objects must contain exactly one member named "add", "remove", or "replace".',
      });
    });
  });

  describe('malformed requests (400)', () => {
    it.each([
      ['an object', { op: 'add' }],
      ['null', null],
      ['a string', 'x'],
    ])('refuses %s as the body', (_label, body) => {
      // Act
      const error = errorOf(() => patch(makeImage(), body));

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: 'Request body must be a JSON array of operation objects.',
      });
    });

    it('refuses operations that are not objects', () => {
      // Act
      const error = errorOf(() => patch(makeImage(), ['add']));

      // Assess
      expect(error).toEqual({ kind: 'bad_request', message: 'Operations must be JSON objects.' });
    });

    it.each(['move', 'copy', 'test'])('refuses the operation %s', (op) => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ op, path: '/name', from: '/x' }]));

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: `Invalid operation: \`${op}\`. It must be one of the following: add, remove, replace.`,
      });
    });

    it('refuses an operation without op', () => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ path: '/name', value: 'x' }]));

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message:
          'Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.',
      });
    });

    it('refuses an operation without path', () => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ op: 'add', value: 'x' }]));

      // Assess
      expect(error).toEqual({ kind: 'bad_request', message: "Unable to find 'path' in JSON Schema change" });
    });

    it.each(['add', 'replace'])('refuses %s without value', (op) => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ op, path: '/foo' }]));

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: `Operation "${op}" requires a member named "value".`,
      });
    });

    it('accepts null as a present value', () => {
      // Act
      const next = patch(makeImage(), [{ op: 'replace', path: '/name', value: null }]);

      // Assess
      expect(next.name).toBeNull();
    });

    it.each([
      ['name', 'Pointer `name` does not start with "/".'],
      ['', 'Pointer `` does not start with "/".'],
      ['/a//b', 'Pointer `/a//b` contains adjacent "/".'],
      ['//a', 'Pointer `//a` contains adjacent "/".'],
      ['/a/ /b', 'Pointer `/a/ /b` contains adjacent "/".'],
      ['/name/', 'Pointer `/name/` end with "/".'],
      ['/a~2b', 'Pointer `/a~2b` contains "~" not part of a recognized escape sequence.'],
      ['/ab~', 'Pointer `/ab~` contains "~" not part of a recognized escape sequence.'],
      ['/tags/-', "Invalid JSON pointer for this resource: '/tags/-'"],
      ['/a/b', "Invalid JSON pointer for this resource: '/a/b'"],
      ['/', "Invalid JSON pointer for this resource: '/'"],
      ['/locations/0/url', "Invalid JSON pointer for this resource: '/locations/0/url'"],
    ])('refuses the pointer %j', (path, message) => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ op: 'add', path, value: 'v' }]));

      // Assess
      expect(error).toEqual({ kind: 'bad_request', message });
    });

    it('refuses a pointer that is not a string', () => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ op: 'add', path: 5, value: 'v' }]));

      // Assess
      expect(error).toEqual({ kind: 'bad_request', message: 'Pointer `5` does not start with "/".' });
    });

    it.each([
      ['/visibility', 'nope', "'nope' is not one of ['community', 'public', 'private', 'shared']"],
      ['/min_ram', 'abc', "'abc' is not of type 'integer'"],
      ['/min_disk', 2.5, "2.5 is not of type 'integer'"],
      ['/name', 'n'.repeat(256), `'${'n'.repeat(256)}' is too long`],
      [
        '/disk_format',
        'bogus',
        "'bogus' is not one of [None, 'ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop']",
      ],
      [
        '/container_format',
        'tar',
        "'tar' is not one of [None, 'ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed']",
      ],
      ['/protected', 'yes', "'yes' is not of type 'boolean'"],
      ['/os_hidden', 1, "1 is not of type 'boolean'"],
      ['/tags', 'x', "'x' is not of type 'array'"],
      ['/tags', [1], "1 is not of type 'string'"],
      ['/numprop', 5, "5 is not of type 'string'"],
      ['/flag', true, "True is not of type 'string'"],
      [
        '/kernel_id',
        'x',
        "'x' does not match '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$'",
      ],
    ])('answers a schema 400 to %s = %j', (path, value, detail) => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ op: 'replace', path, value }]));

      // Assess
      expect(error).toEqual({ kind: 'bad_request', message: `${SCHEMA}${detail}` });
    });

    it.each(['min_ram', 'min_disk'])('answers 400 to a negative %s', (key) => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ op: 'replace', path: `/${key}`, value: -1 }]));

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: `Invalid value '-1' for parameter '${key}': Cannot be a negative value`,
      });
    });

    it('answers 400 to a property name longer than 255 characters', () => {
      // Act
      const error = errorOf(() =>
        patch(makeImage(), [{ op: 'add', path: `/${'k'.repeat(256)}`, value: 'v' }]),
      );

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: 'Custom property should not be greater than 255 characters.',
      });
    });

    it('checks every operation before applying any (a later bad op wins over an earlier 409)', () => {
      // Act
      const error = errorOf(() =>
        patch(makeImage(), [
          { op: 'remove', path: '/missing' },
          { op: 'move', path: '/name' },
        ]),
      );

      // Assess
      expect(error.kind).toBe('bad_request');
    });
  });

  describe('forbidden changes (403)', () => {
    it.each([
      'status',
      'id',
      'checksum',
      'size',
      'virtual_size',
      'created_at',
      'updated_at',
      'os_hash_algo',
      'os_hash_value',
      'self',
      'file',
      'schema',
      'direct_url',
      'stores',
    ])('refuses any operation on the read-only %s', (key) => {
      // Act
      const replace = errorOf(() =>
        patch(makeImage(), [{ op: 'replace', path: `/${key}`, value: 'queued' }]),
      );
      const remove = errorOf(() => patch(makeImage(), [{ op: 'remove', path: `/${key}` }]));

      // Assess
      expect(replace).toEqual({ kind: 'forbidden', message: `Attribute '${key}' is read-only.` });
      expect(remove).toEqual({ kind: 'forbidden', message: `Attribute '${key}' is read-only.` });
    });

    it.each(['os_glance_import_task', 'os_glance_anything', 'location', 'deleted', 'deleted_at'])(
      'refuses the reserved %s',
      (key) => {
        // Act
        const error = errorOf(() => patch(makeImage(), [{ op: 'add', path: `/${key}`, value: 'x' }]));

        // Assess
        expect(error).toEqual({ kind: 'forbidden', message: `Attribute '${key}' is reserved.` });
      },
    );

    it.each([
      [{ op: 'replace', path: '/locations', value: [] }],
      [{ op: 'add', path: '/locations/-', value: { url: 'http://x', metadata: {} } }],
      [{ op: 'remove', path: '/locations/0' }],
    ])('refuses locations, which Hangar does not support: %j', (operation) => {
      // Act
      const error = errorOf(() => patch(makeActiveImage(), [operation]));

      // Assess
      expect(error).toEqual({ kind: 'forbidden', message: "Attribute 'locations' is reserved." });
    });

    it.each(['name', 'visibility', 'tags', 'owner', 'min_ram', 'protected', 'disk_format'])(
      'refuses to remove the base attribute %s',
      (key) => {
        // Act
        const error = errorOf(() => patch(makeImage(), [{ op: 'remove', path: `/${key}` }]));

        // Assess
        expect(error).toEqual({ kind: 'forbidden', message: `Property ${key} may not be removed.` });
      },
    );

    it.each(['replace', 'add'])('refuses %s /owner by a non-admin', (op) => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ op, path: '/owner', value: 'projB' }]));

      // Assess
      expect(error).toEqual({ kind: 'forbidden', message: "Owner can't be updated by non admin." });
    });

    it.each(['replace', 'add'])('refuses %s /visibility public by a non-admin', (op) => {
      // Act
      const error = errorOf(() => patch(makeImage(), [{ op, path: '/visibility', value: 'public' }]));

      // Assess
      expect(error).toEqual({
        kind: 'forbidden',
        message: 'You are not authorized to complete publicize_image action.',
      });
    });

    it.each(['active', 'saving', 'uploading', 'deactivated', 'killed'] as const)(
      'refuses to change the formats of an image in status %s',
      (status) => {
        // Act
        const disk = errorOf(() =>
          patch(makeImage({ status }), [{ op: 'replace', path: '/disk_format', value: 'qcow2' }]),
        );
        const container = errorOf(() =>
          patch(makeImage({ status }), [{ op: 'replace', path: '/container_format', value: 'ova' }]),
        );

        // Assess
        expect(disk).toEqual({
          kind: 'forbidden',
          message: 'Attribute disk_format can be only replaced for a queued image.',
        });
        expect(container).toEqual({
          kind: 'forbidden',
          message: 'Attribute container_format can be only replaced for a queued image.',
        });
      },
    );
  });

  describe('conflicts (409)', () => {
    it.each([[{ op: 'remove', path: '/nosuchprop' }], [{ op: 'replace', path: '/nosuchprop', value: 'x' }]])(
      'refuses %j on a missing property',
      (operation) => {
        // Act
        const error = errorOf(() => patch(makeImage(), [operation]));

        // Assess
        expect(error).toEqual({ kind: 'conflict', message: 'Property nosuchprop does not exist.' });
      },
    );

    it('sees properties removed earlier in the same request as missing', () => {
      // Act
      const error = errorOf(() =>
        patch(makeImage(), [
          { op: 'remove', path: '/custom_prop' },
          { op: 'replace', path: '/custom_prop', value: 'back' },
        ]),
      );

      // Assess
      expect(error).toEqual({ kind: 'conflict', message: 'Property custom_prop does not exist.' });
    });
  });

  describe('quotas (413)', () => {
    it('refuses adding a property beyond the property quota', () => {
      // Act
      const error = errorOf(() =>
        patch(makeImage(), [{ op: 'add', path: '/third', value: 'x' }], {
          quotas: { properties: 2, tags: 128 },
        }),
      );

      // Assess
      expect(error).toEqual({
        kind: 'too_large',
        message:
          'The limit has been exceeded on the number of allowed image properties. Attempted: 3, Maximum: 2',
      });
    });

    it('lets an image already over quota replace and remove properties', () => {
      // Prepare
      const image = makeImage({ properties: { a: '1', b: '2', c: '3' } });

      // Act
      const next = patch(
        image,
        [
          { op: 'replace', path: '/a', value: 'changed' },
          { op: 'remove', path: '/b' },
        ],
        { quotas: { properties: 1, tags: 128 } },
      );

      // Assess
      expect(next.properties).toEqual({ a: 'changed', c: '3' });
    });

    it('counts the final property set, so swapping one property for another fits', () => {
      // Act
      const next = patch(
        makeImage(),
        [
          { op: 'remove', path: '/custom_prop' },
          { op: 'add', path: '/other', value: 'x' },
        ],
        { quotas: { properties: 2, tags: 128 } },
      );

      // Assess
      expect(Object.keys(next.properties)).toEqual(['os_distro', 'other']);
    });

    it('refuses a tag list beyond the tag quota', () => {
      // Act
      const error = errorOf(() =>
        patch(makeImage(), [{ op: 'replace', path: '/tags', value: ['a', 'b', 'c'] }], {
          quotas: { properties: 128, tags: 2 },
        }),
      );

      // Assess
      expect(error).toEqual({
        kind: 'too_large',
        message: 'The limit has been exceeded on the number of allowed image tags. Attempted: 3, Maximum: 2',
      });
    });

    it('counts tags after removing duplicates', () => {
      // Act
      const next = patch(makeImage(), [{ op: 'replace', path: '/tags', value: ['a', 'b', 'a'] }], {
        quotas: { properties: 128, tags: 2 },
      });

      // Assess
      expect(next.tags).toEqual(['a', 'b']);
    });
  });
});

describe('parsePatch', () => {
  it('returns decoded operations without touching any image', () => {
    // Act
    const operations = parsePatch(V21, [
      { op: 'add', path: '/a~1b', value: 'x' },
      { op: 'remove', path: '/c' },
    ]);

    // Assess
    expect(operations).toEqual([
      { op: 'add', path: ['a/b'], value: 'x', dialect: 'v2.1' },
      { op: 'remove', path: ['c'], dialect: 'v2.1' },
    ]);
  });

  it('reads the path of a v2.0 operation from its operation member', () => {
    // Act
    const operations = parsePatch(V20, [{ remove: '/c' }]);

    // Assess
    expect(operations).toEqual([{ op: 'remove', path: ['c'], dialect: 'v2.0' }]);
  });
});

describe('decodePointer', () => {
  it.each([
    ['/name', ['name']],
    ['/locations/0', ['locations', '0']],
    ['/~01', ['~1']],
  ])('decodes %s', (pointer, expected) => {
    // Act
    const path = decodePointer(pointer);

    // Assess
    expect(path).toEqual(expected);
  });
});
