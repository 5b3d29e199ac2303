import { GetCommand, PutCommand, QueryCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { ConflictError, StaleWriteError } from '#core/kernel/errors';
import type {
  HistoryEntry,
  NamedRetentionPolicy,
  ReferenceRecord,
  RetentionPolicy,
} from '#core/references/references';
import type { ReferenceRepository } from '#core/references/references-service';
import { dynamo } from '../aws-clients.ts';
import { isLostRace } from './errors.ts';
import {
  keyFits,
  RETENTION_POLICY_KIND,
  referenceHistoryKey,
  referenceKey,
  referenceListKeys,
  referencePartition,
  referencePolicyKey,
  retentionPolicyListKeys,
} from './keys.ts';

const ReferenceSchema = z.object({
  namespace: z.string(),
  name: z.string(),
  tag: z.string(),
  image_id: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  updated_by: z.string(),
  version: z.number().int(),
});

const HistorySchema = z.object({
  namespace: z.string(),
  name: z.string(),
  tag: z.string(),
  seq: z.number().int(),
  action: z.enum(['create', 'move', 'rollback', 'delete', 'publish']),
  from: z.string().nullable(),
  to: z.string().nullable(),
  by: z.string(),
  at: z.string(),
});

const PolicySchema = z.object({ keep: z.number().int(), grace_seconds: z.number().int() });
const NamedPolicySchema = PolicySchema.extend({ namespace: z.string(), name: z.string() });

export class DynamoReferenceRepository implements ReferenceRepository {
  constructor(private readonly table: string) {}

  private pointerItem(ref: ReferenceRecord): Record<string, unknown> {
    return {
      ...referenceKey(ref.namespace, ref.name, ref.tag),
      ...referenceListKeys(ref.namespace, ref.name, ref.tag),
      ...ref,
    };
  }

  private historyPut(entry: HistoryEntry) {
    return {
      Put: {
        TableName: this.table,
        Item: { ...referenceHistoryKey(entry.namespace, entry.name, entry.tag, entry.seq), ...entry },
        ConditionExpression: 'attribute_not_exists(pk)',
      },
    };
  }

  async get(namespace: string, name: string, tag: string): Promise<ReferenceRecord | null> {
    if (!keyFits(referenceKey(namespace, name, tag))) return null;
    const out = await dynamo().send(
      new GetCommand({
        TableName: this.table,
        Key: referenceKey(namespace, name, tag),
        ConsistentRead: true,
      }),
    );
    return out.Item ? ReferenceSchema.parse(out.Item) : null;
  }

  async create(reference: ReferenceRecord, entry: HistoryEntry): Promise<void> {
    // A deleted reference keeps its history; a re-created one continues its sequence.
    const previous = await this.history(reference.namespace, reference.name, reference.tag);
    const seq = Math.max(0, ...previous.map((e) => e.seq)) + 1;
    const ref = { ...reference, version: seq };
    try {
      await dynamo().send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: this.table,
                Item: this.pointerItem(ref),
                ConditionExpression: 'attribute_not_exists(pk)',
              },
            },
            this.historyPut({ ...entry, seq }),
          ],
        }),
      );
      reference.version = seq;
    } catch (error) {
      if (isLostRace(error))
        throw new ConflictError(`Reference ${reference.name}:${reference.tag} already exists.`);
      throw error;
    }
  }

  async move(previous: ReferenceRecord, next: ReferenceRecord, entry: HistoryEntry): Promise<void> {
    try {
      await dynamo().send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: this.table,
                Item: this.pointerItem(next),
                ConditionExpression: 'version = :expected',
                ExpressionAttributeValues: { ':expected': previous.version },
              },
            },
            this.historyPut(entry),
          ],
        }),
      );
    } catch (error) {
      if (isLostRace(error))
        throw new StaleWriteError(`Reference ${next.name}:${next.tag} changed meanwhile`);
      throw error;
    }
  }

  async delete(previous: ReferenceRecord, entry: HistoryEntry): Promise<void> {
    try {
      await dynamo().send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Delete: {
                TableName: this.table,
                Key: referenceKey(previous.namespace, previous.name, previous.tag),
                ConditionExpression: 'version = :expected',
                ExpressionAttributeValues: { ':expected': previous.version },
              },
            },
            this.historyPut(entry),
          ],
        }),
      );
    } catch (error) {
      if (isLostRace(error))
        throw new ConflictError(`Reference ${previous.name}:${previous.tag} changed meanwhile; retry.`);
      throw error;
    }
  }

  async list(namespace: string, name?: string): Promise<ReferenceRecord[]> {
    const keys = referenceListKeys(namespace, name ?? '', '');
    const items: Record<string, unknown>[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await dynamo().send(
        new QueryCommand({
          TableName: this.table,
          IndexName: 'by_kind',
          KeyConditionExpression:
            name === undefined ? 'kind_pk = :p' : 'kind_pk = :p AND begins_with(kind_sk, :prefix)',
          ExpressionAttributeValues:
            name === undefined ? { ':p': keys.kind_pk } : { ':p': keys.kind_pk, ':prefix': `${name}:` },
          ExclusiveStartKey: start,
        }),
      );
      items.push(...(out.Items ?? []));
      start = out.LastEvaluatedKey;
    } while (start);
    return items.map((item) => ReferenceSchema.parse(item));
  }

  async history(namespace: string, name: string, tag?: string): Promise<HistoryEntry[]> {
    const items: Record<string, unknown>[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await dynamo().send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: {
            ':pk': referencePartition(namespace, name),
            ':prefix': tag === undefined ? 'HIST#' : `HIST#${tag}#`,
          },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      items.push(...(out.Items ?? []));
      start = out.LastEvaluatedKey;
    } while (start);
    return items.map((item) => HistorySchema.parse(item));
  }

  async getPolicy(namespace: string, name: string): Promise<RetentionPolicy | null> {
    const out = await dynamo().send(
      new GetCommand({ TableName: this.table, Key: referencePolicyKey(namespace, name) }),
    );
    return out.Item ? PolicySchema.parse(out.Item) : null;
  }

  async putPolicy(namespace: string, name: string, policy: RetentionPolicy): Promise<void> {
    // Also indexed in by_kind (and naming its name) so listPolicies needs no Scan. Policies
    // written before that index entry existed are not listed until they are put again.
    await dynamo().send(
      new PutCommand({
        TableName: this.table,
        Item: {
          ...referencePolicyKey(namespace, name),
          ...retentionPolicyListKeys(namespace, name),
          namespace,
          name,
          keep: policy.keep,
          grace_seconds: policy.grace_seconds,
        },
      }),
    );
  }

  async listPolicies(): Promise<NamedRetentionPolicy[]> {
    const items: Record<string, unknown>[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await dynamo().send(
        new QueryCommand({
          TableName: this.table,
          IndexName: 'by_kind',
          KeyConditionExpression: 'kind_pk = :p',
          ExpressionAttributeValues: { ':p': RETENTION_POLICY_KIND },
          ExclusiveStartKey: start,
        }),
      );
      items.push(...(out.Items ?? []));
      start = out.LastEvaluatedKey;
    } while (start);
    return items.map((item) => {
      const { namespace, name, keep, grace_seconds } = NamedPolicySchema.parse(item);
      return { namespace, name, policy: { keep, grace_seconds } };
    });
  }
}
