/** Starting a task's state machine, and undoing the request when it cannot be started. */
import type { WorkflowName } from './ports.ts';
import { START_FAILED, type StepError } from './step-error.ts';

/**
 * Runs `start` (the task recorded, its state machine started). When that throws, `fail` (the
 * workflow's own failure step) runs with a StartFailed step error first, so the task and whatever
 * the request took are settled before the error goes on to the caller.
 */
export async function startOrFail(
  workflow: WorkflowName,
  start: () => Promise<void>,
  fail: (error: StepError) => Promise<void>,
): Promise<void> {
  try {
    await start();
  } catch (error) {
    await fail({ Error: START_FAILED, Cause: `The ${workflow} could not be started.` });
    throw error;
  }
}
