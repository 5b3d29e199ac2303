/**
 * The optimistic writes that run through retryOnStale with a count of attempts (lease renewals,
 * lease recovery, task advances, metadefs namespace changes), over the fakes: a lost race
 * (failUpdates: a TransactionConflict, the write changes nothing) is retried on a fresh read, a
 * real concurrent change is decided afresh, and running out of attempts answers each one's contract.
 */
import { describe, expect, it } from 'vitest';
import type { ImageLease } from '#core/images/image';
import { LeaseHeartbeat } from '#core/images/lease';
import { LeaseRecovery } from '#core/images/recovery';
import { ForbiddenError, StaleWriteError } from '#core/kernel/errors';
import type { MetadefRepository, NamespaceRecord } from '#core/metadefs/metadefs';
import { MetadefsService } from '#core/metadefs/metadefs';
import { advanceTask } from '#core/tasks/advance';
import { newTask } from '#core/tasks/task';
import { withoutBackoff } from '../../helpers/fakes/backoff.ts';
import {
  FakeBlobStore,
  FakeImageRepository,
  FakeObjectStore,
  FakeTaskRepository,
} from '../../helpers/fakes/storage.ts';
import { admin, makeImage, NOW } from './fixtures.ts';

const ID = makeImage().id;
const clock = () => NOW;

function withTask() {
  const tasks = new FakeTaskRepository();
  const task = newTask(
    {
      id: 'task-1',
      type: 'import',
      owner: 'projA',
      user_id: 'alice',
      request_id: 'r',
      image_id: ID,
      input: {},
    },
    NOW,
  );
  tasks.records.set(task.id, task);
  return { tasks, task };
}

describe('advanceTask', () => {
  it('retries after a transaction conflict and lands once', async () => {
    const { tasks, task } = withTask();
    tasks.races.failUpdates(1);
    await advanceTask(tasks, task.id, 'processing', clock, 48);
    expect(tasks.stored(task.id)).toMatchObject({ status: 'processing', version: task.version + 1 });
    expect(tasks.races.attempts).toBe(2);
  });

  it('decides afresh when another writer finished the task first', async () => {
    const { tasks, task } = withTask();
    tasks.races.interfere((stored) => ({ ...stored, status: 'failure', message: 'other' }));
    await advanceTask(tasks, task.id, 'processing', clock, 48);
    expect(tasks.stored(task.id)).toMatchObject({ status: 'failure', message: 'other' });
    expect(tasks.races.attempts).toBe(1);
  });

  it('gives the StaleWriteError back after 20 lost races, the task unchanged', async () => {
    const { tasks, task } = withTask();
    tasks.races.failUpdates(Number.POSITIVE_INFINITY);
    await expect(withoutBackoff(() => advanceTask(tasks, task.id, 'processing', clock, 48))).rejects.toThrow(
      StaleWriteError,
    );
    expect(tasks.races.attempts).toBe(20);
    expect(tasks.stored(task.id)).toEqual(task);
  });
});

const uploadLease: ImageLease = {
  holder: 'h1',
  kind: 'upload',
  expires_at: '2026-11-22T02:11:00.000Z',
  blob_key: `images/${ID}/partial`,
};
const saving = () => makeImage({ status: 'saving', lease: uploadLease });

describe('LeaseHeartbeat renewals', () => {
  it('retries a renewal after a transaction conflict', async () => {
    const repo = new FakeImageRepository(saving());
    repo.races.failUpdates(1);
    const beat = new LeaseHeartbeat(repo, ID, 'h1', 60_000, clock);
    await beat.note({ multipart_upload_id: 'mpu-1' });
    expect(repo.stored(ID).lease).toEqual({
      ...uploadLease,
      multipart_upload_id: 'mpu-1',
      expires_at: new Date(NOW.getTime() + 60_000).toISOString(),
    });
    expect(repo.races.attempts).toBe(2);
    expect(beat.lost).toBe(false);
  });

  it('gives the StaleWriteError back after 20 lost races without calling the lease lost', async () => {
    const repo = new FakeImageRepository(saving());
    repo.races.failUpdates(Number.POSITIVE_INFINITY);
    const beat = new LeaseHeartbeat(repo, ID, 'h1', 60_000, clock);
    await expect(withoutBackoff(() => beat.renew())).rejects.toThrow(StaleWriteError);
    expect(repo.races.attempts).toBe(20);
    expect(repo.stored(ID)).toEqual(saving());
    expect(beat.lost).toBe(false);
  });
});

