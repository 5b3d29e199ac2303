/**
 * S3-upload imports end to end, through the real SDK against the local stand-ins: an object in
 * the upload bucket, s3rver's event, the S3 trigger, the import state machine in
 * aws-local-stepfunctions, DynamoDB Local. Also the format checks on PUT /file, presigned
 * multipart uploads, the tasks API and export.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { S3EventRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceConfig } from '#platform/config';
import { handler as s3Trigger } from '../../functions/triggers/s3-upload.ts';
import { toAwsRecord } from '../../local/s3-events.ts';
import { standInDynamo } from '../helpers/aws.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { errorMessage, ImagesApi, peek } from '../helpers/images.ts';
import {
  imageTasks,
  listKeys,
  md5,
  patternBytes,
  putUpload,
  qcow2WithBackingFile,
  qemuImg,
  s3Client,
  sha512,
  showImage,
  type TaskView,
  waitForImport,
  waitForTask,
} from '../helpers/imports.ts';

const MiB = 1024 * 1024;

let t: TestBackend;
let api: ImagesApi;
let scratch: string;
const events: S3EventRecord[] = [];

beforeAll(async () => {
  t = await startTestBackend();
  api = new ImagesApi(t);
  scratch = mkdtempSync(join(tmpdir(), 'hangar-import-test-'));
  t.backend.onS3Event((record) => events.push(record));
});

afterAll(async () => {
  await t?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

async function queuedImage(body: object = {}) {
  return api.create('alice', { disk_format: 'raw', container_format: 'bare', ...body });
}

describe('S3-upload import', () => {
  it('turns an object put into the upload bucket into an active image with its digests and sizes', async () => {
    // Prepare: more than one 8 MiB block, not a multiple of it.
    const bytes = patternBytes(19 * MiB + 12345);
    const image = await queuedImage({ name: 's3-raw' });
    // Act
    await putUpload(`images/${image.id}`, bytes);
    const done = await waitForImport(t, image.id);
    // Assess
    expect(done).toMatchObject({
      status: 'active',
      size: bytes.length,
      virtual_size: bytes.length,
      checksum: md5(bytes),
      os_hash_algo: 'sha512',
      os_hash_value: sha512(bytes),
      os_glance_failed_import: '',
    });
    expect(done).not.toHaveProperty('os_glance_import_task');
    const download = await api.download('alice', image.id);
    expect(download.status).toBe(200);
    expect(md5(new Uint8Array(await download.arrayBuffer()))).toBe(md5(bytes));
    // Moved: gone from the upload bucket, one immutable object in the images bucket.
    expect(await listKeys('uploads', `images/${image.id}`)).toEqual([]);
    expect(await listKeys('images', `images/${image.id}/`)).toHaveLength(1);
    const tasks = await imageTasks(t, image.id, 'alice');
    expect(tasks).toHaveLength(1);
    expect(tasks[0]).toMatchObject({
      type: 'api_image_import',
      status: 'success',
      result: { image_id: image.id },
    });
  });

  it('reports the virtual size of a qcow2 upload', async () => {
    const path = join(scratch, 'small.qcow2');
    await qemuImg('create', '-f', 'qcow2', path, '1G');
    const bytes = readFileSync(path);
    const image = await queuedImage({ disk_format: 'qcow2' });
    await putUpload(`images/${image.id}/small.qcow2`, bytes);
    const done = await waitForImport(t, image.id);
    expect(done).toMatchObject({
      status: 'active',
      size: bytes.length,
      virtual_size: 1024 ** 3,
      checksum: md5(bytes),
    });
  });
});

describe('S3-upload idempotency', () => {
  it('changes nothing when S3 delivers the same event again, during or after the import', async () => {
    // Prepare: every delivery of this object's event is repeated twice more, at once.
    const bytes = patternBytes(3 * MiB, 7);
    const image = await queuedImage();
    const key = `images/${image.id}`;
    const repeats: Array<Promise<unknown>> = [];
    const off = t.backend.onS3Event((record) => {
      if (record.s3.object.key !== key || !record.eventName.startsWith('ObjectCreated:')) return;
      for (let i = 0; i < 2; i++) repeats.push(s3Trigger({ Records: [toAwsRecord(record)] }));
    });
    // Act
    await putUpload(key, bytes);
    const done = await waitForImport(t, image.id);
    await Promise.all(repeats);
    off();
    const record = events.find((e) => e.s3.object.key === key && e.eventName.startsWith('ObjectCreated:'));
    const after = await s3Trigger({ Records: [toAwsRecord(record as S3EventRecord)] });
    // Assess
    expect(repeats).toHaveLength(2);
    expect(after.outcomes).toEqual(['duplicate']);
    expect(done).toMatchObject({ status: 'active', checksum: md5(bytes) });
    expect(await showImage(t, image.id)).toEqual(done);
    expect(await imageTasks(t, image.id)).toHaveLength(1);
    expect(await listKeys('images', `images/${image.id}/`)).toHaveLength(1);
  });
});

describe('S3-upload of a new image', () => {
  it('creates the image the object metadata describes under new/', async () => {
    const id = randomUUID();
    const bytes = patternBytes(MiB + 3, 11);
    await putUpload(`new/${id}.img`, bytes, {
      owner: 'projA',
      id,
      name: 'from metadata',
      'disk-format': 'raw',
      'container-format': 'bare',
      tags: 'a,b',
      'property-os_distro': 'debian',
    });
    const done = await waitForImport(t, id);
    expect(done).toMatchObject({
      id,
      owner: 'projA',
      name: 'from metadata',
      status: 'active',
      tags: ['a', 'b'],
      os_distro: 'debian',
      checksum: md5(bytes),
    });
    expect(await listKeys('uploads', 'new/')).toEqual([]);
  });

  it('records a refused upload as a failed task and removes the object', async () => {
    const image = await api.create('alice', { container_format: 'bare' });
    await putUpload(`images/${image.id}`, patternBytes(1024));
    let tasks: TaskView[] = [];
    for (let i = 0; i < 200 && tasks.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      tasks = await imageTasks(t, image.id);
    }
    await t.backend.idle();
    expect(tasks[0]).toMatchObject({
      status: 'failure',
      message: 'Property disk_format must be set prior to saving data.',
    });
    expect((await showImage(t, image.id)).status).toBe('queued');
    expect(await listKeys('uploads', `images/${image.id}`)).toEqual([]);
  });
});

describe('format inspection rejects dangerous images', () => {
  const cases: Array<[string, string, (dir: string) => Promise<string>, string]> = [
    ['a qcow2 naming a backing file', 'qcow2', qcow2WithBackingFile, 'qcow2 image has a backing file'],
    [
      'a qcow2 with an external data file',
      'qcow2',
      async (dir) => {
        await qemuImg(
          'create',
          '-f',
          'qcow2',
          '-o',
          `data_file=${join(dir, 'data.raw')}`,
          join(dir, 'd.qcow2'),
          '1M',
        );
        return join(dir, 'd.qcow2');
      },
      'qcow2 image uses an external data file',
    ],
    [
      'a monolithicFlat vmdk (its extent is another file)',
      'vmdk',
      async (dir) => {
        await qemuImg('create', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', join(dir, 'f.vmdk'), '1M');
        return join(dir, 'f.vmdk');
      },
      'vmdk image references external extents',
    ],
    [
      'qcow2 content declared raw',
      'raw',
      async (dir) => {
        await qemuImg('create', '-f', 'qcow2', join(dir, 'q.qcow2'), '1M');
        return join(dir, 'q.qcow2');
      },
      'image content is qcow2 but disk_format is raw',
    ],
    [
      'raw content declared qcow2',
      'qcow2',
      async (dir) => {
        writeFileSync(join(dir, 'r.raw'), patternBytes(MiB, 5));
        return join(dir, 'r.raw');
      },
      'image content is raw but disk_format is qcow2',
    ],
  ];

  it.each(cases)(
    'refuses %s with a clear reason and leaves no blob',
    async (_name, diskFormat, make, reason) => {
      // Prepare
      const dir = mkdtempSync(join(scratch, 'bad-'));
      const bytes = readFileSync(await make(dir));
      const image = await queuedImage({ disk_format: diskFormat });
      // Act
      await putUpload(`images/${image.id}`, bytes);
      const done = await waitForImport(t, image.id);
      // Assess: back to queued, the reason on the image and the task, nothing stored anywhere.
      expect(done.status).toBe('queued');
      expect(done.os_glance_failed_import).toContain(reason);
      expect(done).not.toHaveProperty('os_glance_import_task');
      expect(done).toMatchObject({ size: null, checksum: null, os_hash_value: null });
      const [task] = await imageTasks(t, image.id);
      expect(task).toMatchObject({ status: 'failure', result: null });
      expect(task?.message).toContain(reason);
      expect(await listKeys('images', `images/${image.id}`)).toEqual([]);
      expect(await listKeys('uploads', `images/${image.id}`)).toEqual([]);
    },
  );

  it('applies the same checks to PUT /file, and sets virtual_size there', async () => {
    const dir = mkdtempSync(join(scratch, 'put-'));
    const path = await qcow2WithBackingFile(dir);
    const bad = await queuedImage({ disk_format: 'qcow2' });
    const refused = await api.upload('alice', bad.id, readFileSync(path));
    expect(refused.status, await peek(refused)).toBe(400);
    expect(await errorMessage(refused)).toBe('qcow2 image has a backing file');
    expect((await showImage(t, bad.id)).status).toBe('queued');
    expect(await listKeys('images', `images/${bad.id}`)).toEqual([]);

    await qemuImg('create', '-f', 'qcow2', join(dir, 'ok.qcow2'), '2G');
    const good = await queuedImage({ disk_format: 'qcow2' });
    const accepted = await api.upload('alice', good.id, readFileSync(join(dir, 'ok.qcow2')));
    expect(accepted.status, await peek(accepted)).toBe(204);
    expect(await showImage(t, good.id)).toMatchObject({ status: 'active', virtual_size: 2 * 1024 ** 3 });
  });
});

describe('presigned multipart upload', () => {
  it('takes the parts straight to S3 and completes into the import', async () => {
    // Prepare
    const bytes = patternBytes(12 * MiB + 5, 13);
    const image = await queuedImage();
    // Act: the three calls a client makes, the parts going to S3 directly.
    const started = await t.request('POST', `/v2/images/${image.id}/multipart-upload`, {
      token: t.tokens.alice,
      body: { size: bytes.length, part_size: 5 * MiB },
    });
    expect(started.status, await peek(started)).toBe(201);
    const session = (await started.json()) as {
      upload_id: string;
      part_size: number;
      part_count: number;
      parts: Array<{ part_number: number; url: string }>;
      complete: string;
    };
    expect(session).toMatchObject({ part_size: 5 * MiB, part_count: 3 });
    const etags = [];
    for (const part of session.parts) {
      const start = (part.part_number - 1) * session.part_size;
      const put = await fetch(part.url, {
        method: 'PUT',
        body: bytes.subarray(start, start + session.part_size),
      });
      expect(put.status, await put.text()).toBe(200);
      etags.push({ part_number: part.part_number, etag: put.headers.get('etag') ?? '' });
    }
    const completed = await t.request('POST', session.complete, {
      token: t.tokens.alice,
      body: { upload_id: session.upload_id, parts: etags },
    });
    expect(completed.status, await peek(completed)).toBe(202);
    // Assess
    const done = await waitForImport(t, image.id);
    expect(done).toMatchObject({
      status: 'active',
      size: bytes.length,
      checksum: md5(bytes),
      os_hash_value: sha512(bytes),
    });
  });

  it('refuses other projects, missing sizes and images that are not queued', async () => {
    const image = await queuedImage();
    const bob = await t.request('POST', `/v2/images/${image.id}/multipart-upload`, {
      token: t.tokens.bob,
      body: { size: 10 },
    });
    expect(bob.status).toBe(404);
    const noSize = await t.request('POST', `/v2/images/${image.id}/multipart-upload`, {
      token: t.tokens.alice,
      body: {},
    });
    expect(noSize.status).toBe(400);
    const active = await api.createActive('alice', patternBytes(100));
    const conflict = await t.request('POST', `/v2/images/${active.id}/multipart-upload`, {
      token: t.tokens.alice,
      body: { size: 10 },
    });
    expect(conflict.status).toBe(409);
  });
});

describe('tasks API', () => {
  let image: { id: string };
  let task: TaskView;

  beforeAll(async () => {
    image = await queuedImage();
    await putUpload(`images/${image.id}`, patternBytes(2 * MiB, 17));
    await waitForImport(t, image.id);
    [task] = (await imageTasks(t, image.id)) as [TaskView];
  });

  it('is for admins only, as Glance’s tasks_api_access policy', async () => {
    for (const [method, path] of [
      ['GET', '/v2/tasks'],
      ['GET', `/v2/tasks/${task.id}`],
      ['POST', '/v2/tasks'],
    ] as const) {
      const response = await t.request(method, path, {
        token: t.tokens.alice,
        body: method === 'POST' ? {} : undefined,
      });
      expect(response.status, `${method} ${path}`).toBe(403);
      expect(await errorMessage(response)).toBe(
        'You are not authorized to complete tasks_api_access action.',
      );
    }
  });

  it('lists, filters and shows tasks', async () => {
    const listed = await t.request('GET', '/v2/tasks?status=success&limit=1000', { token: t.tokens.admin });
    expect(listed.status).toBe(200);
    const body = (await listed.json()) as {
      tasks: Array<Record<string, unknown>>;
      first: string;
      schema: string;
    };
    expect(body.schema).toBe('/v2/schemas/tasks');
    expect(body.tasks.every((x) => x.status === 'success')).toBe(true);
    const entry = body.tasks.find((x) => x.id === task.id);
    expect(Object.keys(entry ?? {})).toEqual([
      'id',
      'type',
      'status',
      'owner',
      'created_at',
      'updated_at',
      'self',
      'schema',
      'expires_at',
    ]);
    const shown = await t.request('GET', `/v2/tasks/${task.id}`, { token: t.tokens.admin });
    expect(shown.status).toBe(200);
    expect(await shown.json()).toMatchObject({
      id: task.id,
      type: 'api_image_import',
      status: 'success',
      owner: 'projA',
      result: { image_id: image.id },
      self: `/v2/tasks/${task.id}`,
      schema: '/v2/schemas/task',
    });
    const missing = await t.request('GET', `/v2/tasks/${randomUUID()}`, { token: t.tokens.admin });
    expect(missing.status).toBe(404);
    const paged = await t.request('GET', '/v2/tasks?limit=1&sort_dir=asc', { token: t.tokens.admin });
    const page = (await paged.json()) as { tasks: unknown[]; next?: string };
    expect(page.tasks).toHaveLength(1);
    expect(page.next).toMatch(/marker=/);
  });

  it('expires a finished task 48 hours later, with the TTL attribute on its items', async () => {
    const shown = (await (
      await t.request('GET', `/v2/tasks/${task.id}`, { token: t.tokens.admin })
    ).json()) as TaskView;
    const expires = Date.parse(shown.expires_at as string);
    expect(expires - Date.parse(shown.updated_at)).toBe(48 * 3600 * 1000);
    const ddb = standInDynamo(t.backend);
    try {
      const item = await ddb.send(
        new GetItemCommand({
          TableName: serviceConfig().tableName,
          Key: { pk: { S: `TASK#${task.id}` }, sk: { S: 'META' } },
        }),
      );
      const expiration = Number(item.Item?.expiration?.N);
      expect(Math.abs(expiration - expires / 1000)).toBeLessThan(1);
    } finally {
      ddb.destroy();
    }
  });

  it("shows an image's tasks to whoever may read the image, and nobody else", async () => {
    const own = await imageTasks(t, image.id, 'alice');
    expect(own[0]).toMatchObject({ id: task.id, image_id: image.id, deleted: false, deleted_at: null });
    const other = await t.request('GET', `/v2/images/${image.id}/tasks`, { token: t.tokens.bob });
    expect(other.status).toBe(404);
  });
});

describe('export', () => {
  it('converts an active image to vhd that qemu-img compares identical to the original', async () => {
    // Prepare: a raw disk with data and holes.
    const raw = Buffer.concat([patternBytes(3 * MiB, 19), Buffer.alloc(5 * MiB), patternBytes(MiB, 23)]);
    const image = await api.createActive('alice', raw);
    writeFileSync(join(scratch, 'original.raw'), raw);
    // Act
    const created = await t.request('POST', '/v2/tasks', {
      token: t.tokens.admin,
      body: { type: 'export', input: { image_id: image.id, format: 'vhd' } },
    });
    expect(created.status, await peek(created)).toBe(201);
    const pending = (await created.json()) as TaskView;
    expect(pending).toMatchObject({ type: 'export', status: 'pending' });
    const done = await waitForTask(t, pending.id);
    // Assess
    expect(done.status, done.message).toBe('success');
    const result = done.result as {
      export_location: string;
      bucket: string;
      key: string;
      os_hash_value: string;
    };
    expect(result.export_location).toBe(
      `s3://${serviceConfig().buckets.exports}/exports/${pending.id}/${image.id}.vhd`,
    );
    const s3 = s3Client();
    try {
      const object = await s3.send(new GetObjectCommand({ Bucket: result.bucket, Key: result.key }));
      const exported = Buffer.from(
        await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
      expect(sha512(exported)).toBe(result.os_hash_value);
      const sidecar = await s3.send(
        new GetObjectCommand({ Bucket: result.bucket, Key: `${result.key}.sha512` }),
      );
      expect(await sidecar.Body?.transformToString()).toBe(`${result.os_hash_value}  ${image.id}.vhd\n`);
      writeFileSync(join(scratch, 'exported.vhd'), exported);
    } finally {
      s3.destroy();
    }
    const info = JSON.parse(await qemuImg('info', '--output=json', join(scratch, 'exported.vhd'))) as {
      format: string;
    };
    expect(info.format).toBe('vpc');
    const compared = await qemuImg(
      'compare',
      '-f',
      'raw',
      '-F',
      'vpc',
      join(scratch, 'original.raw'),
      join(scratch, 'exported.vhd'),
    );
    expect(compared.trim()).toBe('Images are identical.');
  });

  it('refuses formats it does not make and images without data', async () => {
    const queued = await queuedImage();
    const badFormat = await t.request('POST', '/v2/tasks', {
      token: t.tokens.admin,
      body: { type: 'export', input: { image_id: queued.id, format: 'vdi' } },
    });
    expect(badFormat.status).toBe(400);
    const noData = await t.request('POST', '/v2/tasks', {
      token: t.tokens.admin,
      body: { type: 'export', input: { image_id: queued.id, format: 'qcow2' } },
    });
    expect(noData.status).toBe(409);
    const badType = await t.request('POST', '/v2/tasks', {
      token: t.tokens.admin,
      body: { type: 'bogus', input: {} },
    });
    expect(await errorMessage(badType)).toBe(
      "Provided object does not match schema 'task': 'bogus' is not one of ['import', 'export']",
    );
  });
});
