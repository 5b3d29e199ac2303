/** How the repositories read DynamoDB's refusals of conditional and transactional writes. */
import {
  ConditionalCheckFailedException,
  TransactionCanceledException,
  TransactionConflictException,
} from '@aws-sdk/client-dynamodb';

/** Why each item of a cancelled transaction failed, by position (`undefined`: it did not). */
export function cancellationCodes(error: unknown): Array<string | undefined> {
  if (!(error instanceof TransactionCanceledException)) return [];
  return (error.CancellationReasons ?? []).map((reason) =>
    reason.Code === undefined || reason.Code === 'None' ? undefined : reason.Code,
  );
}

function cancelledFor(error: unknown, codes: readonly string[]): boolean {
  return cancellationCodes(error).some((code) => code !== undefined && codes.includes(code));
}

/** A write's condition did not hold (single write or any item of a transaction). */
export function isConditionFailure(error: unknown): boolean {
  return error instanceof ConditionalCheckFailedException || cancelledFor(error, ['ConditionalCheckFailed']);
}

/**
 * A lost optimistic race: a condition failed, or (real DynamoDB only; Local never reports it)
 * another transaction was writing the same item at that moment: a transaction cancelled for a
 * TransactionConflict, or a single write refused with TransactionConflictException. All mean
 * "re-read and retry".
 */
export function isLostRace(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    error instanceof TransactionConflictException ||
    cancelledFor(error, ['ConditionalCheckFailed', 'TransactionConflict'])
  );
}
