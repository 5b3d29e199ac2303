/**
 * The error a state machine's Catch hands its failure step, and what the task's message says about
 * it. Shared by every workflow (import, export, publish).
 */

/** How Step Functions hands a caught error on: Error is the error name, Cause its message or a Lambda error JSON. */
export interface StepError {
  Error?: string;
  Cause?: string;
}

/** The step error a service records itself when the state machine could not even be started. */
export const START_FAILED = 'StartFailed';

/** A readable reason from a caught step error (local runs give the message; Lambda a JSON envelope). */
export function describeStepError(error: StepError | undefined): string {
  if (!error) return 'The import failed.';
  const cause = error.Cause ?? '';
  let message = cause;
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    if (parsed && typeof parsed.errorMessage === 'string') message = parsed.errorMessage;
  } catch {
    // Not JSON: the cause is the message itself.
  }
  if (error.Error === 'States.Timeout') return 'The import took longer than its step may run.';
  return message || error.Error || 'The import failed.';
}
