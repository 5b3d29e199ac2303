/**
 * Metadata definitions in the single table (layout in keys.ts). A namespace's record is in the
 * by_kind index under one listing partition, so listing is a Query, never a Scan; its objects,
 * properties and tags share one partition named by the namespace's immutable id, so showing a
 * namespace is one Get and one Query, and a rename rewrites only the record.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

import { GetCommand, PutCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { StaleWriteError } from '#core/kernel/errors';
import type {
  ChildKind,
  ChildRecords,
  ChildWriteOutcome,
  MetadefRepository,
  NamespaceContents,
  NamespaceRecord,
  ResourceTypeRecord,
  TagRecord,
} from '#core/metadefs/metadefs';
import {
  METADEF_CHILD_PREFIX,
  METADEF_NAMESPACE_KIND,
  METADEF_RESOURCE_TYPE_KIND,
  metadefChildKey,
  metadefChildPartition,
  metadefNamespaceKey,
  metadefNamespaceListKeys,
  metadefResourceTypeKey,
  metadefResourceTypeListKeys,
  metadefSeedKey,
} from './keys.ts';
import { queryAll } from './query.ts';
import {
  conditionalDelete,
  conditionalWrite,
  type TransactItem,
  transactWrite,
  versionedWrite,
} from './transact.ts';

const AssociationSchema = z.object({
  name: z.string(),
  prefix: z.string().optional(),
  properties_target: z.string().optional(),
  created_at: z.string(),
  updated_at: z.string(),
});

const NamespaceSchema = z.object({
  id: z.string(),
  namespace: z.string(),
  display_name: z.string().optional(),
  description: z.string().optional(),
  visibility: z.enum(['public', 'private']),
  protected: z.boolean(),
  owner: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  version: z.number().int(),
  associations: z.array(AssociationSchema),
});

const ResourceTypeSchema = z.object({
  name: z.string(),
  protected: z.boolean(),
  created_at: z.string(),
  updated_at: z.string(),
});

/** Children are stored as written by the domain (already validated); only the envelope is checked. */
const ChildSchema = z.object({ record: z.record(z.string(), z.unknown()) });

/** DynamoDB's TransactWriteItems limit. */
const MAX_TRANSACTION_ITEMS = 100;

function namespaceFields(ns: NamespaceRecord): NamespaceRecord {
  return NamespaceSchema.parse(ns) as NamespaceRecord;
}

export class DynamoMetadefRepository implements MetadefRepository {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  private namespaceItem(ns: NamespaceRecord): Record<string, unknown> {
    return { ...metadefNamespaceKey(ns.namespace), ...metadefNamespaceListKeys(ns.namespace), ...ns };
  }

  private childItem(ns: NamespaceRecord, kind: ChildKind, record: { name: string }): Record<string, unknown> {
    return { ...metadefChildKey(ns.id, kind, record.name), kind, record };
  }

  /** Guards a child write: the namespace (this very one, not a later one of the same name) exists. */
  private namespaceCheck(ns: NamespaceRecord): TransactItem {
    return {
      ConditionCheck: {
        TableName: this.table,
        Key: metadefNamespaceKey(ns.namespace),
        ConditionExpression: 'id = :id',
        ExpressionAttributeValues: { ':id': ns.id },
      },
    };
  }

  private async queryAll(input: {
    IndexName?: string;
    KeyConditionExpression: string;
    ExpressionAttributeValues: Record<string, unknown>;
    ExpressionAttributeNames?: Record<string, string>;
  }): Promise<Record<string, unknown>[]> {
    return queryAll(this.client, {
      TableName: this.table,
      ...input,
      ...(input.IndexName ? {} : { ConsistentRead: true }),
    });
  }

  async getNamespace(name: string): Promise<NamespaceRecord | null> {
    const out = await this.client.send(
      new GetCommand({ TableName: this.table, Key: metadefNamespaceKey(name), ConsistentRead: true }),
    );
    return out.Item ? namespaceFields(out.Item as NamespaceRecord) : null;
  }

  async listNamespaces(): Promise<NamespaceRecord[]> {
    const items = await this.queryAll({
      IndexName: 'by_kind',
      KeyConditionExpression: 'kind_pk = :k',
      ExpressionAttributeValues: { ':k': METADEF_NAMESPACE_KIND },
    });
    return items.map((item) => namespaceFields(item as unknown as NamespaceRecord));
  }

