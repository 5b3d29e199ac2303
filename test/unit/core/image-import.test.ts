import { describe, expect, it } from 'vitest';
import { BadRequestError, ConflictError } from '#core/kernel/errors';
import { describeStepError } from '#core/tasks/step-error';
import { newTask, renderImageTask, renderTask, renderTaskListItem, transitionTask } from '#core/tasks/task';
import { createBodyFromMetadata, parseUploadKey } from '#core/transfer/s3-trigger';

const ID = '0b2c6a1e-6d2f-4a8e-9d36-0f1e2d3c4b5a';

describe('parseUploadKey', () => {
  it.each([
    [`images/${ID}`, { kind: 'existing', imageId: ID }],
    [`images/${ID.toUpperCase()}/disk.qcow2`, { kind: 'existing', imageId: ID }],
    ['new/my disk.img', { kind: 'new' }],
    ['new/', null],
    [`images/${ID}x`, null],
    ['other/thing', null],
    [`staging/${ID}`, null],
  ])('%s -> %j', (key, expected) => {
    expect(parseUploadKey(key)).toEqual(expected);
  });
});

describe('createBodyFromMetadata', () => {
  it('maps the documented metadata keys onto a create body', () => {
    expect(
      createBodyFromMetadata({
        owner: 'projA',
        name: 'n',
        'disk-format': 'qcow2',
        'min-disk': '3',
        tags: 'a, b,,c',
        'property-os_distro': 'debian',
        ignored: 'x',
      }),
    ).toEqual({
      owner: 'projA',
      body: {
        container_format: 'bare',
        name: 'n',
        disk_format: 'qcow2',
        min_disk: 3,
        tags: ['a', 'b', 'c'],
        os_distro: 'debian',
      },
    });
  });

  it('needs an owner and integer sizes', () => {
    expect(() => createBodyFromMetadata({ name: 'x' })).toThrow(BadRequestError);
    expect(() => createBodyFromMetadata({ owner: 'p', 'min-ram': '-1' })).toThrow(BadRequestError);
  });
});

describe('describeStepError', () => {
  it('reads the message from a local error or from a Lambda error envelope', () => {
    expect(describeStepError({ Error: 'BadRequestError', Cause: 'qcow2 image has a backing file' })).toBe(
      'qcow2 image has a backing file',
    );
    expect(
      describeStepError({
        Error: 'BadRequestError',
        Cause: JSON.stringify({ errorType: 'BadRequestError', errorMessage: 'too big', trace: ['at x'] }),
      }),
    ).toBe('too big');
    expect(describeStepError({ Error: 'States.Timeout', Cause: '' })).toBe(
      'The import took longer than its step may run.',
    );
    expect(describeStepError(undefined)).toBe('The import failed.');
  });
});

describe('tasks', () => {
  const created = new Date('2026-11-22T02:11:45.149Z');
  const task = newTask(
    {
      type: 'api_image_import',
      owner: 'projA',
      user_id: 'alice',
      request_id: 'req-1',
      image_id: ID,
      input: {},
    },
    created,
  );

  it('goes pending -> processing -> success and expires 48 hours after finishing', () => {
    const processing = transitionTask(task, 'processing', new Date('2026-11-22T02:11:46Z'), 48);
    expect(processing.expires_at).toBeNull();
    const done = transitionTask(processing, 'success', new Date('2026-11-22T02:11:47.500Z'), 48, {
      result: { image_id: ID },
    });
    expect(done).toMatchObject({
      status: 'success',
      result: { image_id: ID },
      expires_at: '2026-11-24T02:11:47.500Z',
    });
    expect(() => transitionTask(done, 'failure', new Date(), 48)).toThrow(ConflictError);
    expect(() => transitionTask(task, 'success', new Date(), 48)).toThrow(ConflictError);
  });

  it('renders the three views Glance has', () => {
    const done = transitionTask(task, 'failure', new Date('2026-11-22T02:11:45.916Z'), 48, { message: 'no' });
    expect(renderTask(done)).toMatchObject({
      created_at: '2026-11-22T02:11:45Z',
      expires_at: '2026-11-24T02:11:45Z',
      self: `/v2/tasks/${task.id}`,
      message: 'no',
    });
    expect(renderTask(task)).not.toHaveProperty('expires_at');
    expect(Object.keys(renderTaskListItem(done))).toEqual([
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
    expect(renderImageTask(done)).toMatchObject({
      created_at: '2026-11-22T02:11:45.149000',
      expires_at: '2026-11-24T02:11:45.916000',
      deleted: false,
      deleted_at: null,
      image_id: ID,
    });
  });
});
