/**
 * The agents' open WebSocket connections on AWS, in a table of their own (infra/app-stack.ts
 * makes it from CONNECTIONS_TABLE): one item per connection, keyed host id -> connection id so
 * that telling a host is one Query, with an index by connection id for $disconnect, whose event
 * names only the connection. Items expire (TTL) shortly after API Gateway's 2-hour connection
 * limit, so a connection whose $disconnect was lost does not linger. This is not the service
 * table: connection ids are API Gateway's, live for hours and are worth nothing after.
 */
import { DeleteCommand, type DynamoDBDocumentClient, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import type { AgentConnectionStore } from '#core/instances/agent-connections';
import { CONNECTIONS_TABLE } from './connections-table.ts';

const ConnectionItemSchema = z.object({ host_id: z.string(), connection_id: z.string() });

export class DynamoAgentConnectionStore implements AgentConnectionStore {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async add(hostId: string, connectionId: string, expiresAt: Date): Promise<void> {
    await this.client.send(
      new PutCommand({
        TableName: this.table,
        Item: {
          host_id: hostId,
          connection_id: connectionId,
          expiration: Math.ceil(expiresAt.getTime() / 1000),
        },
      }),
    );
  }

  async list(hostId: string): Promise<string[]> {
    const ids: string[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.client.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'host_id = :host',
          ExpressionAttributeValues: { ':host': hostId },
          ProjectionExpression: 'host_id, connection_id',
          ExclusiveStartKey: start,
        }),
      );
      for (const item of out.Items ?? []) ids.push(ConnectionItemSchema.parse(item).connection_id);
      start = out.LastEvaluatedKey;
    } while (start);
    return ids;
  }

  async remove(hostId: string, connectionId: string): Promise<void> {
    await this.client.send(
      new DeleteCommand({ TableName: this.table, Key: { host_id: hostId, connection_id: connectionId } }),
    );
  }

  async hostOf(connectionId: string): Promise<string | null> {
    const out = await this.client.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: CONNECTIONS_TABLE.connectionIndex,
        KeyConditionExpression: 'connection_id = :id',
        ExpressionAttributeValues: { ':id': connectionId },
        Limit: 1,
      }),
    );
    const [item] = out.Items ?? [];
    return item ? ConnectionItemSchema.parse(item).host_id : null;
  }
}
