import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type AwsClients, createAwsClients } from '#adapters/aws-clients';
import { NotFoundError } from '#core/kernel/errors';
import type { WorkflowStarter } from '#core/tasks/ports';
import { compose, services, useCollaborators } from '#edge/compose';
import { parseServiceConfig, serviceConfig, useServiceSettings } from '#platform/config';
import { alice } from '../core/fixtures.ts';

/** Clients that answer every command themselves (reads find nothing), recording what was sent. */
function recordingClients(): { clients: AwsClients; sent: { dynamo: unknown[]; s3: unknown[] } } {
  const clients = createAwsClients({ s3ForcePathStyle: false });
  const sent = { dynamo: [] as unknown[], s3: [] as unknown[] };
  vi.spyOn(clients.dynamo, 'send').mockImplementation((async (command: unknown) => {
    sent.dynamo.push(command);
    return {};
  }) as never);
  vi.spyOn(clients.s3, 'send').mockImplementation((async (command: unknown) => {
    sent.s3.push(command);
    return {};
  }) as never);
  return { clients, sent };
}

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

  it('builds the DynamoDB and S3 adapters on the clients it is handed', async () => {
    // Prepare
    const { clients, sent } = recordingClients();
    const config = parseServiceConfig({ HANGAR_TABLE: 'given-table', HANGAR_WORKFLOWS: 'local' });
    const built = compose(config, { clients });
    // Act
    const shown = await built.images.show(alice, '00000000-0000-4000-8000-000000000000').catch((e) => e);
    await built.objects.delete({ bucket: 'hangar-uploads', key: 'images/x' });
    // Assess
    expect(shown).toBeInstanceOf(NotFoundError);
    expect(sent.dynamo).toEqual([expect.any(GetCommand)]);
    expect((sent.dynamo[0] as GetCommand).input.TableName).toBe('given-table');
    expect(sent.s3).toEqual([expect.any(DeleteObjectCommand)]);
    vi.restoreAllMocks();
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

describe('the upload method setting', () => {
  it('is multipart exactly where downloads redirect (AWS) unless given, and snapshots follow it', () => {
    expect(parseServiceConfig({})).toMatchObject({ uploadMethod: 'put', snapshotUpload: 'put' });
    expect(parseServiceConfig({ HANGAR_BLOB_DELIVERY: 'redirect' })).toMatchObject({
      uploadMethod: 'multipart',
      snapshotUpload: 'multipart',
    });
    expect(parseServiceConfig({ HANGAR_UPLOAD_METHOD: 'multipart' })).toMatchObject({
      uploadMethod: 'multipart',
      snapshotUpload: 'multipart',
    });
    expect(
      parseServiceConfig({ HANGAR_UPLOAD_METHOD: 'multipart', HANGAR_SNAPSHOT_UPLOAD: 'put' }).snapshotUpload,
    ).toBe('put');
    expect(() => parseServiceConfig({ HANGAR_UPLOAD_METHOD: 'stream' })).toThrow();
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
