/**
 * Idempotency for the S3 trigger: one item per S3 event (bucket, key, version, sequencer, ETag),
 * created with a conditional put. A redelivery reads back the first delivery's ids instead of
 * making new ones. Markers expire after a week, long after S3 stops redelivering.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { EventMarker, EventMarkers } from '#core/transfer/ports';
import { eventMarkerKey } from './keys.ts';
import { conditionalWrite } from './transact.ts';

const MARKER_TTL_SECONDS = 7 * 24 * 3600;

export class DynamoEventMarkers implements EventMarkers {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async claim(proposal: EventMarker): Promise<EventMarker> {
    const key = eventMarkerKey(proposal.eventId);
    const refused = await conditionalWrite(this.client, {
      Put: {
        TableName: this.table,
        Item: {
          ...key,
          task_id: proposal.taskId,
          image_id: proposal.imageId,
          done: false,
          expiration: Math.floor(Date.now() / 1000) + MARKER_TTL_SECONDS,
        },
        ConditionExpression: 'attribute_not_exists(pk)',
      },
    });
    if (refused === null) return proposal;
    // Claimed before: the first delivery's ids.
    const out = await this.client.send(
      new GetCommand({ TableName: this.table, Key: key, ConsistentRead: true }),
    );
    const item = out.Item ?? {};
    return {
      eventId: proposal.eventId,
      taskId: String(item.task_id),
      imageId: String(item.image_id),
      done: item.done === true,
    };
  }

  async markDone(eventId: string): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.table,
        Key: eventMarkerKey(eventId),
        UpdateExpression: 'SET done = :done',
        ExpressionAttributeValues: { ':done': true },
      }),
    );
  }
}
