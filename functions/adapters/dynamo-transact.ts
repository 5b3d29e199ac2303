/** One way for the repositories to write a transaction whose conditions may refuse it. */
import type { TransactWriteCommandInput } from '@aws-sdk/lib-dynamodb';
import { TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { dynamo } from './aws-clients.ts';
import { isConditionFailure } from './dynamo-errors.ts';

export type TransactItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

/**
 * Writes `items` as one transaction: true if it went through, false if it was refused
 * (`refused` says which errors mean that: a failed condition unless told otherwise); any other
 * error passes on.
 */
export async function transactWrite(
  items: TransactItem[],
  refused: (error: unknown) => boolean = isConditionFailure,
): Promise<boolean> {
  try {
    await dynamo().send(new TransactWriteCommand({ TransactItems: items }));
    return true;
  } catch (error) {
    if (refused(error)) return false;
    throw error;
  }
}

/** A transaction's Delete of `key`, made only if `condition` holds. */
export function conditionalDelete(
  table: string,
  key: Record<string, unknown>,
  condition: string,
  values?: Record<string, unknown>,
): TransactItem {
  return {
    Delete: {
      TableName: table,
      Key: key,
      ConditionExpression: condition,
      ...(values && { ExpressionAttributeValues: values }),
    },
  };
}
