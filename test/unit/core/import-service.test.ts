/** ImportService (staging, POST /import, S3 uploads, multipart, the state machine steps) over fakes. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FAILED_UPLOAD, type ImageRecord } from '#core/images/image';
import { ImagesService } from '#core/images/images-service';
import { HangarError, StaleWriteError } from '#core/kernel/errors';
import { newTask, transitionTask } from '#core/tasks/task';
import { ImportService } from '#core/transfer/import';
import { FAILED_IMPORT, IMPORT_LOCK, type ImportInput, stagingKey } from '#core/transfer/import-model';
import { withoutBackoff } from '../../helpers/fakes/backoff.ts';
import {
  bodyOf,
  digestsOf,
  FakeBlobStore,
  FakeDigester,
  FakeEventMarkers,
  FakeImageRepository,
  FakeMultipartUploads,
  FakeObjectStore,
  FakeTaskRepository,
  FakeWebFetcher,
  FakeWorkflowStarter,
  plainBlock,
} from '../../helpers/fakes/storage.ts';
import { alice, bob, makeActiveImage, makeImage, NOW, QUOTAS } from './fixtures.ts';

const ID = makeImage().id;
const DATA = Buffer.from('y'.repeat(200_000));
const CAP = 1024 * 1024;
const BUCKETS = { images: 'hangar-images', staging: 'hangar-staging', uploads: 'hangar-uploads' };
const URI = 'https://images.example/disk.img';

function setup(images: ImageRecord[] = [makeImage()], sizeCap = CAP) {
  const repo = new FakeImageRepository(...images);
  const tasks = new FakeTaskRepository();
  const workflows = new FakeWorkflowStarter();
  const markers = new FakeEventMarkers();
  const blobs = new FakeBlobStore();
  const staging = new FakeBlobStore();
  const objects = new FakeObjectStore();
  const multipart = new FakeMultipartUploads();
  const fetcher = new FakeWebFetcher();
  fetcher.bodies.set(URI, DATA);
  const clock = () => NOW;
  const service = new ImportService({
    repo,
    images: new ImagesService(repo, QUOTAS, clock),
    tasks,
    workflows,
    markers,
    blobs,
    imagesBucket: BUCKETS.images,
    staging,
    stagingBucket: BUCKETS.staging,
    uploadsBucket: BUCKETS.uploads,
    objects,
    multipart,
    fetcher,
    digester: () => new FakeDigester(),
    sharedBlock: plainBlock,
    sizeCap,
    taskTtlHours: 48,
    uploadUrlSeconds: 900,
    clock,
  });
  return { repo, tasks, workflows, markers, blobs, staging, objects, multipart, fetcher, service };
}
type World = ReturnType<typeof setup>;

async function failure(promise: Promise<unknown>): Promise<{ kind: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HangarError) return { kind: error.kind, message: error.message };
    throw error;
  }
  throw new Error('expected the call to fail');
}

const stage = (world: World, data: Buffer = DATA, declaredSize?: string) =>
  world.service.stage(alice, ID, bodyOf(data), {
    contentLength: String(data.length),
    ...(declaredSize !== undefined ? { declaredSize } : {}),
  });

const importBody = (name: string, uri?: string) => ({ method: { name, ...(uri ? { uri } : {}) } });

/** The input the state machine was started with (the only execution so far). */
function startedInput(world: World): ImportInput {
  expect(world.workflows.started).toHaveLength(1);
  return world.workflows.started[0]?.input as unknown as ImportInput;
}

/** Another import of the image, started just now (the one holding its lock in a test). */
const otherImport = () =>
  newTask(
    {
      id: 'other-task',
      type: 'api_image_import',
      owner: 'projA',
      user_id: 'u',
      request_id: '',
      image_id: ID,
      input: {},
    },
    NOW,
  );

afterEach(() => {
  vi.useRealTimers();
});

