/** Builds in the single table (keys.ts): one item each, in by_kind under its target. */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { BUILD_STAGES, type BuildRecord } from '#core/builds/build';
import type { BuildRepository } from '#core/builds/ports';
import { ConflictError } from '#core/kernel/errors';
import { isUuid } from '#core/kernel/ids';
import { buildKey, buildKindSort, buildTargetKind, keyFits } from './keys.ts';
import { getItem } from './query.ts';
import { existsOrStale, versionedPut, versionedWrite } from './transact.ts';

const StoredBuildSchema = z.looseObject({
  id: z.string(),
  project: z.string(),
  stage: z.enum(BUILD_STAGES),
  target: z.string(),
  namespace: z.string(),
  version: z.number().int(),
});

function item(build: BuildRecord): Record<string, unknown> {
  return {
    ...buildKey(build.id),
    kind_pk: buildTargetKind(build.namespace, build.target),
    kind_sk: buildKindSort(build.created_at, build.id),
    // JSON text, as for tasks: the record is a document (stages, the recipe, the console tail).
    data: JSON.stringify(build),
    version: build.version,
  };
}

function fromItem(stored: Record<string, unknown>): BuildRecord {
  return StoredBuildSchema.parse(JSON.parse(String(stored.data))) as unknown as BuildRecord;
}

export class DynamoBuildRepository implements BuildRepository {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async get(id: string): Promise<BuildRecord | null> {
    return isUuid(id) ? getItem(this.client, this.table, buildKey(id), fromItem) : null;
  }

  async create(build: BuildRecord): Promise<void> {
    await versionedWrite(
      this.client,
      { Put: { TableName: this.table, Item: item(build), ConditionExpression: 'attribute_not_exists(pk)' } },
      existsOrStale(
        () => new ConflictError(`Build ${build.id} already exists`),
        `Build ${build.id} was being written`,
      ),
    );
  }

  async update(previous: BuildRecord, next: BuildRecord): Promise<void> {
    await versionedWrite(
      this.client,
      versionedPut(this.table, item(next), previous.version),
      `Build ${next.id} was changed meanwhile`,
    );
  }

  async listForTarget(namespace: string, target: string, limit: number): Promise<BuildRecord[]> {
    const kind = buildTargetKind(namespace, target);
    if (!keyFits({ pk: kind })) return [];
    const out = await this.client.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: 'by_kind',
        KeyConditionExpression: 'kind_pk = :kind',
        ExpressionAttributeValues: { ':kind': kind },
        ScanIndexForward: false,
        Limit: limit,
      }),
    );
    return (out.Items ?? []).map((stored) => fromItem(stored));
  }
}
