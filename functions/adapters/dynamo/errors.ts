/** How the repositories read DynamoDB's refusals of conditional and transactional writes. */
import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';

function cancelledFor(error: unknown, codes: readonly string[]): boolean {
  return (
    error instanceof TransactionCanceledException &&
    (error.CancellationReasons ?? []).some(
      (reason) => reason.Code !== undefined && codes.includes(reason.Code),
    )
  );
}

/** A write's condition did not hold (single write or any item of a transaction). */
export function isConditionFailure(error: unknown): boolean {
  return error instanceof ConditionalCheckFailedException || cancelledFor(error, ['ConditionalCheckFailed']);
}

/**
 * A lost optimistic race: a condition failed, or (real DynamoDB only; Local never reports it)
 * another transaction was writing the same item at that moment. Both mean "re-read and retry".
 */
export function isLostRace(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    cancelledFor(error, ['ConditionalCheckFailed', 'TransactionConflict'])
  );
}
