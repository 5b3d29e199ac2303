import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { ConflictError } from '#core/kernel/errors';
import { isUuid } from '#core/kernel/ids';
import type { TaskListSpec, TaskRepository } from '#core/tasks/ports';
import { expirationEpoch, TASK_STATUSES, TASK_TYPES, type TaskRecord } from '#core/tasks/task';
import { IMAGE_TASK_PREFIX, imageTaskKey, TASK_KIND_ALL, taskKey, taskKindSort } from './keys.ts';
import { batchGetAll, getItem, queryAll } from './query.ts';
import { existsOrStale, versionedPut, versionedWrite } from './transact.ts';

const StoredTaskSchema = z.object({
  id: z.string(),
  type: z.enum(TASK_TYPES),
  status: z.enum(TASK_STATUSES),
  owner: z.string(),
  user_id: z.string(),
  request_id: z.string(),
  image_id: z.string().nullable(),
  input: z.record(z.string(), z.unknown()),
  result: z.record(z.string(), z.unknown()).nullable(),
  message: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  expires_at: z.string().nullable(),
  version: z.number().int(),
});

function taskItem(task: TaskRecord): Record<string, unknown> {
  const item: Record<string, unknown> = {
    ...taskKey(task.id),
    kind_pk: TASK_KIND_ALL,
    kind_sk: taskKindSort(task.created_at, task.id),
    // JSON text, as for images: input and result are free-form documents.
    data: JSON.stringify(task),
    version: task.version,
  };
  const expiration = expirationEpoch(task);
  if (expiration !== undefined) item.expiration = expiration;
  return item;
}

function pointerItem(task: TaskRecord): Record<string, unknown> {
  const item: Record<string, unknown> = {
    ...imageTaskKey(task.image_id as string, task.created_at, task.id),
    task_id: task.id,
  };
  const expiration = expirationEpoch(task);
  if (expiration !== undefined) item.expiration = expiration;
  return item;
}

function fromItem(item: Record<string, unknown>): TaskRecord {
  return StoredTaskSchema.parse(JSON.parse(String(item.data))) as TaskRecord;
}

export class DynamoTaskRepository implements TaskRepository {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async get(id: string): Promise<TaskRecord | null> {
    return isUuid(id) ? getItem(this.client, this.table, taskKey(id), fromItem) : null;
  }

  async create(task: TaskRecord): Promise<void> {
    await versionedWrite(
      this.client,
      [
        {
          Put: {
            TableName: this.table,
            Item: taskItem(task),
            ConditionExpression: 'attribute_not_exists(pk)',
          },
        },
        ...(task.image_id ? [{ Put: { TableName: this.table, Item: pointerItem(task) } }] : []),
      ],
      existsOrStale(
        () => new ConflictError(`Task ${task.id} already exists`),
        `Task ${task.id} was being written`,
      ),
    );
  }

  async update(previous: TaskRecord, next: TaskRecord): Promise<void> {
    await versionedWrite(
      this.client,
      [
        versionedPut(this.table, taskItem(next), previous.version),
        ...(next.image_id ? [{ Put: { TableName: this.table, Item: pointerItem(next) } }] : []),
      ],
      `Task ${next.id} was changed meanwhile`,
    );
  }

  async list(spec: TaskListSpec): Promise<TaskRecord[]> {
    const page: TaskRecord[] = [];
    let exclusiveStartKey: Record<string, unknown> | undefined;
    const bound = spec.marker ? taskKindSort(spec.marker.created_at, spec.marker.id) : undefined;
    do {
      const out = await this.client.send(
        new QueryCommand({
          TableName: this.table,
          IndexName: 'by_kind',
          KeyConditionExpression: bound
            ? `kind_pk = :kind AND kind_sk ${spec.descending ? '<' : '>'} :bound`
            : 'kind_pk = :kind',
          ExpressionAttributeValues: bound
            ? { ':kind': TASK_KIND_ALL, ':bound': bound }
            : { ':kind': TASK_KIND_ALL },
          ScanIndexForward: !spec.descending,
          Limit: Math.min(Math.max(spec.limit * 2, 25), 1000),
          ExclusiveStartKey: exclusiveStartKey,
        }),
      );
      for (const item of out.Items ?? []) {
        const task = fromItem(item);
        if (spec.filter(task)) page.push(task);
        if (page.length === spec.limit) return page;
      }
      exclusiveStartKey = out.LastEvaluatedKey;
    } while (exclusiveStartKey);
    return page;
  }

  async listForImage(imageId: string): Promise<TaskRecord[]> {
    const ids: string[] = [];
    if (!isUuid(imageId)) return [];
    const pointers = await queryAll(this.client, {
      TableName: this.table,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
      ExpressionAttributeValues: { ':pk': `IMG#${imageId}`, ':prefix': IMAGE_TASK_PREFIX },
      ScanIndexForward: false,
    });
    for (const item of pointers) ids.push(String(item.task_id));

    // Pointers whose task expired first are skipped.
    return (await batchGetAll(this.client, this.table, ids.map(taskKey))).map(fromItem);
  }
}