  async createNamespace(ns: NamespaceRecord, contents: NamespaceContents): Promise<'ok' | 'exists'> {
    const children = [
      ...contents.objects.map((o) => this.childItem(ns, 'object', o)),
      ...contents.properties.map((p) => this.childItem(ns, 'property', p)),
      ...contents.tags.map((t) => this.childItem(ns, 'tag', t)),
    ];
    const first: TransactItem[] = [
      {
        Put: {
          TableName: this.table,
          Item: this.namespaceItem(ns),
          ConditionExpression: 'attribute_not_exists(pk)',
        },
      },
      ...children
        .slice(0, MAX_TRANSACTION_ITEMS - 1)
        .map((Item) => ({ Put: { TableName: this.table, Item } })),
    ];
    if (!(await transactWrite(this.client, first))) return 'exists';
    // Larger namespaces (more than 99 children) continue in further transactions, each guarded
    // by the namespace still being this one; a failure removes what was written.
    try {
      for (let i = MAX_TRANSACTION_ITEMS - 1; i < children.length; i += MAX_TRANSACTION_ITEMS - 1) {
        const chunk = children.slice(i, i + MAX_TRANSACTION_ITEMS - 1);
        await this.client.send(
          new TransactWriteCommand({
            TransactItems: [
              this.namespaceCheck(ns),
              ...chunk.map((Item) => ({ Put: { TableName: this.table, Item } })),
            ],
          }),
        );
      }
    } catch (error) {
      await this.deleteNamespace(ns).catch(() => undefined);
      throw error;
    }
    return 'ok';
  }

  async updateNamespace(previous: NamespaceRecord, next: NamespaceRecord): Promise<'ok' | 'exists'> {
    const versioned = {
      ConditionExpression: 'version = :v',
      ExpressionAttributeValues: { ':v': previous.version },
    };
    if (previous.namespace === next.namespace) {
      await versionedWrite(
        this.client,
        { Put: { TableName: this.table, Item: this.namespaceItem(next), ...versioned } },
        'namespace changed meanwhile',
      );
      return 'ok';
    }
    const failed = await conditionalWrite(this.client, [
      { Delete: { TableName: this.table, Key: metadefNamespaceKey(previous.namespace), ...versioned } },
      {
        Put: {
          TableName: this.table,
          Item: this.namespaceItem(next),
          ConditionExpression: 'attribute_not_exists(pk)',
        },
      },
    ]);
    if (failed === null) return 'ok';
    if (failed[1] === 'ConditionalCheckFailed') return 'exists';
    throw new StaleWriteError('namespace changed meanwhile');
  }

  async deleteNamespace(ns: NamespaceRecord): Promise<void> {
    const key = metadefNamespaceKey(ns.namespace);
    const values = { ':id': ns.id, ':v': ns.version };
    await versionedWrite(
      this.client,
      [conditionalDelete(this.table, key, 'id = :id AND version = :v', values)],
      'namespace changed meanwhile',
    );
    // Once the record is gone nothing can reach its children; removing them may take several
    // batches, and an interruption leaves only unreachable items behind.
    await this.deleteWhere(ns, undefined);
  }

  private async childItems(ns: NamespaceRecord, kind: ChildKind | undefined) {
    return this.queryAll({
      KeyConditionExpression: kind ? 'pk = :pk AND begins_with(sk, :p)' : 'pk = :pk',
      ExpressionAttributeValues: {
        ':pk': metadefChildPartition(ns.id),
        ...(kind ? { ':p': METADEF_CHILD_PREFIX[kind] } : {}),
      },
    });
  }

  private async deleteWhere(ns: NamespaceRecord, kind: ChildKind | undefined): Promise<void> {
    const items = await this.childItems(ns, kind);
    for (let i = 0; i < items.length; i += MAX_TRANSACTION_ITEMS) {
      await this.client.send(
        new TransactWriteCommand({
          TransactItems: items.slice(i, i + MAX_TRANSACTION_ITEMS).map((item) => ({
            Delete: { TableName: this.table, Key: { pk: item.pk, sk: item.sk } },
          })),
        }),
      );
    }
  }

  async listChildren<K extends ChildKind>(ns: NamespaceRecord, kind: K): Promise<ChildRecords[K][]> {
    const items = await this.childItems(ns, kind);
    return items.map((item) => ChildSchema.parse(item).record as unknown as ChildRecords[K]);
  }

  async getChild<K extends ChildKind>(
    ns: NamespaceRecord,
    kind: K,
    name: string,
  ): Promise<ChildRecords[K] | null> {
    const out = await this.client.send(
      new GetCommand({
        TableName: this.table,
        Key: metadefChildKey(ns.id, kind, name),
        ConsistentRead: true,
      }),
    );
    return out.Item ? (ChildSchema.parse(out.Item).record as unknown as ChildRecords[K]) : null;
  }

