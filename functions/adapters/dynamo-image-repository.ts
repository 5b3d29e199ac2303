/**
 * Images in the single DynamoDB table (layout in keys.ts). Every write is one transaction that
 * checks the record's version, so concurrent writers never lose an update, and rewrites the
 * listing rows with it, so the indexes never disagree with the record.
 */
import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  GetCommand,
  QueryCommand,
  type QueryCommandInput,
  TransactWriteCommand,
} from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { ConflictError, StaleWriteError } from '#core/errors';
import { IMAGE_STATUSES, type ImageRecord, VISIBILITIES } from '#core/image';
import type { ImageListSpec, ImageRepository } from '#core/ports';
import { serviceConfig } from '#shared/config';
import { dynamo } from './aws-clients.ts';
import {
  imageKey,
  indexName,
  ordAttribute,
  orderValue,
  runBounds,
  SORT_KEYS,
  type SortKey,
  scopeRowKey,
  scopesOf,
} from './keys.ts';

const StoredImageSchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  status: z.enum(IMAGE_STATUSES),
  visibility: z.enum(VISIBILITIES),
  protected: z.boolean(),
  os_hidden: z.boolean(),
  checksum: z.string().nullable(),
  os_hash_algo: z.string().nullable(),
  os_hash_value: z.string().nullable(),
  owner: z.string().nullable(),
  size: z.number().nullable(),
  virtual_size: z.number().nullable(),
  min_ram: z.number(),
  min_disk: z.number(),
  container_format: z.string().nullable(),
  disk_format: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  tags: z.array(z.string()),
  properties: z.record(z.string(), z.string()),
  version: z.number().int(),
  blob_key: z.string().nullable(),
});

/** DynamoDB drops nulls inside maps poorly across SDK versions; store the record as JSON text. */
function toItem(image: ImageRecord): Record<string, unknown> {
  return { data: JSON.stringify(image), version: image.version };
}

function fromItem(item: Record<string, unknown>): ImageRecord {
  return StoredImageSchema.parse(JSON.parse(String(item.data)));
}

function scopeRow(image: ImageRecord, scope: string): Record<string, unknown> {
  const row: Record<string, unknown> = { ...scopeRowKey(image.id, scope), scope, ...toItem(image) };
  for (const key of SORT_KEYS) row[ordAttribute(key)] = orderValue(image, key);
  return row;
}

function isConditionFailure(error: unknown): boolean {
  return (
    error instanceof TransactionCanceledException &&
    (error.CancellationReasons ?? []).some((reason) => reason.Code === 'ConditionalCheckFailed')
  );
}

