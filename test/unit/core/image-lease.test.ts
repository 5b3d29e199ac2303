import { describe, expect, it } from 'vitest';
import { ImageDataService } from '#core/data/image-data';
import type { BlobPutHooks, BlobStore, ObjectRef, ObjectStore } from '#core/data/ports';
import type { ImageLease, ImageRecord } from '#core/images/image';
import { ImagesService } from '#core/images/images-service';
import { LeaseHeartbeat, LeaseLost } from '#core/images/lease';
import type { ImageRepository, LeaseIndex } from '#core/images/ports';
import { freeImageData, LeaseRecovery } from '#core/images/recovery';
import { StaleWriteError } from '#core/kernel/errors';
import type { TaskRepository } from '#core/tasks/ports';
import type { TaskRecord } from '#core/tasks/task';
import { ImportService } from '#core/transfer/import';
import type { ImportInput } from '#core/transfer/import-model';
import { alice, makeImage, NOW, QUOTAS } from './fixtures.ts';

/** Records by id with the repository's version rule; `beforeUpdate` lets a test interleave a write. */
class FakeRepo implements ImageRepository, LeaseIndex {
  readonly records = new Map<string, ImageRecord>();
  beforeUpdate: ((previous: ImageRecord) => void) | undefined;
  queries = 0;
  async get(id: string) {
    const record = this.records.get(id);
    return record ? structuredClone(record) : null;
  }
  async create(image: ImageRecord) {
    this.records.set(image.id, structuredClone(image));
  }
  async update(previous: ImageRecord, next: ImageRecord) {
    const hook = this.beforeUpdate;
    this.beforeUpdate = undefined;
    hook?.(previous);
    const stored = this.records.get(previous.id);
    if (!stored || stored.version !== previous.version || next.version !== previous.version + 1)
      throw new StaleWriteError('stale');
    this.records.set(next.id, structuredClone(next));
  }
  async list() {
    return [];
  }
  async expiredLeases(before: Date | null, limit: number) {
    this.queries++;
    return [...this.records.values()]
      .filter((r) => r.lease && (before === null || Date.parse(r.lease.expires_at) <= before.getTime()))
      .sort((a, b) => (a.lease?.expires_at ?? '').localeCompare(b.lease?.expires_at ?? ''))
      .slice(0, limit)
      .map((r) => structuredClone(r));
  }
}

class FakeBlobs implements BlobStore {
  readonly deleted: string[] = [];
  readonly aborted: string[] = [];
  readonly prefixes: string[] = [];
  constructor(private readonly uploadId?: string) {}
  async put(_key: string, source: AsyncIterable<Buffer>, hooks: BlobPutHooks) {
    if (this.uploadId) await hooks.onMultipartStart?.(this.uploadId);
    let size = 0;
    for await (const block of source) {
      await hooks.onBlock(block);
      size += block.length;
    }
    return { size };
  }
  async get(): Promise<never> {
    throw new Error('not used');
  }
  async delete(key: string) {
    this.deleted.push(key);
  }
  async exists() {
    return false;
  }
  async presignedGet() {
    return '';
  }
  async abortMultipart(key: string, uploadId: string) {
    this.aborted.push(`${key}#${uploadId}`);
  }
  async deletePrefix(prefix: string) {
    this.prefixes.push(prefix);
    return 0;
  }
}

class FakeObjects implements ObjectStore {
  readonly deleted: ObjectRef[] = [];
  async open(): Promise<never> {
    throw new Error('not used');
  }
  async copy() {}
  async head(): ReturnType<ObjectStore['head']> {
    return null;
  }
  async delete(ref: ObjectRef) {
    this.deleted.push(ref);
  }
}

class FakeTasks implements TaskRepository {
  readonly tasks = new Map<string, TaskRecord>();
  async get(id: string) {
    return this.tasks.get(id) ?? null;
  }
  async create(task: TaskRecord) {
    this.tasks.set(task.id, task);
  }
  async update(_previous: TaskRecord, next: TaskRecord) {
    this.tasks.set(next.id, next);
  }
  async list() {
    return [];
  }
  async listForImage() {
    return [];
  }
}