describe('ImportService.stage (PUT /stage)', () => {
  it('puts the body in the staging bucket and leaves the image uploading, with its size', async () => {
    const world = setup([makeImage({ properties: { [FAILED_UPLOAD]: 'before' } })]);
    await stage(world);
    expect(world.staging.objects.get(stagingKey(ID))).toEqual(DATA);
    const image = world.repo.stored(ID);
    expect(image).toMatchObject({ status: 'uploading', size: DATA.length });
    expect(image.lease).toBeUndefined();
    expect(image.properties[FAILED_UPLOAD]).toBeUndefined();
  });

  it('rolls back to queued and removes the staged object when the body is too large', async () => {
    const world = setup();
    expect((await failure(stage(world, Buffer.alloc(CAP + 1)))).kind).toBe('too_large');
    expect(world.repo.stored(ID).status).toBe('queued');
    expect(world.repo.stored(ID).lease).toBeUndefined();
    expect(world.staging.objects.size).toBe(0);
  });

  it('refuses a declared size that the body does not have', async () => {
    const world = setup();
    expect((await failure(stage(world, DATA, String(DATA.length + 5)))).kind).toBe('bad_request');
    expect(world.repo.stored(ID).status).toBe('queued');
  });

  it('refuses while an import holds the image', async () => {
    const world = setup([makeImage({ properties: { [IMPORT_LOCK]: 'task-1' } })]);
    expect((await failure(stage(world))).message).toBe(
      `Image ${ID} has an import in progress; it cannot be staged now.`,
    );
  });

  it('retries its writes after a transaction conflict on each', async () => {
    const world = setup();
    world.repo.races.failUpdates(1);
    world.repo.races.interfere((stored) => ({ ...stored, name: 'renamed' }), 1);
    await stage(world);
    expect(world.repo.stored(ID)).toMatchObject({ status: 'uploading', size: DATA.length, name: 'renamed' });
  });
});

