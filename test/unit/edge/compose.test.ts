import { afterEach, describe, expect, it } from 'vitest';
import type { WorkflowStarter } from '#core/tasks/ports';
import { compose, services, useCollaborators } from '#edge/compose';
import { parseServiceConfig, serviceConfig, useServiceSettings } from '#platform/config';

afterEach(() => {
  useCollaborators(undefined);
  useServiceSettings(undefined);
});

describe('compose', () => {
  it('builds every service from the configuration it is given', () => {
    // Prepare
    const config = parseServiceConfig({ HANGAR_TABLE: 'other-table', HANGAR_WORKFLOWS: 'local' });
    // Act
    const built = compose(config);
    // Assess
    expect(built.config).toBe(config);
    for (const name of [
      'images',
      'imageData',
      'members',
      'references',
      'recovery',
      'metadefs',
      'imports',
      'exports',
      'tasks',
      'publishing',
      'instances',
      'hosts',
      'blobs',
      'objects',
    ] as const)
      expect(built[name], name).toBeDefined();
  });

  it('two compositions share nothing', () => {
    const config = parseServiceConfig({});
    const [one, two] = [compose(config), compose(config)];
    expect(one.images).not.toBe(two.images);
    expect(one.imports).not.toBe(two.imports);
  });
});

describe('the blob store setting', () => {
  it('is the images bucket unless HANGAR_BLOB_STORE=fs names a directory', () => {
    expect(parseServiceConfig({}).blobStore).toEqual({ kind: 's3' });
    const fs = parseServiceConfig({ HANGAR_BLOB_STORE: 'fs', HANGAR_BLOB_DIR: '/var/lib/hangar/blobs' });
    expect(fs.blobStore).toEqual({ kind: 'fs', directory: '/var/lib/hangar/blobs' });
    expect(compose(fs).blobs.constructor.name).toBe('FsBlobStore');
    expect(compose(parseServiceConfig({})).blobs.constructor.name).toBe('S3BlobStore');
  });

  it('refuses fs without a directory, or with presigned-URL delivery', () => {
    expect(() => parseServiceConfig({ HANGAR_BLOB_STORE: 'fs' })).toThrow(/HANGAR_BLOB_DIR/);
    expect(() =>
      parseServiceConfig({
        HANGAR_BLOB_STORE: 'fs',
        HANGAR_BLOB_DIR: '/x',
        HANGAR_BLOB_DELIVERY: 'redirect',
      }),
    ).toThrow(/HANGAR_BLOB_DELIVERY=stream/);
    expect(() => parseServiceConfig({ HANGAR_BLOB_STORE: 'disk' })).toThrow();
  });
});

describe('services()', () => {
  it('composes once per configuration', () => {
    const first = services();
    expect(services()).toBe(first);
    expect(first.config).toBe(serviceConfig());
  });

  it('composes anew when other settings are given, and they win over the environment', () => {
    // Prepare
    const before = services();
    process.env.HANGAR_IMAGE_SIZE_CAP = '7';
    try {
      // Act
      useServiceSettings({ HANGAR_IMAGE_SIZE_CAP: '5' });
      const after = services();
      // Assess
      expect(after).not.toBe(before);
      expect(after.config.imageSizeCap).toBe(5);
    } finally {
      delete process.env.HANGAR_IMAGE_SIZE_CAP;
    }
  });

  it('composes anew when collaborators are handed in', () => {
    const before = services();
    const workflows: WorkflowStarter = { start: async () => {} };
    useCollaborators({ workflows });
    expect(services()).not.toBe(before);
  });
});