const digester = () => ({
  update: async () => undefined,
  finish: async () => ({ md5: 'm'.repeat(32), sha512: 's'.repeat(128) }),
  cancel: () => undefined,
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A body whose second block waits until `release` is called. */
function gatedBody() {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  async function* body() {
    yield Buffer.alloc(1024, 1);
    await gate;
    yield Buffer.alloc(1024, 2);
  }
  return { body: body(), release };
}

function recoveryFor(repo: FakeRepo, blobs: FakeBlobs, objects: FakeObjects, tasks: FakeTasks, now: Date) {
  return new LeaseRecovery({ repo, leases: repo, tasks, blobs, objects, taskTtlHours: 48, clock: () => now });
}

describe('upload lease', () => {
  it('is taken in the write that moves the image to saving, names the blob and multipart upload, and ends with activation', async () => {
    // Prepare
    const repo = new FakeRepo();
    const image = makeImage();
    await repo.create(image);
    const blobs = new FakeBlobs('mpu-1');
    const service = new ImageDataService(
      repo,
      blobs,
      digester,
      (n) => Buffer.alloc(n),
      () => new Date(),
      60_000,
    );
    const { body, release } = gatedBody();
    const seen: Array<ImageLease | undefined> = [];

    // Act
    const upload = service.upload(alice, image.id, body, { sizeCap: 1 << 30 });
    await sleep(20);
    seen.push((await repo.get(image.id))?.lease);
    release();
    const active = await upload;

    // Assess
    const lease = seen[0];
    expect(lease).toMatchObject({ kind: 'upload', multipart_upload_id: 'mpu-1' });
    expect(lease?.blob_key).toMatch(new RegExp(`^images/${image.id}/`));
    expect(Date.parse(lease?.expires_at ?? '')).toBeGreaterThan(Date.now());
    expect(active.status).toBe('active');
    expect(active.blob_key).toBe(lease?.blob_key);
    expect((await repo.get(image.id))?.lease).toBeUndefined();
  });

  it('stops without activating when its heartbeat finds the lease recovered', async () => {
    // Prepare
    const repo = new FakeRepo();
    const image = makeImage();
    await repo.create(image);
    const blobs = new FakeBlobs();
    const service = new ImageDataService(
      repo,
      blobs,
      digester,
      (n) => Buffer.alloc(n),
      () => new Date(),
      30,
    );
    const { body, release } = gatedBody();
    const upload = service.upload(alice, image.id, body, { sizeCap: 1 << 30 });
    upload.catch(() => undefined);
    await sleep(5);
    const key = (await repo.get(image.id))?.lease?.blob_key;

    // Act: a sweep that believes the holder dead takes over (ignoring expiry), then bytes arrive.
    const recovery = recoveryFor(repo, blobs, new FakeObjects(), new FakeTasks(), new Date());
    expect(await recovery.recover(image.id, { everyLease: true })).toBe('recovered');
    await sleep(40);
    release();

    // Assess
    await expect(upload).rejects.toBeInstanceOf(LeaseLost);
    const after = await repo.get(image.id);
    expect(after?.status).toBe('queued');
    expect(after?.lease).toBeUndefined();
    expect(after?.properties.os_glance_failed_upload).toMatch(/upload was interrupted/);
    expect(blobs.deleted).toContain(key);
  });
});

describe('lease heartbeat', () => {
  it('renews at most every third of the lease and marks itself lost once the lease is gone', async () => {
    // Prepare
    const repo = new FakeRepo();
    const lease: ImageLease = { holder: 'h1', kind: 'upload', expires_at: NOW.toISOString() };
    await repo.create(makeImage({ status: 'saving', lease }));
    const beat = new LeaseHeartbeat(repo, makeImage().id, 'h1', 90).start();

    // Act
    await sleep(100);
    const renewed = await repo.get(makeImage().id);
    const stored = renewed as ImageRecord;
    await repo.update(stored, {
      ...stored,
      lease: { ...lease, holder: 'other' },
      version: stored.version + 1,
    });
    await sleep(60);
    await beat.stop();

    // Assess: 100 ms at one renewal per 30 ms is 3 writes, not one per block or per chunk.
    expect((renewed?.version ?? 0) - 3).toBeGreaterThanOrEqual(2);
    expect((renewed?.version ?? 0) - 3).toBeLessThanOrEqual(4);
    expect(Date.parse(renewed?.lease?.expires_at ?? '')).toBeGreaterThan(Date.now() - 100);
    expect(beat.lost).toBe(true);
    expect(() => beat.check()).toThrow(LeaseLost);
  });
});

describe('lease recovery', () => {
  const importLease: ImageLease = {
    holder: 'task-1',
    kind: 'import',
    task_id: 'task-1',
    expires_at: '2026-11-22T02:11:00.000Z',
    blob_key: 'images/x/partial',
    multipart_upload_id: 'mpu-9',
    source: { bucket: 'staging', key: 'dec8c320-a25d-4809-a4d9-96f9d61a425b' },
  };

  function importing(lease: ImageLease = importLease): ImageRecord {
    return makeImage({
      status: 'importing',
      lease,
      properties: { os_glance_import_task: 'task-1', os_glance_importing_to_stores: '' },
    });
  }

  it('puts an expired import back to queued with the reason, fails the task, releases the lock and removes what the lease names', async () => {
    // Prepare
    const repo = new FakeRepo();
    await repo.create(importing());
    const tasks = new FakeTasks();
    await tasks.create({ id: 'task-1', status: 'processing', version: 1 } as TaskRecord);
    const blobs = new FakeBlobs();
    const objects = new FakeObjects();

    // Act
    const summary = await recoveryFor(repo, blobs, objects, tasks, NOW).sweep();

    // Assess
    expect(summary.recovered).toEqual([makeImage().id]);
    const image = await repo.get(makeImage().id);
    expect(image?.status).toBe('queued');
    expect(image?.lease).toBeUndefined();
    expect(image?.properties.os_glance_import_task).toBeUndefined();
    expect(image?.properties.os_glance_failed_import).toMatch(/import \(task task-1\) was interrupted/);
    expect(tasks.tasks.get('task-1')?.status).toBe('failure');
    expect(tasks.tasks.get('task-1')?.message).toMatch(/interrupted/);
    expect(blobs.aborted).toEqual(['images/x/partial#mpu-9']);
    expect(blobs.deleted).toEqual(['images/x/partial']);
    expect(objects.deleted).toEqual([importLease.source]);
    expect(repo.queries).toBeGreaterThan(0);
  });

  it('leaves a lease that has not expired alone', async () => {
    const repo = new FakeRepo();
    await repo.create(importing({ ...importLease, expires_at: '2026-11-22T02:12:00.000Z' }));
    const blobs = new FakeBlobs();
    const summary = await recoveryFor(repo, blobs, new FakeObjects(), new FakeTasks(), NOW).sweep();
    expect(summary.recovered).toEqual([]);
    expect((await repo.get(makeImage().id))?.status).toBe('importing');
    expect(blobs.deleted).toEqual([]);
  });

  it('loses to a holder that renews between its read and its write', async () => {
    // Prepare
    const repo = new FakeRepo();
    await repo.create(importing());
    const blobs = new FakeBlobs();
    repo.beforeUpdate = (previous) => {
      // The live holder's heartbeat lands first.
      const renewed = {
        ...previous,
        lease: { ...importLease, expires_at: '2026-11-22T02:12:30.000Z' },
        version: previous.version + 1,
      };
      repo.records.set(previous.id, renewed);
    };

    // Act
    const outcome = await recoveryFor(repo, blobs, new FakeObjects(), new FakeTasks(), NOW).recover(
      makeImage().id,
    );

    // Assess
    expect(outcome).toBe('skipped');
    expect((await repo.get(makeImage().id))?.status).toBe('importing');
    expect(blobs.deleted).toEqual([]);
  });
});

describe('DELETE', () => {
  it('frees the blob, whatever the lease names, the staged object and everything under the prefix', async () => {
    const blobs = new FakeBlobs();
    const objects = new FakeObjects();
    const image = makeImage({ status: 'deleted', blob_key: null });
    await freeImageData({ blobs, objects, stagingBucket: 'staging', stagingKey: image.id }, image, {
      holder: 'h',
      kind: 'upload',
      expires_at: NOW.toISOString(),
      blob_key: 'images/k/1',
      multipart_upload_id: 'u',
    });
    expect(blobs.aborted).toEqual(['images/k/1#u']);
    expect(blobs.deleted).toEqual(['images/k/1']);
    expect(blobs.prefixes).toEqual([`images/${image.id}/`]);
    expect(objects.deleted).toEqual([{ bucket: 'staging', key: image.id }]);
  });
});

describe('import lease', () => {
  it('comes with the import lock, names the blob before copying it, and goes with a failure', async () => {
    // Prepare: a staged (uploading) image, and an S3 copy that looks at the lease when it runs.
    const repo = new FakeRepo();
    const image = makeImage({ status: 'uploading' });
    await repo.create(image);
    const tasks = new FakeTasks();
    const started: Record<string, unknown>[] = [];
    let leaseDuringCopy: ImageLease | undefined;
    const objects = new FakeObjects();
    objects.head = async () => ({ size: 4, pin: {}, metadata: {} });
    objects.copy = async () => {
      leaseDuringCopy = (await repo.get(image.id))?.lease;
      throw new Error('copy failed');
    };
    const imports = new ImportService({
      repo,
      images: new ImagesService(repo, QUOTAS),
      tasks,
      workflows: { start: async (_w, _n, input) => void started.push(input) },
      markers: { claim: async (m) => m, markDone: async () => undefined },
      blobs: new FakeBlobs(),
      imagesBucket: 'images',
      staging: new FakeBlobs(),
      stagingBucket: 'staging',
      uploadsBucket: 'uploads',
      objects,
      multipart: {
        start: async () => ({ uploadId: '', partUrls: [] }),
        complete: async () => {},
        abort: async () => {},
      },
      fetcher: { vet: async () => undefined, open: async () => Promise.reject(new Error('unused')) },
      digester,
      sharedBlock: (n) => Buffer.alloc(n),
      sizeCap: 1 << 30,
      taskTtlHours: 48,
      uploadUrlSeconds: 3600,
      leaseMs: 60_000,
    });

    // Act
    const task = await imports.requestImport(alice, image.id, { method: { name: 'glance-direct' } }, 'req-1');
    const locked = await repo.get(image.id);
    const input = started[0] as unknown as ImportInput;
    await imports.begin(input);
    const importing = await repo.get(image.id);
    const copy = imports.copy(input);
    await expect(copy).rejects.toThrow('copy failed');
    await imports.fail({ ...input, error: { Error: 'Error', Cause: 'copy failed' } });
    const failed = await repo.get(image.id);

    // Assess
    expect(locked?.lease).toMatchObject({
      holder: task.id,
      kind: 'import',
      task_id: task.id,
      source: { bucket: 'staging', key: image.id },
    });
    expect(locked?.properties.os_glance_import_task).toBe(task.id);
    expect(importing?.status).toBe('importing');
    expect(importing?.lease?.holder).toBe(task.id);
    expect(leaseDuringCopy?.blob_key).toMatch(new RegExp(`^images/${image.id}/`));
    expect(failed?.status).toBe('queued');
    expect(failed?.lease).toBeUndefined();
    expect(failed?.properties.os_glance_failed_import).toBe('copy failed');
  });
});