describe('ImportService.requestImport (POST /import)', () => {
  it('glance-direct: records the task, locks the image and starts the import', async () => {
    const world = setup();
    await stage(world);
    const task = await world.service.requestImport(alice, ID, importBody('glance-direct'), 'req-1');
    expect(task).toMatchObject({ type: 'api_image_import', status: 'pending', image_id: ID, owner: 'projA' });
    expect(world.tasks.stored(task.id)).toEqual(task);
    const image = world.repo.stored(ID);
    expect(image.properties[IMPORT_LOCK]).toBe(task.id);
    expect(image.lease).toMatchObject({
      holder: task.id,
      kind: 'import',
      source: { bucket: BUCKETS.staging, key: stagingKey(ID) },
    });
    expect(startedInput(world)).toEqual({
      task_id: task.id,
      image_id: ID,
      source: { kind: 's3', bucket: BUCKETS.staging, key: stagingKey(ID), delete: true },
    });
  });

  it('web-download: vets the URI first', async () => {
    const world = setup();
    const task = await world.service.requestImport(alice, ID, importBody('web-download', URI), 'req-1');
    expect(startedInput(world).source).toEqual({ kind: 'url', uri: URI });
    expect(world.repo.stored(ID).properties[IMPORT_LOCK]).toBe(task.id);

    world.fetcher.refused.add('https://internal.example/x');
    expect(
      await failure(
        world.service.requestImport(alice, ID, importBody('web-download', 'https://internal.example/x'), 'r'),
      ),
    ).toEqual({
      kind: 'bad_request',
      message: 'URI for web-download does not pass filtering: https://internal.example/x',
    });
  });

  it("refuses what Glance refuses: unknown methods, glance-direct before staging, others' images", async () => {
    const world = setup();
    expect(await failure(world.service.requestImport(alice, ID, importBody('copy-image'), 'r'))).toEqual({
      kind: 'bad_request',
      message: 'Import method copy-image is not enabled on this service.',
    });
    expect(await failure(world.service.requestImport(alice, ID, importBody('glance-direct'), 'r'))).toEqual({
      kind: 'conflict',
      message: "Image needs to be staged before 'glance-direct' method can be used",
    });
    expect(
      (await failure(world.service.requestImport(bob, ID, importBody('web-download', URI), 'r'))).kind,
    ).toBe('not_found');
    expect(world.tasks.all()).toEqual([]);
    expect(world.workflows.started).toEqual([]);
  });

  it('answers 409 while another live import holds the lock, and takes over a finished one', async () => {
    const world = setup([makeImage({ properties: { [IMPORT_LOCK]: 'other-task' } })]);
    const other = otherImport();
    await world.tasks.create(other);
    expect(
      await failure(world.service.requestImport(alice, ID, importBody('web-download', URI), 'r')),
    ).toEqual({
      kind: 'conflict',
      message: `Image ${ID} has an active import task other-task: a prior operation is still in progress.`,
    });
    world.tasks.records.set('other-task', transitionTask(other, 'failure', NOW, 48, { message: 'died' }));
    const task = await world.service.requestImport(alice, ID, importBody('web-download', URI), 'r');
    expect(world.repo.stored(ID).properties[IMPORT_LOCK]).toBe(task.id);
  });

  it('undoes the lock and fails the task when the state machine cannot be started', async () => {
    const world = setup();
    await stage(world);
    world.workflows.failNext = new Error('states unavailable');
    await expect(world.service.requestImport(alice, ID, importBody('glance-direct'), 'r')).rejects.toThrow(
      'states unavailable',
    );
    const image = world.repo.stored(ID);
    expect(image.status).toBe('queued');
    expect(image.properties[IMPORT_LOCK]).toBeUndefined();
    expect(image.properties[FAILED_IMPORT]).toBe('The import could not be started.');
    expect(world.tasks.all().map((task) => task.status)).toEqual(['failure']);
  });

  it('re-applies the lock over a metadata write that landed first, and after a transaction conflict', async () => {
    const world = setup();
    world.repo.races.interfere((stored) => ({ ...stored, name: 'renamed' }));
    world.repo.races.failUpdates(1, 1);
    const task = await world.service.requestImport(alice, ID, importBody('web-download', URI), 'r');
    expect(world.repo.stored(ID)).toMatchObject({ name: 'renamed', properties: { [IMPORT_LOCK]: task.id } });
  });

  it('gives up on the lock with StaleWriteError once the retry budget is spent, starting nothing', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'Date'] });
    const world = setup();
    world.repo.races.failUpdates(Number.POSITIVE_INFINITY);
    const result = world.service.requestImport(alice, ID, importBody('web-download', URI), 'r').then(
      () => undefined,
      (error: unknown) => error,
    );
    await vi.advanceTimersByTimeAsync(25_000);
    expect(await result).toBeInstanceOf(StaleWriteError);
    expect(world.repo.races.attempts).toBeGreaterThan(5);
    expect(world.repo.stored(ID)).toEqual(makeImage());
    expect(world.tasks.all()).toEqual([]);
    expect(world.workflows.started).toEqual([]);
  });
});

