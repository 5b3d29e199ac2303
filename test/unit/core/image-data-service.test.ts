/** ImageDataService (PUT/GET /file) over in-memory fakes of its ports. */
import { describe, expect, it } from 'vitest';
import { ImageDataService } from '#core/data/image-data';
import { FAILED_UPLOAD, type ImageRecord } from '#core/images/image';
import { HangarError } from '#core/kernel/errors';
import { withoutBackoff } from '../../helpers/fakes/backoff.ts';
import {
  bodyOf,
  digestsOf,
  FakeBlobStore,
  FakeDigester,
  FakeImageRepository,
  plainBlock,
} from '../../helpers/fakes/storage.ts';
import { admin, alice, bob, makeActiveImage, makeImage, NOW } from './fixtures.ts';

const ID = makeImage().id;
const DATA = Buffer.from('x'.repeat(300_000));
const CAP = 1024 * 1024;

function setup(image: ImageRecord = makeImage({ properties: { [FAILED_UPLOAD]: 'earlier' } })) {
  const repo = new FakeImageRepository(image);
  const blobs = new FakeBlobStore();
  const digesters: FakeDigester[] = [];
  const service = new ImageDataService(
    repo,
    blobs,
    () => {
      const digester = new FakeDigester();
      digesters.push(digester);
      return digester;
    },
    plainBlock,
    () => NOW,
  );
  return { repo, blobs, digesters, service };
}

const upload = (
  service: ImageDataService,
  data: Buffer = DATA,
  options: { declaredSize?: string; contentLength?: string; requireFormatMatch?: boolean } = {
    contentLength: String(data.length),
  },
) => service.upload(alice, ID, bodyOf(data), { sizeCap: CAP, ...options });

async function failure(promise: Promise<unknown>): Promise<{ kind: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HangarError) return { kind: error.kind, message: error.message };
    throw error;
  }
  throw new Error('expected the call to fail');
}

/** Queued again, without a lease, sizes forgotten, no blob left behind. */
function expectRolledBack(world: ReturnType<typeof setup>) {
  const image = world.repo.stored(ID);
  expect(image.status).toBe('queued');
  expect(image.lease).toBeUndefined();
  expect(image.size).toBeNull();
  expect(world.blobs.objects.size).toBe(0);
}

