import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { ConflictError } from '#core/kernel/errors';
import type {
  HistoryEntry,
  NamedRetentionPolicy,
  ReferenceRecord,
  RetentionPolicy,
} from '#core/references/references';
import { HISTORY_ACTIONS } from '#core/references/references';
import type { ReferenceRepository } from '#core/references/references-service';
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
import { queryAll } from './query.ts';
import { conditionalDelete, existsOrStale, type TransactItem, versionedWrite } from './transact.ts';

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
  action: z.enum(HISTORY_ACTIONS),
  from: z.string().nullable(),
  to: z.string().nullable(),
  by: z.string(),
  at: z.string(),
  build_id: z.string().optional(),
});

const PolicySchema = z.object({ keep: z.number().int(), grace_seconds: z.number().int() });
const NamedPolicySchema = PolicySchema.extend({ namespace: z.string(), name: z.string() });

export class DynamoReferenceRepository implements ReferenceRepository {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

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
    const out = await this.client.send(
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
    const put: TransactItem = {
      Put: {
        TableName: this.table,
        Item: this.pointerItem(ref),
        ConditionExpression: 'attribute_not_exists(pk)',
      },
    };
    await versionedWrite(
      this.client,
      [put, this.historyPut({ ...entry, seq })],
      existsOrStale(
        () => new ConflictError(`Reference ${reference.name}:${reference.tag} already exists.`),
        `Reference ${reference.name}:${reference.tag} changed meanwhile`,
      ),
    );
    reference.version = seq;
  }

  async move(previous: ReferenceRecord, next: ReferenceRecord, entry: HistoryEntry): Promise<void> {
    const put: TransactItem = {
      Put: {
        TableName: this.table,
        Item: this.pointerItem(next),
        ConditionExpression: 'version = :expected',
        ExpressionAttributeValues: { ':expected': previous.version },
      },
    };
    await versionedWrite(
      this.client,
      [put, this.historyPut(entry)],
      `Reference ${next.name}:${next.tag} changed meanwhile`,
    );
  }

  async delete(previous: ReferenceRecord, entry: HistoryEntry): Promise<void> {
    const key = referenceKey(previous.namespace, previous.name, previous.tag);
    const values = { ':expected': previous.version };
    await versionedWrite(
      this.client,
      [conditionalDelete(this.table, key, 'version = :expected', values), this.historyPut(entry)],
      () => new ConflictError(`Reference ${previous.name}:${previous.tag} changed meanwhile; retry.`),
    );
  }

  async list(namespace: string, name?: string): Promise<ReferenceRecord[]> {
    const keys = referenceListKeys(namespace, name ?? '', '');
    const items = await queryAll(this.client, {
      TableName: this.table,
      IndexName: 'by_kind',
      KeyConditionExpression:
        name === undefined ? 'kind_pk = :p' : 'kind_pk = :p AND begins_with(kind_sk, :prefix)',
      ExpressionAttributeValues:
        name === undefined ? { ':p': keys.kind_pk } : { ':p': keys.kind_pk, ':prefix': `${name}:` },
    });
    return items.map((item) => ReferenceSchema.parse(item));
  }

  async history(namespace: string, name: string, tag?: string): Promise<HistoryEntry[]> {
    const items = await queryAll(this.client, {
      TableName: this.table,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
      ExpressionAttributeValues: {
        ':pk': referencePartition(namespace, name),
        ':prefix': tag === undefined ? 'HIST#' : `HIST#${tag}#`,
      },
      ConsistentRead: true,
    });
    return items.map((item) => HistorySchema.parse(item));
  }

  async getPolicy(namespace: string, name: string): Promise<RetentionPolicy | null> {
    const out = await this.client.send(
      new GetCommand({ TableName: this.table, Key: referencePolicyKey(namespace, name) }),
    );
    return out.Item ? PolicySchema.parse(out.Item) : null;
  }

  async putPolicy(namespace: string, name: string, policy: RetentionPolicy): Promise<void> {
    // Also indexed in by_kind (and naming its name) so listPolicies needs no Scan. Policies
    // written before that index entry existed are not listed until they are put again.
    await this.client.send(
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
    const items = await queryAll(this.client, {
      TableName: this.table,
      IndexName: 'by_kind',
      KeyConditionExpression: 'kind_pk = :p',
      ExpressionAttributeValues: { ':p': RETENTION_POLICY_KIND },
    });
    return items.map((item) => {
      const { namespace, name, keep, grace_seconds } = NamedPolicySchema.parse(item);
      return { namespace, name, policy: { keep, grace_seconds } };
    });
  }
}