describe('ImportService.legacyImport (POST /v2/tasks, type import)', () => {
  const legacyInput = (uri: string = URI) => ({
    import_from: uri,
    image_properties: { name: 'legacy', disk_format: 'raw', container_format: 'bare' },
  });

  it('creates the image, locks it and starts a web-download into it', async () => {
    const world = setup([]);
    const task = await world.service.legacyImport(alice, legacyInput(), 'req-9');
    expect(task).toMatchObject({ type: 'import', status: 'pending', owner: 'projA', request_id: 'req-9' });
    const input = startedInput(world);
    expect(input).toEqual({ task_id: task.id, image_id: task.image_id, source: { kind: 'url', uri: URI } });
    expect(world.repo.stored(input.image_id)).toMatchObject({
      name: 'legacy',
      status: 'queued',
      properties: { [IMPORT_LOCK]: task.id },
      lease: { holder: task.id, kind: 'import' },
    });
  });

  it('takes the lock after a transaction conflict on its write', async () => {
    const world = setup([]);
    world.repo.races.failUpdates(1);
    const task = await world.service.legacyImport(alice, legacyInput(), 'r');
    expect(world.repo.stored(task.image_id as string).properties[IMPORT_LOCK]).toBe(task.id);
    expect(world.repo.races.attempts).toBe(2);
  });

  it('refuses a URI the filter refuses before it creates anything', async () => {
    const world = setup([]);
    world.fetcher.refused.add('https://internal.example/x');
    expect(
      await failure(world.service.legacyImport(alice, legacyInput('https://internal.example/x'), 'r')),
    ).toEqual({
      kind: 'bad_request',
      message: 'URI for legacy import task does not pass filtering: https://internal.example/x',
    });
    expect(world.repo.records.size).toBe(0);
    expect(world.tasks.all()).toEqual([]);
  });
});

describe('the import lock', () => {
  const lockedBy = (holder: string, updatedAt: string) =>
    makeImage({ updated_at: updatedAt, properties: { [IMPORT_LOCK]: holder } });

  it('is taken over from an import that made no progress for an hour', async () => {
    const world = setup([lockedBy('ghost-task', '2026-11-22T01:11:00Z')]);
    const task = await world.service.requestImport(alice, ID, importBody('web-download', URI), 'r');
    expect(world.repo.stored(ID).properties[IMPORT_LOCK]).toBe(task.id);
  });

  it('is not taken over from one that moved within the hour', async () => {
    const world = setup([lockedBy('ghost-task', '2026-11-22T01:12:00Z')]);
    expect(
      (await failure(world.service.requestImport(alice, ID, importBody('web-download', URI), 'r'))).kind,
    ).toBe('conflict');
    expect(world.repo.stored(ID).properties[IMPORT_LOCK]).toBe('ghost-task');
  });
});

/** A locked, started import of DATA, by glance-direct (staged) or web-download. */
async function started(kind: 'glance-direct' | 'web-download') {
  const world = setup();
  if (kind === 'glance-direct') {
    await stage(world);
    // The staging bucket's object, as the ObjectStore sees it.
    world.objects.put({ bucket: BUCKETS.staging, key: stagingKey(ID) }, DATA);
  }
  const task = await world.service.requestImport(alice, ID, importBody(kind, URI), 'r');
  return { world, task, input: startedInput(world) };
}