describe('LeaseRecovery.recover', () => {
  function world() {
    const repo = new FakeImageRepository(saving());
    const blobs = new FakeBlobStore();
    const recovery = new LeaseRecovery({
      repo,
      leases: repo,
      tasks: new FakeTaskRepository(),
      blobs,
      objects: new FakeObjectStore(),
      taskTtlHours: 48,
      clock,
    });
    return { repo, blobs, recovery };
  }

  it('takes an expired lease over after a transaction conflict, then frees its blob once', async () => {
    const { repo, blobs, recovery } = world();
    repo.races.failUpdates(1);
    expect(await recovery.recover(ID)).toBe('recovered');
    expect(repo.stored(ID).status).toBe('queued');
    expect(repo.stored(ID).lease).toBeUndefined();
    expect(repo.races.attempts).toBe(2);
    expect(blobs.deleted).toEqual([uploadLease.blob_key]);
  });

  it('gives the StaleWriteError back after 20 lost races, freeing nothing', async () => {
    const { repo, blobs, recovery } = world();
    repo.races.failUpdates(Number.POSITIVE_INFINITY);
    await expect(withoutBackoff(() => recovery.recover(ID))).rejects.toThrow(StaleWriteError);
    expect(repo.races.attempts).toBe(20);
    expect(repo.stored(ID)).toEqual(saving());
    expect(blobs.deleted).toEqual([]);
  });
});

describe('MetadefsService namespace changes', () => {
  const namespace: NamespaceRecord = {
    id: 'ns-1',
    namespace: 'OS::Test',
    visibility: 'public',
    protected: false,
    owner: 'admin-project',
    created_at: '2026-11-22T02:11:29Z',
    updated_at: '2026-11-22T02:11:29Z',
    version: 1,
    associations: [],
  };

  /** Only what a namespace DELETE reads and writes; deletes lose `conflicts` races first. */
  function world(conflicts: number, meanwhile?: (stored: NamespaceRecord) => NamespaceRecord) {
    const state = { stored: namespace as NamespaceRecord | null, reads: 0, deletes: 0 };
    const repo = {
      isSeeded: async () => true,
      getNamespace: async () => {
        state.reads += 1;
        return state.stored && structuredClone(state.stored);
      },
      deleteNamespace: async (seen: NamespaceRecord) => {
        state.deletes += 1;
        if (meanwhile && state.stored) {
          state.stored = meanwhile(state.stored);
          meanwhile = undefined;
        }
        if (state.deletes <= conflicts || state.stored?.version !== seen.version)
          throw new StaleWriteError('namespace changed meanwhile');
        state.stored = null;
      },
    } as Partial<MetadefRepository> as MetadefRepository;
    const service = new MetadefsService(repo, {
      version: 'v',
      resourceTypes: [],
      namespaces: [],
      owner: 'o',
    });
    return { state, service };
  }

  it('re-reads and deletes after a transaction conflict', async () => {
    const { state, service } = world(1);
    await service.deleteNamespace(admin, namespace.namespace);
    expect(state).toEqual({ stored: null, reads: 2, deletes: 2 });
  });

  it('decides afresh on the fresh record: made protected meanwhile, the delete is refused', async () => {
    const { state, service } = world(0, (stored) => ({ ...stored, protected: true, version: 2 }));
    await expect(service.deleteNamespace(admin, namespace.namespace)).rejects.toThrow(ForbiddenError);
    expect(state.stored).toMatchObject({ protected: true });
    expect(state.reads).toBe(2);
  });

  it('gives the StaleWriteError back after six lost races', async () => {
    const { state, service } = world(Number.POSITIVE_INFINITY);
    await expect(withoutBackoff(() => service.deleteNamespace(admin, namespace.namespace))).rejects.toThrow(
      StaleWriteError,
    );
    expect(state).toEqual({ stored: namespace, reads: 6, deletes: 6 });
  });
});