  async putChild<K extends ChildKind>(
    ns: NamespaceRecord,
    kind: K,
    record: ChildRecords[K],
    replacing?: string,
  ): Promise<ChildWriteOutcome> {
    const item = this.childItem(ns, kind, record);
    const sameKey =
      replacing !== undefined && metadefChildKey(ns.id, kind, replacing).sk === (item.sk as string);
    const items: TransactItem[] = [this.namespaceCheck(ns)];
    if (replacing !== undefined && !sameKey)
      items.push({
        Delete: {
          TableName: this.table,
          Key: metadefChildKey(ns.id, kind, replacing),
          ConditionExpression: 'attribute_exists(pk)',
        },
      });
    items.push({
      Put: {
        TableName: this.table,
        Item: item,
        ConditionExpression: sameKey ? 'attribute_exists(pk)' : 'attribute_not_exists(pk)',
      },
    });
    const codes = await conditionalWrite(this.client, items);
    if (codes === null) return 'ok';
    const failed = codes.indexOf('ConditionalCheckFailed');
    if (failed === 0) return 'namespace_gone';
    if (sameKey || (replacing !== undefined && failed === 1)) return 'missing';
    return 'exists';
  }

  async deleteChild(ns: NamespaceRecord, kind: ChildKind, name: string): Promise<boolean> {
    return transactWrite(this.client, [
      conditionalDelete(this.table, metadefChildKey(ns.id, kind, name), 'attribute_exists(pk)'),
    ]);
  }

  deleteChildren(ns: NamespaceRecord, kind: ChildKind): Promise<void> {
    return this.deleteWhere(ns, kind);
  }

  async replaceTags(ns: NamespaceRecord, remove: TagRecord[], add: TagRecord[]): Promise<ChildWriteOutcome> {
    const addKeys = new Set(add.map((t) => metadefChildKey(ns.id, 'tag', t.name).sk));
    // A tag both removed and added is overwritten in place (one operation per item per transaction).
    const writes: TransactItem[] = [
      ...remove
        .filter((t) => !addKeys.has(metadefChildKey(ns.id, 'tag', t.name).sk))
        .map((t) => ({ Delete: { TableName: this.table, Key: metadefChildKey(ns.id, 'tag', t.name) } })),
      ...add.map((t) => {
        const replaced = remove.some((r) => r.name.toLowerCase() === t.name.toLowerCase());
        return {
          Put: {
            TableName: this.table,
            Item: this.childItem(ns, 'tag', t),
            ...(replaced ? {} : { ConditionExpression: 'attribute_not_exists(pk)' }),
          },
        };
      }),
    ];
    if (writes.length === 0) return 'ok';
    for (let i = 0; i < writes.length; i += MAX_TRANSACTION_ITEMS - 1) {
      const codes = await conditionalWrite(this.client, [
        this.namespaceCheck(ns),
        ...writes.slice(i, i + MAX_TRANSACTION_ITEMS - 1),
      ]);
      if (codes !== null) return codes[0] === 'ConditionalCheckFailed' ? 'namespace_gone' : 'exists';
    }
    return 'ok';
  }

  async listResourceTypes(): Promise<ResourceTypeRecord[]> {
    const items = await this.queryAll({
      IndexName: 'by_kind',
      KeyConditionExpression: 'kind_pk = :k',
      ExpressionAttributeValues: { ':k': METADEF_RESOURCE_TYPE_KIND },
    });
    return items.map((item) => ResourceTypeSchema.parse(item));
  }

  async ensureResourceType(rt: ResourceTypeRecord): Promise<void> {
    // Refused when it is there already: nothing to do then.
    await conditionalWrite(this.client, {
      Put: {
        TableName: this.table,
        Item: { ...metadefResourceTypeKey(rt.name), ...metadefResourceTypeListKeys(rt.name), ...rt },
        ConditionExpression: 'attribute_not_exists(pk)',
      },
    });
  }

  async isSeeded(version: string): Promise<boolean> {
    const out = await this.client.send(
      new GetCommand({ TableName: this.table, Key: metadefSeedKey(version), ConsistentRead: true }),
    );
    return out.Item !== undefined;
  }

  async markSeeded(version: string): Promise<void> {
    await this.client.send(
      new PutCommand({
        TableName: this.table,
        Item: { ...metadefSeedKey(version), seeded_at: new Date().toISOString() },
      }),
    );
  }
}