describe('ImportService steps', () => {
  it('glance-direct: begin, copy and activate make the image active and the task a success', async () => {
    const { world, task, input } = await started('glance-direct');
    await world.service.begin(input);
    expect(world.repo.stored(ID).status).toBe('importing');
    expect(world.tasks.stored(task.id).status).toBe('processing');

    const data = await world.service.copy(input);
    const { md5, sha512 } = digestsOf(DATA);
    expect(data).toMatchObject({ size: DATA.length, checksum: md5, os_hash_value: sha512, format: 'raw' });
    expect(world.objects.data({ bucket: BUCKETS.images, key: data.blob_key })).toEqual(DATA);
    expect(world.repo.stored(ID).lease?.blob_key).toBe(data.blob_key);

    await world.service.activate({ ...input, data });
    const image = world.repo.stored(ID);
    expect(image).toMatchObject({
      status: 'active',
      size: DATA.length,
      checksum: md5,
      blob_key: data.blob_key,
    });
    expect(image.properties[IMPORT_LOCK]).toBeUndefined();
    expect(image.lease).toBeUndefined();
    expect(world.tasks.stored(task.id)).toMatchObject({ status: 'success', result: { image_id: ID } });
    // The staged source is removed.
    expect(world.objects.has({ bucket: BUCKETS.staging, key: stagingKey(ID) })).toBe(false);

    // A retried activation after the write landed changes nothing.
    await world.service.activate({ ...input, data });
    expect(world.repo.stored(ID)).toEqual(image);
  });

  it('web-download: copy streams the URL into the images bucket while hashing', async () => {
    const { world, input } = await started('web-download');
    await world.service.begin(input);
    const data = await world.service.copy(input);
    expect(world.blobs.objects.get(data.blob_key)).toEqual(DATA);
    expect(data.os_hash_value).toBe(digestsOf(DATA).sha512);
  });

  it('copy refuses content that is not the declared disk_format and removes what it wrote', async () => {
    const world = setup([makeImage({ disk_format: 'qcow2' })]);
    world.fetcher.bodies.set(URI, DATA);
    await world.service.requestImport(alice, ID, importBody('web-download', URI), 'r');
    const input = startedInput(world);
    await world.service.begin(input);
    expect(await failure(world.service.copy(input))).toEqual({
      kind: 'bad_request',
      message: 'image content is raw but disk_format is qcow2',
    });
    expect(world.blobs.objects.size).toBe(0);
  });

  it('web-download: copy refuses a body over the size cap, announced or not, and leaves no blob', async () => {
    const { world, input } = await started('web-download');
    await world.service.begin(input);
    world.fetcher.bodies.set(URI, Buffer.alloc(CAP + 1));
    expect((await failure(world.service.copy(input))).kind).toBe('too_large');
    // Without a Content-Length the cap stops the stream on the block that passes it.
    world.fetcher.chunked.add(URI);
    expect((await failure(world.service.copy(input))).kind).toBe('too_large');
    expect(world.blobs.objects.size).toBe(0);
    expect(world.blobs.deleted).toHaveLength(1);
  });

  it('fail puts the image back to queued with the reason, releases the lock and fails the task', async () => {
    const { world, task, input } = await started('glance-direct');
    await world.service.begin(input);
    const data = await world.service.copy(input);
    await world.service.fail({ ...input, data, error: { Error: 'BadRequestError', Cause: 'bad bytes' } });
    const image = world.repo.stored(ID);
    expect(image.status).toBe('queued');
    expect(image.properties[IMPORT_LOCK]).toBeUndefined();
    expect(image.properties[FAILED_IMPORT]).toBe('bad bytes');
    expect(image.lease).toBeUndefined();
    expect(world.tasks.stored(task.id)).toMatchObject({ status: 'failure', message: 'bad bytes' });
    expect(world.blobs.deleted).toContain(data.blob_key);
  });

  it('fail and the stage roll-back retry their image writes after a transaction conflict', async () => {
    const { world, task, input } = await started('glance-direct');
    await world.service.begin(input);
    world.repo.races.failUpdates(1);
    await world.service.fail({ ...input, error: { Error: 'States.Timeout', Cause: '' } });
    expect(world.repo.stored(ID)).toMatchObject({
      status: 'queued',
      properties: { [FAILED_IMPORT]: 'The import took longer than its step may run.' },
    });
    expect(world.tasks.stored(task.id).status).toBe('failure');

    const staged = setup();
    // The first write (queued -> uploading) lands; the roll-back after the oversized body loses once.
    staged.repo.races.failUpdates(1, 1);
    expect((await failure(stage(staged, Buffer.alloc(CAP + 1)))).kind).toBe('too_large');
    expect(staged.repo.stored(ID).status).toBe('queued');
  });

  it('every step retries its image write after a transaction conflict', async () => {
    const { world, task, input } = await started('glance-direct');
    world.repo.races.failUpdates(1);
    await world.service.begin(input);
    world.repo.races.failUpdates(1);
    const data = await world.service.copy(input);
    world.repo.races.failUpdates(1);
    await world.service.activate({ ...input, data });
    expect(world.repo.stored(ID).status).toBe('active');
    expect(world.tasks.stored(task.id).status).toBe('success');
  });

  it('the task advances retry after a transaction conflict, and give up after 20 with StaleWriteError', async () => {
    const { world, task, input } = await started('glance-direct');
    world.tasks.races.failUpdates(1);
    await world.service.begin(input);
    expect(world.tasks.stored(task.id).status).toBe('processing');

    const data = await world.service.copy(input);
    world.tasks.races.failUpdates(Number.POSITIVE_INFINITY);
    const before = world.tasks.races.attempts;
    await expect(withoutBackoff(() => world.service.activate({ ...input, data }))).rejects.toBeInstanceOf(
      StaleWriteError,
    );
    expect(world.tasks.races.attempts - before).toBe(20);
    // The image write landed before: a retried Activate step finds it done and settles the task.
    expect(world.repo.stored(ID).status).toBe('active');
    world.tasks.races.failUpdates(0);
    await world.service.activate({ ...input, data });
    expect(world.tasks.stored(task.id).status).toBe('success');
  });
});

