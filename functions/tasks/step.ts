/**
 * Wraps a use-case as a Step Functions task handler (a Lambda invoked with the state's input,
 * whose return value is the state's result). Input is parsed at the edge; every run and failure
 * is logged; errors are rethrown with their name, which the state machine's Catch sees as Error.
 */
import type { z } from 'zod';
import { HangarError } from '#core/kernel/errors';
import { logger } from '#platform/logger';

export function taskStep<S extends z.ZodType, R>(
  step: string,
  schema: S,
  run: (input: z.infer<S>) => Promise<R>,
): (event: unknown) => Promise<R> {
  return async (event) => {
    const input = schema.parse(event);
    const ids = input as { task_id?: string; image_id?: string };
    const started = Date.now();
    try {
      const result = await run(input);
      logger.info('task step done', {
        step,
        taskId: ids.task_id,
        imageId: ids.image_id,
        ms: Date.now() - started,
      });
      return result;
    } catch (error) {
      // A refusal (unsafe image, bad input) is the task's outcome, not a fault of the service.
      const log = error instanceof HangarError ? logger.info : logger.error;
      log('task step failed', { step, taskId: ids.task_id, imageId: ids.image_id, error });
      throw error;
    }
  };
}
