/**
 * Glance's [image_format] disk_formats and container_formats: the values images may take are the
 * deployment's lists, in the schema 400, in create and PATCH, and in the served schema documents.
 */
import { describe, expect, it } from 'vitest';
import { parseCreateRequest } from '#core/images/create';
import type { AllowedFormats } from '#core/images/image';
import { applyPatch } from '#core/images/patch';
import { PropertyProtections } from '#core/images/property-protections';
import { SCHEMAS, schemaDocument } from '#core/images/schemas';
import { alice, errorOf, makeImage, NOW, QUOTAS } from './fixtures.ts';

const SCHEMA = "Provided object does not match schema 'image': ";
const FORMATS: AllowedFormats = { disk: ['qcow2', 'raw', 'lxd'], container: ['bare'] };
const PATCH = 'application/openstack-images-v2.1-json-patch';

const create = (body: object, formats?: AllowedFormats) =>
  parseCreateRequest(body, alice, QUOTAS, NOW, PropertyProtections.NONE, formats);
const patch = (ops: object[], formats?: AllowedFormats) =>
  applyPatch(makeImage(), PATCH, ops, alice, QUOTAS, NOW, PropertyProtections.NONE, formats);

type JsonObject = Record<string, unknown>;
const enumOf = (schema: unknown, key: string) =>
  ((schema as { properties: Record<string, JsonObject> }).properties[key] as JsonObject).enum;

describe('allowed disk and container formats', () => {
  it('refuses a disk_format left out of the list with the schema 400 naming the list', () => {
    expect(errorOf(() => create({ disk_format: 'vmdk' }, FORMATS))).toEqual({
      kind: 'bad_request',
      message: `${SCHEMA}'vmdk' is not one of [None, 'qcow2', 'raw', 'lxd']`,
    });
    expect(errorOf(() => create({ container_format: 'ovf' }, FORMATS))).toEqual({
      kind: 'bad_request',
      message: `${SCHEMA}'ovf' is not one of [None, 'bare']`,
    });
  });

  it('accepts a format the operator added, and null', () => {
    expect(create({ disk_format: 'lxd', container_format: 'bare' }, FORMATS)).toMatchObject({
      disk_format: 'lxd',
      container_format: 'bare',
    });
    expect(create({ disk_format: null }, FORMATS).disk_format).toBeNull();
  });

  it('keeps refusing a non-string first with the type message', () => {
    expect(errorOf(() => create({ disk_format: 5 }, FORMATS)).message).toBe(
      `${SCHEMA}5 is not of type 'null', 'string'`,
    );
  });

  it("uses Glance's defaults when no list is given", () => {
    expect(create({ disk_format: 'vmdk' }).disk_format).toBe('vmdk');
    expect(errorOf(() => create({ disk_format: 'lxd' })).message).toContain(
      "'lxd' is not one of [None, 'ami'",
    );
  });

  it('applies the list to PATCH replace and add of disk_format and container_format', () => {
    expect(errorOf(() => patch([{ op: 'replace', path: '/disk_format', value: 'vhd' }], FORMATS))).toEqual({
      kind: 'bad_request',
      message: `${SCHEMA}'vhd' is not one of [None, 'qcow2', 'raw', 'lxd']`,
    });
    expect(
      errorOf(() => patch([{ op: 'add', path: '/container_format', value: 'docker' }], FORMATS)).message,
    ).toBe(`${SCHEMA}'docker' is not one of [None, 'bare']`);
    expect(patch([{ op: 'replace', path: '/disk_format', value: 'lxd' }], FORMATS).disk_format).toBe('lxd');
  });

  it('serves the lists as the image schema enums (image and images)', () => {
    expect(enumOf(schemaDocument('image', FORMATS), 'disk_format')).toEqual([null, 'qcow2', 'raw', 'lxd']);
    expect(enumOf(schemaDocument('image', FORMATS), 'container_format')).toEqual([null, 'bare']);
    const images = schemaDocument('images', FORMATS) as { properties: { images: { items: unknown } } };
    expect(enumOf(images.properties.images.items, 'disk_format')).toEqual([null, 'qcow2', 'raw', 'lxd']);
    // Everything else is the document Glance serves.
    expect(Object.keys((schemaDocument('image', FORMATS) as JsonObject).properties as JsonObject)).toEqual(
      Object.keys((SCHEMAS.image as JsonObject).properties as JsonObject),
    );
    expect(schemaDocument('member', FORMATS)).toBe(SCHEMAS.member);
  });
});