/** Compares order values as DynamoDB does: by UTF-8 bytes. */
function compareOrd(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

interface Head {
  ord: string;
  image: ImageRecord;
}

export class DynamoImageRepository implements ImageRepository {
  private get table(): string {
    return serviceConfig().tableName;
  }

  async get(id: string): Promise<ImageRecord | null> {
    const out = await dynamo().send(
      new GetCommand({ TableName: this.table, Key: imageKey(id), ConsistentRead: true }),
    );
    return out.Item ? fromItem(out.Item) : null;
  }

  async create(image: ImageRecord): Promise<void> {
    try {
      await dynamo().send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: this.table,
                Item: { ...imageKey(image.id), ...toItem(image) },
                ConditionExpression: 'attribute_not_exists(pk)',
              },
            },
            ...scopesOf(image).map((scope) => ({
              Put: { TableName: this.table, Item: scopeRow(image, scope) },
            })),
          ],
        }),
      );
    } catch (error) {
      if (isConditionFailure(error)) throw new ConflictError(`Image ID ${image.id} already exists!`);
      throw error;
    }
  }

  async update(previous: ImageRecord, next: ImageRecord): Promise<void> {
    const nextScopes = new Set(scopesOf(next));
    const staleScopes = scopesOf(previous).filter((scope) => !nextScopes.has(scope));
    try {
      await dynamo().send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: this.table,
                Item: { ...imageKey(next.id), ...toItem(next) },
                ConditionExpression: 'version = :expected',
                ExpressionAttributeValues: { ':expected': previous.version },
              },
            },
            ...[...nextScopes].map((scope) => ({
              Put: { TableName: this.table, Item: scopeRow(next, scope) },
            })),
            ...staleScopes.map((scope) => ({
              Delete: { TableName: this.table, Key: scopeRowKey(next.id, scope) },
            })),
          ],
        }),
      );
    } catch (error) {
      if (isConditionFailure(error))
        throw new StaleWriteError(`Image ${next.id} was changed by another request`);
      throw error;
    }
  }

  /**
   * One page: a k-way merge of per-scope index walks in the order of the first sort key. Runs of
   * equal first-key values are re-sorted in memory when further sort keys were asked for.
   */
  async list(spec: ImageListSpec): Promise<ImageRecord[]> {
    const first = spec.sort[0];
    if (!first || !(SORT_KEYS as readonly string[]).includes(first.key))
      throw new Error('list needs a sort key');
    const key = first.key as SortKey;
    const descending = first.dir === 'desc';
    // Glance's tiebreakers are baked into the order value; only extra explicit keys need run sorting.
    const implicit =
      key === 'id' ? ['id'] : key === 'created_at' ? ['created_at', 'id'] : [key, 'created_at', 'id'];
    const needsRunSort = !spec.sort.every((s, i) => s.key === implicit[i] && s.dir === first.dir);

    let bound: { op: '<' | '>' | '<=' | '>='; value: string } | undefined;
    if (spec.marker) {
      if (needsRunSort) {
        const run = runBounds(spec.marker, key);
        bound = descending ? { op: '<=', value: run.high } : { op: '>=', value: run.low };
      } else {
        bound = { op: descending ? '<' : '>', value: orderValue(spec.marker, key) };
      }
    }

    const walkers = spec.scopes.map((scope) => this.walk(scope, key, descending, bound, spec.limit));
    const heads: Array<Head | undefined> = await Promise.all(
      walkers.map((w) => w.next().then((r) => r.value)),
    );
    const direction = descending ? -1 : 1;
    const seen = new Set<string>();
    const page: ImageRecord[] = [];
    let run: ImageRecord[] = [];
    let runKey: string | undefined;
    let skipping = spec.marker !== undefined && needsRunSort;

    const flushRun = () => {
      if (run.length === 0) return;
      run.sort(spec.compare);
      for (const image of run) {
        if (skipping) {
          if (spec.marker && spec.compare(image, spec.marker) <= 0) continue;
          skipping = false;
        }
        if (page.length < spec.limit) page.push(image);
      }
      run = [];
    };

    while (page.length < spec.limit) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const head = heads[i];
        if (!head) continue;
        const current = best >= 0 ? heads[best] : undefined;
        if (!current || direction * compareOrd(head.ord, current.ord) < 0) best = i;
      }
      if (best < 0) break;
      const head = heads[best] as Head;
      heads[best] = (await walkers[best]?.next())?.value;
      // The same image is listed under several scopes (e.g. owner and public): keep it once.
      if (seen.has(head.image.id)) continue;
      seen.add(head.image.id);
      if (!spec.filter(head.image)) continue;
      if (!needsRunSort) {
        page.push(head.image);
        continue;
      }
      const valueKey = head.ord.slice(
        0,
        head.ord.indexOf('\u0001') >= 0 ? head.ord.indexOf('\u0001') : undefined,
      );
      if (runKey !== undefined && valueKey !== runKey) flushRun();
      runKey = valueKey;
      run.push(head.image);
    }
    flushRun();
    await Promise.all(walkers.map((w) => w.return(undefined)));
    return page.slice(0, spec.limit);
  }

  private async *walk(
    scope: string,
    key: SortKey,
    descending: boolean,
    bound: { op: string; value: string } | undefined,
    limit: number,
  ): AsyncGenerator<Head, undefined> {
    const ord = ordAttribute(key);
    let exclusiveStartKey: Record<string, unknown> | undefined;
    // Start with one page worth of rows; grow when filters throw rows away.
    let batch = Math.min(Math.max(limit + 1, 10), 1000);
    do {
      const input: QueryCommandInput = {
        TableName: this.table,
        IndexName: indexName(key),
        KeyConditionExpression: bound ? `#scope = :scope AND #ord ${bound.op} :bound` : '#scope = :scope',
        ExpressionAttributeNames: { '#scope': 'scope', '#ord': ord },
        ExpressionAttributeValues: bound ? { ':scope': scope, ':bound': bound.value } : { ':scope': scope },
        ScanIndexForward: !descending,
        Limit: batch,
        ExclusiveStartKey: exclusiveStartKey,
      };
      if (!bound) delete input.ExpressionAttributeNames?.['#ord'];
      const out = await dynamo().send(new QueryCommand(input));
      for (const item of out.Items ?? []) yield { ord: String(item[ord]), image: fromItem(item) };
      exclusiveStartKey = out.LastEvaluatedKey;
      batch = Math.min(batch * 2, 1000);
    } while (exclusiveStartKey);
    return undefined;
  }
}