describe('ImageDataService.upload', () => {
  it('streams the body once into a new blob and activates the image with its digests', async () => {
    const world = setup();
    const active = await upload(world.service);
    const { md5, sha512 } = digestsOf(DATA);
    expect(active).toMatchObject({
      status: 'active',
      size: DATA.length,
      virtual_size: DATA.length,
      checksum: md5,
      os_hash_algo: 'sha512',
      os_hash_value: sha512,
    });
    expect(active.blob_key).toMatch(new RegExp(`^images/${ID}/[0-9a-f-]{36}$`));
    expect(world.blobs.objects.get(active.blob_key as string)).toEqual(DATA);
    const stored = world.repo.stored(ID);
    expect(stored).toEqual(active);
    expect(stored.lease).toBeUndefined();
    expect(stored.properties[FAILED_UPLOAD]).toBeUndefined();
    // queued -> saving (with the lease), saving -> active.
    expect(world.repo.writes.map((w) => [w.status, w.lease?.kind])).toEqual([
      ['saving', 'upload'],
      ['active', undefined],
    ]);
  });

  it('names the multipart upload in the lease when the length is unknown (chunked body)', async () => {
    const world = setup();
    await upload(world.service, DATA, {});
    expect(world.repo.writes.map((w) => w.lease?.multipart_upload_id ?? null)).toEqual([
      null,
      expect.stringMatching(/^upload-images\//),
      null,
    ]);
    expect(world.repo.stored(ID).status).toBe('active');
  });

  it('refuses a bad or too large x-openstack-image-size before touching anything', async () => {
    const world = setup();
    expect(await failure(upload(world.service, DATA, { declaredSize: '12a' }))).toEqual({
      kind: 'bad_request',
      message: "x-openstack-image-size must be a non-negative integer, not '12a'",
    });
    expect((await failure(upload(world.service, DATA, { declaredSize: String(CAP + 1) }))).kind).toBe(
      'too_large',
    );
    expect(world.repo.writes).toEqual([]);
  });

  it('rolls back to queued when the body is over the cap or not the declared size', async () => {
    const big = setup();
    const over = Buffer.alloc(CAP + 1);
    expect(await failure(upload(big.service, over, {}))).toEqual({
      kind: 'too_large',
      message: `Image exceeds the storage quota: the image size cap is ${CAP} bytes.`,
    });
    expectRolledBack(big);
    expect(big.digesters[0]?.cancelled).toBe(true);

    const short = setup();
    expect(await failure(upload(short.service, DATA, { declaredSize: String(DATA.length + 1) }))).toEqual({
      kind: 'bad_request',
      message: `Image size mismatch: x-openstack-image-size says ${DATA.length + 1} bytes, the body had ${DATA.length} or more.`,
    });
    expectRolledBack(short);
  });

  it('refuses content that is not the declared disk_format, unless the match is off', async () => {
    const strict = setup(makeImage({ disk_format: 'qcow2' }));
    expect(await failure(upload(strict.service))).toEqual({
      kind: 'bad_request',
      message: 'image content is raw but disk_format is qcow2',
    });
    expectRolledBack(strict);

    const lax = setup(makeImage({ disk_format: 'qcow2' }));
    const active = await upload(lax.service, DATA, { requireFormatMatch: false });
    expect(active).toMatchObject({ status: 'active', size: DATA.length, virtual_size: null });
  });

  it('rolls back when the blob store fails mid-body, and answers with its error', async () => {
    const world = setup();
    world.blobs.failPutAfterBlocks = 0;
    await expect(upload(world.service)).rejects.toThrow('the store went away (injected)');
    expectRolledBack(world);
  });

  it('answers 404 for an image the caller cannot see and 409 for one that is not queued', async () => {
    expect((await failure(setup().service.upload(bob, ID, bodyOf(DATA), { sizeCap: CAP }))).kind).toBe(
      'not_found',
    );
    const active = setup(makeActiveImage());
    expect((await failure(upload(active.service))).kind).toBe('conflict');
    expect(active.repo.writes).toEqual([]);
  });

  it('answers 410 when the image is deleted during the upload, and writes nothing more', async () => {
    const world = setup();
    // The DELETE lands just before the activation.
    world.repo.races.interfere((stored) => ({ ...stored, status: 'deleted', lease: undefined }), 1);
    expect(await failure(upload(world.service))).toMatchObject({ kind: 'gone' });
    expect(world.repo.stored(ID).status).toBe('deleted');
    expect(world.blobs.objects.size).toBe(0);
  });
});

describe('ImageDataService.upload, lost races', () => {
  it('re-applies queued -> saving over a metadata write that landed first', async () => {
    const world = setup();
    world.repo.races.interfere((stored) => ({ ...stored, name: 'renamed meanwhile' }));
    const active = await upload(world.service);
    expect(active).toMatchObject({ status: 'active', name: 'renamed meanwhile' });
  });

  it('retries the saving write after a transaction conflict', async () => {
    const world = setup();
    world.repo.races.failUpdates(1);
    expect((await upload(world.service)).status).toBe('active');
    expect(world.repo.races.attempts).toBe(3);
  });

  it('gives up on saving after 20 lost races with a 409, leaving the image queued', async () => {
    const world = setup();
    world.repo.races.failUpdates(Number.POSITIVE_INFINITY);
    expect(await failure(withoutBackoff(() => upload(world.service)))).toEqual({
      kind: 'conflict',
      message: `Image ${ID} was changed by another request; retry the upload`,
    });
    expect(world.repo.races.attempts).toBe(20);
    expect(world.repo.stored(ID)).toEqual(makeImage({ properties: { [FAILED_UPLOAD]: 'earlier' } }));
    expect(world.blobs.objects.size).toBe(0);
  });

  it('re-applies the activation over a metadata write that landed first, keeping it', async () => {
    const world = setup();
    world.repo.races.interfere((stored) => ({ ...stored, min_ram: 512 }), 1);
    const active = await upload(world.service);
    expect(active).toMatchObject({ status: 'active', min_ram: 512, size: DATA.length });
    expect(world.repo.stored(ID)).toEqual(active);
  });

  it('retries the activation after a transaction conflict', async () => {
    const world = setup();
    world.repo.races.failUpdates(1, 1);
    expect((await upload(world.service)).status).toBe('active');
    expect(world.repo.stored(ID).status).toBe('active');
  });

  it('gives up on the activation after 20 lost races with a 409 and removes the blob', async () => {
    const world = setup();
    world.repo.races.failUpdates(Number.POSITIVE_INFINITY, 1);
    expect(await failure(withoutBackoff(() => upload(world.service)))).toEqual({
      kind: 'conflict',
      message: `Image ${ID} is being changed too often to activate`,
    });
    expect(world.blobs.objects.size).toBe(0);
    // The roll-back lost its races too: the image keeps its lease, for the lease sweep to recover.
    expect(world.repo.stored(ID)).toMatchObject({ status: 'saving', lease: { kind: 'upload' } });
  });

  it('retries the roll-back to queued after a transaction conflict', async () => {
    const world = setup();
    world.repo.races.failUpdates(1, 1);
    await expect(upload(world.service, Buffer.alloc(CAP + 1), {})).rejects.toThrow('storage quota');
    expectRolledBack(world);
  });
});

describe('ImageDataService.locate', () => {
  it('names the blob of an active image, none of a queued one, and hides private images', async () => {
    const active = makeActiveImage();
    expect(await setup(active).service.locate(alice, ID)).toEqual({ image: active, key: active.blob_key });
    expect((await setup().service.locate(admin, ID)).key).toBeNull();
    expect((await failure(setup(active).service.locate(bob, ID))).kind).toBe('not_found');
  });
});
