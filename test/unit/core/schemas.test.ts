import { describe, expect, it } from 'vitest';
import { CONTAINER_FORMATS, DISK_FORMATS } from '#core/images/image';
import { isSchemaName, SCHEMAS } from '#core/images/schemas';

type JsonObject = Record<string, unknown>;
const obj = (value: unknown) => value as JsonObject;
const props = (schema: unknown) => obj(obj(schema).properties);

describe('SCHEMAS', () => {
  it('serves the six documents Glance serves under /v2/schemas', () => {
    // Act
    const names = Object.keys(SCHEMAS);

    // Assess
    expect(names).toEqual(['image', 'images', 'member', 'members', 'task', 'tasks']);
    for (const name of names) expect(obj(SCHEMAS[name as keyof typeof SCHEMAS]).name).toBe(name);
  });

  it('describes the image with Glance property names, in Glance order', () => {
    // Act
    const keys = Object.keys(props(SCHEMAS.image));

    // Assess
    expect(keys).toEqual([
      'id',
      'name',
      'status',
      'visibility',
      'protected',
      'os_hidden',
      'checksum',
      'os_hash_algo',
      'os_hash_value',
      'owner',
      'size',
      'virtual_size',
      'container_format',
      'disk_format',
      'created_at',
      'updated_at',
      'tags',
      'direct_url',
      'min_ram',
      'min_disk',
      'self',
      'file',
      'schema',
      'locations',
      'kernel_id',
      'ramdisk_id',
      'instance_uuid',
      'architecture',
      'os_distro',
      'os_version',
      'description',
      'cinder_encryption_key_id',
      'cinder_encryption_key_deletion_policy',
    ]);
  });

  it('carries the types, limits and enums the API enforces', () => {
    // Prepare
    const image = props(SCHEMAS.image);

    // Assess
    expect(image.id).toMatchObject({
      type: 'string',
      pattern: '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$',
    });
    expect(image.name).toMatchObject({ type: ['null', 'string'], maxLength: 255 });
    expect(image.status).toMatchObject({
      readOnly: true,
      enum: [
        'queued',
        'saving',
        'active',
        'killed',
        'deleted',
        'uploading',
        'importing',
        'pending_delete',
        'deactivated',
      ],
    });
    expect(image.visibility).toMatchObject({ enum: ['community', 'public', 'private', 'shared'] });
    expect(image.disk_format).toMatchObject({ type: ['null', 'string'], enum: [null, ...DISK_FORMATS] });
    expect(image.container_format).toMatchObject({ enum: [null, ...CONTAINER_FORMATS] });
    expect(image.tags).toEqual({
      type: 'array',
      description: 'List of strings related to the image',
      items: { type: 'string', maxLength: 255 },
    });
    expect(image.min_ram).toMatchObject({ type: 'integer' });
    expect(image.checksum).toMatchObject({ readOnly: true, maxLength: 32 });
    expect(obj(SCHEMAS.image).additionalProperties).toEqual({ type: 'string' });
    expect(obj(SCHEMAS.image).links).toEqual([
      { rel: 'self', href: '{self}' },
      { rel: 'enclosure', href: '{file}' },
      { rel: 'describedby', href: '{schema}' },
    ]);
  });

  it('nests the image schema in the images schema, with the paging links', () => {
    // Prepare
    const images = props(SCHEMAS.images);

    // Assess
    expect(images.images).toEqual({ type: 'array', items: SCHEMAS.image });
    expect(images.first).toEqual({ type: 'string' });
    expect(images.next).toEqual({ type: 'string' });
    expect(obj(SCHEMAS.images).links).toEqual([
      { rel: 'first', href: '{first}' },
      { rel: 'next', href: '{next}' },
      { rel: 'describedby', href: '{schema}' },
    ]);
  });

  it('describes members with the three member statuses', () => {
    // Prepare
    const member = props(SCHEMAS.member);

    // Assess
    expect(Object.keys(member)).toEqual([
      'member_id',
      'image_id',
      'created_at',
      'updated_at',
      'status',
      'schema',
    ]);
    expect(member.status).toMatchObject({ enum: ['pending', 'accepted', 'rejected'] });
    expect(props(SCHEMAS.members).members).toEqual({ type: 'array', items: SCHEMAS.member });
  });

  it('describes tasks, leaving input, result and message out of the list view', () => {
    // Prepare
    const task = props(SCHEMAS.task);
    const listed = props(obj(props(SCHEMAS.tasks).tasks).items);

    // Assess
    expect(task.type).toMatchObject({ enum: ['import', 'api_image_import', 'export', 'publish'] });
    expect(task.status).toMatchObject({ enum: ['pending', 'processing', 'success', 'failure'] });
    expect(Object.keys(task)).toEqual(expect.arrayContaining(['input', 'result', 'message']));
    expect(Object.keys(listed)).toEqual([
      'id',
      'type',
      'status',
      'owner',
      'image_id',
      'request_id',
      'user_id',
      'expires_at',
      'created_at',
      'updated_at',
      'self',
      'schema',
    ]);
  });

  it('serializes to plain JSON', () => {
    // Act
    const roundTrip = JSON.parse(JSON.stringify(SCHEMAS));

    // Assess
    expect(roundTrip).toEqual(SCHEMAS);
  });
});

describe('isSchemaName', () => {
  it.each([
    ['image', true],
    ['tasks', true],
    ['nope', false],
    ['toString', false],
    ['metadefs/namespace', false],
  ])('%s -> %s', (name, expected) => {
    // Act
    const result = isSchemaName(name);

    // Assess
    expect(result).toBe(expected);
  });
});
