/**
 * Every conditional write of every DynamoDB repository, against a fake document client whose
 * send() is scripted: a lost race (a transaction cancelled for a TransactionConflict or a failed
 * condition; a single write's ConditionalCheckFailedException or TransactionConflictException) is
 * a StaleWriteError the services retry, a create's failed condition is its ConflictError, and
 * any other error passes on as it is. No network: the fake answers every command.
 */
import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  ProvisionedThroughputExceededException,
  TransactionCanceledException,
  TransactionConflictException,
} from '@aws-sdk/client-dynamodb';
import {
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  TransactWriteCommand,
} from '@aws-sdk/lib-dynamodb';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DynamoEventMarkers } from '#adapters/dynamo/event-markers';
import { DynamoImageRepository } from '#adapters/dynamo/image-repository';
import { DynamoInstanceStore } from '#adapters/dynamo/instance-store';
import { DynamoMetadefRepository } from '#adapters/dynamo/metadef-repository';
import { DynamoReferenceRepository } from '#adapters/dynamo/reference-repository';
import { DynamoTaskRepository } from '#adapters/dynamo/task-repository';
import { newInstance } from '#core/instances/lifecycle';
import type { HostRecord, InstanceRecord } from '#core/instances/records';
import { newJob } from '#core/instances/work-queue';
import { ConflictError, HangarError, StaleWriteError } from '#core/kernel/errors';
import type { NamespaceRecord } from '#core/metadefs/metadefs';
import type { HistoryEntry, ReferenceRecord } from '#core/references/references';
import type { TaskRecord } from '#core/tasks/task';
import { alice, makeActiveImage, makeHost, makeImage, NOW } from '../core/fixtures.ts';

// ---- the fake client -------------------------------------------------------------------------