describe('ImportService.onUpload (S3 ObjectCreated)', () => {
  const event = (key: string, bucket = BUCKETS.uploads) => ({ bucket, key, etag: 'e1', sequencer: '01' });

  it('starts an import of an upload under images/<id>, once per event', async () => {
    const world = setup();
    world.objects.put({ bucket: BUCKETS.uploads, key: `images/${ID}` }, DATA);
    expect(await world.service.onUpload(event(`images/${ID}`))).toBe('started');
    const [task] = world.tasks.all();
    expect(task).toMatchObject({
      type: 'api_image_import',
      owner: 'projA',
      user_id: 's3-upload',
      image_id: ID,
    });
    expect(world.repo.stored(ID).properties[IMPORT_LOCK]).toBe(task?.id);
    expect(startedInput(world).source).toEqual({
      kind: 's3',
      bucket: BUCKETS.uploads,
      key: `images/${ID}`,
      delete: true,
    });
    expect(await world.service.onUpload(event(`images/${ID}`))).toBe('duplicate');
    expect(world.workflows.started).toHaveLength(1);
  });

  it('creates the image an upload under new/ describes', async () => {
    const world = setup([makeActiveImage({ id: 'a0000000-0000-4000-8000-000000000000' })]);
    world.objects.put({ bucket: BUCKETS.uploads, key: 'new/disk.img' }, DATA, {
      owner: 'projC',
      name: 'from-s3',
      'disk-format': 'raw',
    });
    expect(await world.service.onUpload(event('new/disk.img'))).toBe('started');
    const imageId = startedInput(world).image_id;
    expect(world.repo.stored(imageId)).toMatchObject({ name: 'from-s3', owner: 'projC', disk_format: 'raw' });
  });

  it('ignores other buckets and keys, and refuses an image that is not queued (recording why)', async () => {
    const world = setup([makeActiveImage()]);
    expect(await world.service.onUpload(event(`images/${ID}`, 'elsewhere'))).toBe('ignored');
    expect(await world.service.onUpload(event('misc/file'))).toBe('ignored');
    world.objects.put({ bucket: BUCKETS.uploads, key: `images/${ID}` }, DATA);
    expect(await world.service.onUpload(event(`images/${ID}`))).toBe('refused');
    expect(world.tasks.all()).toMatchObject([
      { status: 'failure', message: 'Image with status active cannot be target for import' },
    ]);
    expect(world.objects.has({ bucket: BUCKETS.uploads, key: `images/${ID}` })).toBe(false);
    expect(world.workflows.started).toEqual([]);
  });

  it('takes the lock after a transaction conflict on its write, and starts the import', async () => {
    const world = setup();
    world.objects.put({ bucket: BUCKETS.uploads, key: `images/${ID}` }, DATA);
    world.repo.races.failUpdates(1);
    expect(await world.service.onUpload(event(`images/${ID}`))).toBe('started');
    expect(world.repo.stored(ID).properties[IMPORT_LOCK]).toBe(startedInput(world).task_id);
  });

  it('refuses an upload while another import holds the image, and keeps the object it may be reading', async () => {
    const world = setup([makeImage({ properties: { [IMPORT_LOCK]: 'other-task' } })]);
    await world.tasks.create(otherImport());
    world.objects.put({ bucket: BUCKETS.uploads, key: `images/${ID}` }, DATA);
    expect(await world.service.onUpload(event(`images/${ID}`))).toBe('refused');
    expect(world.tasks.all().find((task) => task.id !== 'other-task')).toMatchObject({
      status: 'failure',
      message: `Image ${ID} has an active import task other-task: a prior operation is still in progress.`,
    });
    expect(world.objects.has({ bucket: BUCKETS.uploads, key: `images/${ID}` })).toBe(true);
    expect(world.repo.stored(ID).properties[IMPORT_LOCK]).toBe('other-task');
  });

  it('lets a lost race through to be retried (the event is redelivered), not refused', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'Date'] });
    const world = setup();
    world.repo.races.failUpdates(Number.POSITIVE_INFINITY);
    const result = world.service.onUpload(event(`images/${ID}`)).then(
      () => undefined,
      (error: unknown) => error,
    );
    await vi.advanceTimersByTimeAsync(25_000);
    expect(await result).toBeInstanceOf(StaleWriteError);
    expect(world.tasks.all()).toEqual([]);
    // A redelivery once the contention is over starts the import.
    world.repo.races.failUpdates(0);
    vi.useRealTimers();
    expect(await world.service.onUpload(event(`images/${ID}`))).toBe('started');
  });
});

