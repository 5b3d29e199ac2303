import { describe, expect, it } from 'vitest';
import { EVERY_PROPERTY } from '#core/images/property-protections';
import { imagePath, renderImage, renderImageList } from '#core/images/view';
import { GLANCE_BASE_KEYS } from '../../helpers/glance-keys.ts';
import { makeActiveImage, makeImage } from './fixtures.ts';

describe('renderImage', () => {
  it('renders a record exactly as Glance shows it, in Glance key order', () => {
    // Prepare
    const image = makeImage();

    // Act
    const view = renderImage(image, EVERY_PROPERTY);

    // Assess
    expect(view).toEqual({
      custom_prop: 'v1',
      os_distro: 'debian',
      name: 'probe-1',
      disk_format: 'raw',
      container_format: 'bare',
      visibility: 'private',
      size: null,
      virtual_size: null,
      status: 'queued',
      checksum: null,
      protected: false,
      min_ram: 128,
      min_disk: 1,
      owner: 'projA',
      os_hidden: false,
      os_hash_algo: null,
      os_hash_value: null,
      id: 'dec8c320-a25d-4809-a4d9-96f9d61a425b',
      created_at: '2026-11-22T02:11:29Z',
      updated_at: '2026-11-22T02:11:29Z',
      tags: ['t1', 't2'],
      self: '/v2/images/dec8c320-a25d-4809-a4d9-96f9d61a425b',
      file: '/v2/images/dec8c320-a25d-4809-a4d9-96f9d61a425b/file',
      schema: '/v2/schemas/image',
    });
    // The extra properties first, then Glance's base keys in its order.
    expect(Object.keys(view)).toEqual(['custom_prop', 'os_distro', ...GLANCE_BASE_KEYS]);
  });

  it('never shows the internal version and blob key', () => {
    // Prepare
    const image = makeActiveImage();

    // Act
    const view = renderImage(image, EVERY_PROPERTY);

    // Assess
    expect(view).not.toHaveProperty('version');
    expect(view).not.toHaveProperty('blob_key');
    expect(view).not.toHaveProperty('properties');
    expect(view).toMatchObject({
      status: 'active',
      size: 1048583,
      checksum: 'f9a574bae383b2c1626186c937d4b00d',
    });
  });

  it('shows every base attribute, null when unset, even without extra properties', () => {
    // Prepare
    const image = makeImage({
      name: null,
      disk_format: null,
      container_format: null,
      properties: {},
      tags: [],
    });

    // Act
    const view = renderImage(image, EVERY_PROPERTY);

    // Assess
    expect(view).toMatchObject({ name: null, disk_format: null, container_format: null, tags: [] });
    expect(Object.keys(view)[0]).toBe('name');
  });

  it('shows os_glance properties except the staging host, which Glance hides', () => {
    // Prepare
    const image = makeImage({
      properties: { os_glance_importing_to_stores: '', os_glance_stage_host: 'http://worker-1', x: 'y' },
    });

    // Act
    const view = renderImage(image, EVERY_PROPERTY);

    // Assess
    expect(view).toHaveProperty('os_glance_importing_to_stores', '');
    expect(view).toHaveProperty('x', 'y');
    expect(view).not.toHaveProperty('os_glance_stage_host');
  });

  it('copies the tags, so changing the view leaves the record alone', () => {
    // Prepare
    const image = makeImage();
    const view = renderImage(image, EVERY_PROPERTY);

    // Act
    (view.tags as string[]).push('mutated');

    // Assess
    expect(image.tags).toEqual(['t1', 't2']);
  });

  it('leaves out the extra properties the caller may not read, and only those', () => {
    // Prepare
    const image = makeImage({ properties: { custom_prop: 'v1', secret: 's', os_distro: 'debian' } });

    // Act
    const view = renderImage(image, (key) => key !== 'secret');

    // Assess
    expect(view).not.toHaveProperty('secret');
    expect(view).toMatchObject({ custom_prop: 'v1', os_distro: 'debian', name: 'probe-1' });
  });

  it('keeps a "__proto__" property as plain data', () => {
    // Prepare
    const image = makeImage({ properties: JSON.parse('{"__proto__": "x"}') });

    // Act
    const view = renderImage(image, EVERY_PROPERTY);

    // Assess
    expect(JSON.parse(JSON.stringify(view))).toHaveProperty(['__proto__'], 'x');
  });
});

describe('imagePath', () => {
  it('is the image URL path used by self and Location', () => {
    // Act
    const path = imagePath('abc');

    // Assess
    expect(path).toBe('/v2/images/abc');
  });
});

describe('renderImageList', () => {
  it('renders images, first, schema and next in Glance order', () => {
    // Prepare
    const images = [makeImage({ id: 'a' }), makeImage({ id: 'b' })];

    // Act
    const body = renderImageList(
      images,
      { first: '/v2/images?limit=2', next: '/v2/images?limit=2&marker=b' },
      EVERY_PROPERTY,
    );

    // Assess
    expect(Object.keys(body)).toEqual(['images', 'first', 'schema', 'next']);
    expect(body).toMatchObject({
      first: '/v2/images?limit=2',
      schema: '/v2/schemas/images',
      next: '/v2/images?limit=2&marker=b',
    });
    expect((body.images as Array<Record<string, unknown>>).map((i) => i.id)).toEqual(['a', 'b']);
  });

  it("applies the caller's property filter to every image", () => {
    // Prepare
    const images = [
      makeImage({ id: 'a', properties: { secret: '1', open: '1' } }),
      makeImage({ id: 'b', properties: { secret: '2' } }),
    ];

    // Act
    const body = renderImageList(images, { first: '/v2/images' }, (key) => key !== 'secret');

    // Assess
    const views = body.images as Array<Record<string, unknown>>;
    expect(views.map((view) => 'secret' in view)).toEqual([false, false]);
    expect(views[0]).toHaveProperty('open', '1');
  });

  it('leaves next out on the last page', () => {
    // Act
    const body = renderImageList([], { first: '/v2/images' }, EVERY_PROPERTY);

    // Assess
    expect(body).toEqual({ images: [], first: '/v2/images', schema: '/v2/schemas/images' });
  });
});
