/** The repositories' reads: one item by key, everything a Query matches, many items by key. */
import type { DynamoDBDocumentClient, QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import { BatchGetCommand, GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';

/** The item of `table` at `key`, read consistently, as `parse` makes it; null when there is none. */
export async function getItem<T>(
  client: DynamoDBDocumentClient,
  table: string,
  key: { pk: string; sk: string },
  parse: (item: Record<string, unknown>) => T,
): Promise<T | null> {
  const out = await client.send(new GetCommand({ TableName: table, Key: key, ConsistentRead: true }));
  return out.Item ? parse(out.Item) : null;
}

/** Every item `input` matches, page after page (DynamoDB returns at most 1 MB a page). */
export async function queryAll(
  client: DynamoDBDocumentClient,
  input: Omit<QueryCommandInput, 'ExclusiveStartKey'>,
): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = await client.send(new QueryCommand({ ...input, ExclusiveStartKey: start }));
    items.push(...(out.Items ?? []));
    start = out.LastEvaluatedKey;
  } while (start);
  return items;
}

/**
 * Consistent reads of many items of `table` by key, in the order of `keys` (missing ones left
 * out). BatchGet may hand keys back unprocessed under load: those are asked for again, ten times
 * at most.
 */
export async function batchGetAll(
  client: DynamoDBDocumentClient,
  table: string,
  keys: ReadonlyArray<{ pk: string; sk: string }>,
): Promise<Array<Record<string, unknown>>> {
  const found = new Map<string, Record<string, unknown>>();
  for (let i = 0; i < keys.length; i += 100) {
    let pending: Array<Record<string, unknown>> = keys.slice(i, i + 100);
    for (let attempt = 0; pending.length > 0 && attempt < 10; attempt++) {
      const out = await client.send(
        new BatchGetCommand({ RequestItems: { [table]: { Keys: pending, ConsistentRead: true } } }),
      );
      for (const item of out.Responses?.[table] ?? []) found.set(`${item.pk}\n${item.sk}`, item);
      pending = out.UnprocessedKeys?.[table]?.Keys ?? [];
    }
  }
  return keys.flatMap((key) => {
    const item = found.get(`${key.pk}\n${key.sk}`);
    return item ? [item] : [];
  });
}