describe('ImportService presigned multipart uploads', () => {
  it('plans parts of at least 8 MiB and presigns one URL each', async () => {
    const world = setup([makeImage()], 64 * 1024 * 1024);
    const session = await world.service.startMultipartUpload(alice, ID, { size: 20 * 1024 * 1024 });
    expect(session).toMatchObject({
      upload_id: 'mpu-1',
      bucket: BUCKETS.uploads,
      key: `images/${ID}`,
      part_size: 8 * 1024 * 1024,
      part_count: 3,
      expires_at: new Date(NOW.getTime() + 900_000).toISOString(),
      complete: `/v2/images/${ID}/multipart-upload/complete`,
    });
    expect(session.parts.map((part) => part.part_number)).toEqual([1, 2, 3]);
  });

  it('refuses sizes over the cap, bad part sizes and locked images', async () => {
    const world = setup();
    expect((await failure(world.service.startMultipartUpload(alice, ID, { size: CAP + 1 }))).kind).toBe(
      'too_large',
    );
    expect(
      (await failure(world.service.startMultipartUpload(alice, ID, { size: 100, part_size: 1024 }))).message,
    ).toBe('"part_size" must be between 5 MiB and 5 GiB.');
    const locked = setup([makeImage({ properties: { [IMPORT_LOCK]: 't' } })]);
    expect((await failure(locked.service.startMultipartUpload(alice, ID, { size: 100 }))).kind).toBe(
      'conflict',
    );
    expect(world.multipart.calls).toEqual([]);
  });

  it('completes and aborts with the parts and upload id given, after validating them', async () => {
    const world = setup();
    await world.service.completeMultipartUpload(alice, ID, {
      upload_id: 'mpu-1',
      parts: [{ part_number: 1, etag: '"e"' }],
    });
    await world.service.abortMultipartUpload(alice, ID, { upload_id: 'mpu-1' });
    expect(world.multipart.calls.map((call) => [call.op, call.detail])).toEqual([
      ['complete', { uploadId: 'mpu-1', parts: [{ partNumber: 1, etag: '"e"' }] }],
      ['abort', { uploadId: 'mpu-1' }],
    ]);
    expect(
      (await failure(world.service.completeMultipartUpload(alice, ID, { upload_id: 'mpu-1', parts: [] })))
        .kind,
    ).toBe('bad_request');
  });
});
