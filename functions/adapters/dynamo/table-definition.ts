/**
 * The single DynamoDB table's shape, shared by the CDK app (infra/) and the embedded runner
 * (local/), so the deployed table and the local one cannot drift apart. The table name is not
 * part of it: CDK names the table itself and hands the name to the functions as HANGAR_TABLE.
 */
import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';

/** Image fields a list can be sorted by; each has its own index `by_<key>` over `ord_<key>`. */
export const ORDERED_KEYS = [
  'created_at',
  'updated_at',
  'name',
  'status',
  'size',
  'id',
  'disk_format',
  'container_format',
] as const;
export type OrderedKey = (typeof ORDERED_KEYS)[number];

export interface KeyAttribute {
  readonly name: string;
  /** Every key attribute is a string: sortable values are encoded to sort as strings. */
  readonly type: 'S';
}

export interface IndexDefinition {
  readonly indexName: string;
  readonly partitionKey: KeyAttribute;
  readonly sortKey: KeyAttribute;
  readonly projection: 'ALL';
}

export interface TableDefinition {
  readonly partitionKey: KeyAttribute;
  readonly sortKey: KeyAttribute;
  readonly globalSecondaryIndexes: readonly IndexDefinition[];
  readonly timeToLiveAttribute: string;
  readonly billingMode: 'PAY_PER_REQUEST';
}

const S = (name: string): KeyAttribute => ({ name, type: 'S' });

export const TABLE_DEFINITION: TableDefinition = {
  partitionKey: S('pk'),
  sortKey: S('sk'),
  globalSecondaryIndexes: [
    ...ORDERED_KEYS.map(
      (key): IndexDefinition => ({
        indexName: `by_${key}`,
        partitionKey: S('scope'),
        sortKey: S(`ord_${key}`),
        projection: 'ALL',
      }),
    ),
    // For entities other than images (members, tasks, ...), added later.
    { indexName: 'by_kind', partitionKey: S('kind_pk'), sortKey: S('kind_sk'), projection: 'ALL' },
  ],
  timeToLiveAttribute: 'expiration',
  billingMode: 'PAY_PER_REQUEST',
};

/** The CreateTable request for the definition above (the local runner creates the table with it). */
export function createTableInput(tableName: string): CreateTableCommandInput {
  const def = TABLE_DEFINITION;
  const attributes = new Map<string, 'S'>();
  for (const key of [
    def.partitionKey,
    def.sortKey,
    ...def.globalSecondaryIndexes.flatMap((i) => [i.partitionKey, i.sortKey]),
  ])
    attributes.set(key.name, key.type);
  return {
    TableName: tableName,
    BillingMode: def.billingMode,
    AttributeDefinitions: [...attributes].map(([AttributeName, AttributeType]) => ({
      AttributeName,
      AttributeType,
    })),
    KeySchema: [
      { AttributeName: def.partitionKey.name, KeyType: 'HASH' },
      { AttributeName: def.sortKey.name, KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: def.globalSecondaryIndexes.map((index) => ({
      IndexName: index.indexName,
      KeySchema: [
        { AttributeName: index.partitionKey.name, KeyType: 'HASH' },
        { AttributeName: index.sortKey.name, KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: index.projection },
    })),
  };
}