const $metadata = {};
/** A transaction of `items` items cancelled for `code` at item `at` (the others: None). */
const cancelled = (code: 'TransactionConflict' | 'ConditionalCheckFailed', at = 0, items = 2) =>
  new TransactionCanceledException({
    message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${code}]`,
    $metadata,
    CancellationReasons: Array.from({ length: Math.max(items, at + 1) }, (_, i) => ({
      Code: i === at ? code : 'None',
    })),
  });
const conditionFailed = () =>
  new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata });
const conflictingTransaction = () =>
  new TransactionConflictException({ message: 'Transaction is ongoing for the item', $metadata });
const throttled = () =>
  new ProvisionedThroughputExceededException({ message: 'Rate of requests exceeds capacity', $metadata });

/** The client every repository below is built on; its send() is what each test scripts. */
const client = DynamoDBDocumentClient.from(new DynamoDBClient({}));

let writes: Array<TransactWriteCommand | PutCommand>;

/** Reads find nothing; every write (transaction or Put) fails with `error()`. */
function failWritesWith(error: () => Error): void {
  writes = [];
  vi.spyOn(client, 'send').mockImplementation((async (command: unknown) => {
    if (command instanceof TransactWriteCommand || command instanceof PutCommand) {
      writes.push(command);
      throw error();
    }
    if (command instanceof QueryCommand) return { Items: [] };
    if (command instanceof GetCommand) return {};
    throw new Error(`the fake client was not scripted for ${String(command)}`);
  }) as never);
}

async function outcome(write: () => Promise<unknown>): Promise<unknown> {
  try {
    return await write();
  } catch (error) {
    return error;
  }
}

// ---- records ---------------------------------------------------------------------------------

const TABLE = 'hangar';
const image = makeImage();
const moved = makeImage({ version: image.version + 1, name: 'renamed' });

const task: TaskRecord = {
  id: '0b0c1f43-3c6d-4d47-9d3a-3f0b5c1c2a11',
  type: 'import',
  status: 'pending',
  owner: 'projA',
  user_id: 'alice',
  request_id: 'req-1',
  image_id: image.id,
  input: {},
  result: null,
  message: '',
  created_at: '2026-11-22T02:11:29.678Z',
  updated_at: '2026-11-22T02:11:29.678Z',
  expires_at: null,
  version: 1,
};

const reference: ReferenceRecord = {
  namespace: 'projA',
  name: 'app',
  tag: 'prod',
  image_id: image.id,
  created_at: '2026-11-22T02:11:29Z',
  updated_at: '2026-11-22T02:11:29Z',
  updated_by: 'alice@projA',
  version: 1,
};
const entry: HistoryEntry = {
  namespace: 'projA',
  name: 'app',
  tag: 'prod',
  seq: 2,
  action: 'move',
  from: image.id,
  to: image.id,
  by: 'alice@projA',
  at: '2026-11-22T02:11:29Z',
};

const namespace: NamespaceRecord = {
  id: '5d7e1b5a-3d0e-4a1e-8f0b-6f1e2d3c4b5a',
  namespace: 'OS::Compute::Probe',
  visibility: 'public',
  protected: false,
  owner: 'projA',
  created_at: '2026-11-22T02:11:29Z',
  updated_at: '2026-11-22T02:11:29Z',
  version: 1,
  associations: [],
};

const host: HostRecord = makeHost();
const instance: InstanceRecord = newInstance({
  id: '6f2c8a1e-1d2b-4c3d-8e9f-0a1b2c3d4e5f',
  request: { name: 'web-1', image: image.id, vcpus: 1, ram_mb: 256, disk_gb: 1, user_data: null },
  image: makeActiveImage(),
  principal: alice,
  host,
  buildJobId: '7a3b9c2d-2e3f-4a5b-9c6d-1e2f3a4b5c6d',
  now: NOW,
});
const running: InstanceRecord = { ...instance, stage: 'Running', pending_job: null, version: 2 };
const destroyed: InstanceRecord = {
  ...running,
  stage: 'Inexistent',
  destroyed_at: '2026-11-22T03:00:00Z',
  version: 3,
};
const job = newJob({ id: '7a3b9c2d-2e3f-4a5b-9c6d-1e2f3a4b5c6d', kind: 'build', instance, now: NOW });
const claimedJob = { ...job, status: 'claimed' as const, version: job.version + 1 };
const doneJob = {
  ...claimedJob,
  status: 'done' as const,
  finished_at: '2026-11-22T03:00:00.000Z',
  version: claimedJob.version + 1,
};

// ---- the writes ------------------------------------------------------------------------------

const images = new DynamoImageRepository(client, TABLE);
const tasks = new DynamoTaskRepository(client, TABLE);
const references = new DynamoReferenceRepository(client, TABLE);
const metadefs = new DynamoMetadefRepository(client, TABLE);
const store = new DynamoInstanceStore(client, TABLE);

interface Write {
  name: string;
  /** A transaction, or one conditional PutItem. */
  sends: 'transaction' | 'put';
  write: () => Promise<unknown>;
  /** What the write is conditioned on, if not the version read. */
  condition?: RegExp;
}

/** Conditioned on the version read: a lost race is a StaleWriteError. */
const VERSIONED: Write[] = [
  { name: 'image update', sends: 'transaction', write: () => images.update(image, moved) },
  {
    name: 'image membership update',
    sends: 'transaction',
    write: () =>
      images.updateMembership(image, moved, {
        put: {
          image_id: image.id,
          member_id: 'projB',
          status: 'pending',
          created_at: image.created_at,
          updated_at: image.created_at,
        },
      }),
  },
  { name: 'task update', sends: 'transaction', write: () => tasks.update(task, { ...task, version: 2 }) },
  {
    name: 'reference move',
    sends: 'transaction',
    write: () => references.move(reference, { ...reference, version: 2 }, entry),
  },
  {
    name: 'metadef namespace update',
    sends: 'put',
    write: () => metadefs.updateNamespace(namespace, { ...namespace, version: 2 }),
  },
  {
    name: 'metadef namespace rename',
    sends: 'transaction',
    write: () => metadefs.updateNamespace(namespace, { ...namespace, namespace: 'OS::Renamed', version: 2 }),
  },
  {
    name: 'metadef namespace delete',
    sends: 'transaction',
    write: () => metadefs.deleteNamespace(namespace),
  },
  {
    name: 'instance create (with its job and host use)',
    sends: 'transaction',
    write: () => store.createInstance(instance, job, host),
    // On the host as placement read it: capacity unchanged, use within it.
    condition: /vcpus = :cv AND .*used_vcpus <= :lv/,
  },
  { name: 'instance update', sends: 'transaction', write: () => store.updateInstance(instance, running) },
  {
    name: 'instance update with a new job',
    sends: 'transaction',
    write: () => store.updateInstance(running, { ...running, version: 3 }, { ...job, kind: 'stop' }),
  },
  {
    name: 'job finish applied to its instance (destroying it)',
    sends: 'transaction',
    write: () =>
      store.finishJob({ previous: claimedJob, next: doneJob }, { previous: running, next: destroyed }),
  },
  {
    name: 'destroy without a host',
    sends: 'transaction',
    write: () =>
      store.destroyWithoutHost(
        { previous: running, next: destroyed },
        { previous: claimedJob, next: doneJob },
      ),
  },
  { name: 'job claim', sends: 'put', write: () => store.claimJob(job, claimedJob, NOW) },
  { name: 'job update', sends: 'put', write: () => store.updateJob(claimedJob, doneJob) },
];

/** Conditioned on the item's absence: a failed condition is "already exists". */
const CREATES: Write[] = [
  { name: 'image create', sends: 'transaction', write: () => images.create(image) },
  { name: 'task create', sends: 'transaction', write: () => tasks.create(task) },
  {
    name: 'reference create',
    sends: 'transaction',
    write: () => references.create({ ...reference }, { ...entry, seq: 1, action: 'create' }),
  },
];

/** How each kind of write loses a race on real DynamoDB. */
const LOST_RACES = {
  transaction: [
    ['a TransactionConflict', () => cancelled('TransactionConflict')],
    ['a failed condition', () => cancelled('ConditionalCheckFailed')],
  ],
  put: [
    ['a TransactionConflictException', conflictingTransaction],
    ['a ConditionalCheckFailedException', conditionFailed],
  ],
} as const;

beforeEach(() => {
  writes = [];
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('every versioned write', () => {
  for (const { name, sends, write, condition } of VERSIONED) {
    describe(name, () => {
      for (const [how, error] of LOST_RACES[sends]) {
        it(`is a StaleWriteError when it loses a race to ${how}`, async () => {
          failWritesWith(error);

          const thrown = await outcome(write);

          expect(thrown).toBeInstanceOf(StaleWriteError);
          expect(writes).toHaveLength(1);
          expect(writes[0]).toBeInstanceOf(sends === 'put' ? PutCommand : TransactWriteCommand);
        });
      }

      it('passes any other error on as it is', async () => {
        const error = throttled();
        failWritesWith(() => error);

        expect(await outcome(write)).toBe(error);
      });

      it(`is conditioned on ${condition ? 'what it read' : 'the version it read'}`, async () => {
        failWritesWith(throttled);

        await outcome(write);

        const input = writes[0]?.input as Record<string, unknown>;
        const conditions = JSON.stringify(
          'TransactItems' in input ? input.TransactItems : input,
          (key, value) => (key === 'Item' ? undefined : value),
        );
        expect(conditions).toMatch(condition ?? /version = :(expected|v)\b/);
      });
    });
  }
});

describe('every create', () => {
  for (const { name, write } of CREATES) {
    describe(name, () => {
      it('is a ConflictError ("already exists") when its condition fails', async () => {
        failWritesWith(() => cancelled('ConditionalCheckFailed'));

        const thrown = await outcome(write);

        expect(thrown).toBeInstanceOf(ConflictError);
        expect((thrown as Error).message).toMatch(/already exists/);
      });

      it('is a StaleWriteError when it loses a race to a TransactionConflict', async () => {
        failWritesWith(() => cancelled('TransactionConflict'));

        expect(await outcome(write)).toBeInstanceOf(StaleWriteError);
      });

      it('passes any other error on as it is', async () => {
        const error = throttled();
        failWritesWith(() => error);

        expect(await outcome(write)).toBe(error);
      });
    });
  }
});

describe('writes whose refusal has a meaning of its own', () => {
  it('a reference delete that loses a race is a conflict to retry, whatever the cause', async () => {
    for (const error of [cancelled('TransactionConflict'), cancelled('ConditionalCheckFailed')]) {
      failWritesWith(() => error);

      const thrown = await outcome(() => references.delete(reference, { ...entry, action: 'delete' }));

      expect(thrown).toBeInstanceOf(HangarError);
      expect((thrown as HangarError).kind).toBe('conflict');
    }
  });

  it('a metadef rename onto a taken name is "exists"; a lost race on the old record is stale', async () => {
    const rename = () =>
      metadefs.updateNamespace(namespace, { ...namespace, namespace: 'OS::Taken', version: 2 });

    failWritesWith(() => cancelled('ConditionalCheckFailed', 1));
    expect(await outcome(rename)).toBe('exists');

    failWritesWith(() => cancelled('ConditionalCheckFailed', 0));
    expect(await outcome(rename)).toBeInstanceOf(StaleWriteError);
  });

  it('metadef creates and child writes answer a failed condition, and a TransactionConflict is stale', async () => {
    const contents = { objects: [], properties: [], tags: [] };
    const tag = { name: 'probe', created_at: namespace.created_at, updated_at: namespace.created_at };

    failWritesWith(() => cancelled('ConditionalCheckFailed', 0, 1));
    expect(await outcome(() => metadefs.createNamespace(namespace, contents))).toBe('exists');
    expect(await outcome(() => metadefs.deleteChild(namespace, 'tag', 'probe'))).toBe(false);
    expect(await outcome(() => metadefs.putChild(namespace, 'tag', tag))).toBe('namespace_gone');
    expect(await outcome(() => metadefs.replaceTags(namespace, [], [tag]))).toBe('namespace_gone');

    failWritesWith(() => cancelled('TransactionConflict', 0, 1));
    for (const write of [
      () => metadefs.createNamespace(namespace, contents),
      () => metadefs.deleteChild(namespace, 'tag', 'probe'),
      () => metadefs.putChild(namespace, 'tag', tag),
      () => metadefs.replaceTags(namespace, [], [tag]),
    ])
      expect(await outcome(write)).toBeInstanceOf(StaleWriteError);
  });

  it('an S3 event claimed before reads back the first claim; a TransactionConflictException is stale', async () => {
    const markers = new DynamoEventMarkers(client, TABLE);
    const proposal = { eventId: 'b/k#1#s#e', taskId: 't-2', imageId: 'i-2', done: false };

    failWritesWith(conditionFailed);
    vi.mocked(client.send).mockImplementationOnce((async () => {
      throw conditionFailed();
    }) as never);
    vi.mocked(client.send).mockImplementationOnce((async () => ({
      Item: { task_id: 't-1', image_id: 'i-1', done: true },
    })) as never);
    expect(await markers.claim(proposal)).toEqual({ ...proposal, taskId: 't-1', imageId: 'i-1', done: true });

    failWritesWith(conflictingTransaction);
    expect(await outcome(() => markers.claim(proposal))).toBeInstanceOf(StaleWriteError);
  });
});
