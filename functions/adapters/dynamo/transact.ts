/**
 * The one way the repositories write under a condition. A versioned write is conditioned on the
 * version read; when it loses a race (isLostRace: a failed condition, or, on AWS only, another
 * transaction on the same item) it becomes a StaleWriteError, which the services re-read and retry.
 */
import type {
  DynamoDBDocumentClient,
  PutCommandInput,
  TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { PutCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { StaleWriteError } from '#core/kernel/errors';
import { cancellationCodes, isConditionFailure, isLostRace } from './errors.ts';

export type TransactItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

/** One conditional PutItem; also a transaction's item as it is. */
export interface SinglePut {
  Put: PutCommandInput & { ConditionExpression: string };
}

/** One transaction (TransactWriteItems), or one conditional PutItem. */
export type ConditionalWrite = TransactItem[] | SinglePut;

function send(client: DynamoDBDocumentClient, write: ConditionalWrite): Promise<unknown> {
  return Array.isArray(write)
    ? client.send(new TransactWriteCommand({ TransactItems: write }))
    : client.send(new PutCommand(write.Put));
}

const RACED = 'another request was writing the same item';

/**
 * Writes `items` as one transaction: true if it went through, false if it was refused
 * (`refused` says which errors mean that: a failed condition unless told otherwise). A lost race
 * that is no refusal (a TransactionConflict) is a StaleWriteError; any other error passes on.
 */
export async function transactWrite(
  client: DynamoDBDocumentClient,
  items: TransactItem[],
  refused: (error: unknown) => boolean = isConditionFailure,
): Promise<boolean> {
  try {
    await send(client, items);
    return true;
  } catch (error) {
    if (refused(error)) return false;
    if (isLostRace(error)) throw new StaleWriteError(RACED, { cause: error });
    throw error;
  }
}

/**
 * Sends `write`: null if it went through; when a condition refused it, which ones failed (for a
 * transaction, `ConditionalCheckFailed` at the failed items' positions). A lost race that is no
 * failed condition (a TransactionConflict) is a StaleWriteError; any other error passes on.
 */
export async function conditionalWrite(
  client: DynamoDBDocumentClient,
  write: ConditionalWrite,
): Promise<Array<string | undefined> | null> {
  try {
    await send(client, write);
    return null;
  } catch (error) {
    if (isConditionFailure(error)) return Array.isArray(write) ? cancellationCodes(error) : [];
    if (isLostRace(error)) throw new StaleWriteError(RACED, { cause: error });
    throw error;
  }
}

/**
 * The versioned write: `write` goes through, or it lost a race and throws StaleWriteError(`lost`)
 * (or the error `lost` makes, where losing means something else, e.g. "already exists"). The
 * SDK's error is the thrown error's `cause`; any other error passes on as it is.
 */
export async function versionedWrite(
  client: DynamoDBDocumentClient,
  write: ConditionalWrite,
  lost: string | ((error: unknown) => Error),
): Promise<void> {
  try {
    await send(client, write);
  } catch (error) {
    if (!isLostRace(error)) throw error;
    throw typeof lost === 'string' ? new StaleWriteError(lost, { cause: error }) : lost(error);
  }
}

/**
 * `lost` for a create (conditioned on the item's absence): a failed condition means the item is
 * there already (`exists`); a TransactionConflict is still a lost race (StaleWriteError(`stale`)).
 */
export function existsOrStale(exists: () => Error, stale: string): (error: unknown) => Error {
  return (error) => (isConditionFailure(error) ? exists() : new StaleWriteError(stale, { cause: error }));
}

/** A Put of `item` made only if the stored item is still at version `expected` (a versioned write). */
export function versionedPut(table: string, item: Record<string, unknown>, expected: number): SinglePut {
  return {
    Put: {
      TableName: table,
      Item: item,
      ConditionExpression: 'version = :expected',
      ExpressionAttributeValues: { ':expected': expected },
    },
  };
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
