/**
 * Wraps a use-case as a Step Functions task handler (a Lambda invoked with the state's input,
 * whose return value is the state's result), as a middy stack:
 * - `serviceHandler`'s: the step's log context, named by the invocation's id, the caller being
 *   Step Functions;
 * - `taskInput`: the input is parsed at the edge (a ZodError fails the state, unlogged);
 * - `taskLogging`: the task and image join the log context; every run and failure is logged.
 * Errors pass through untouched, with their name, which the state machine's Catch sees as Error.
 */
import type { MiddlewareObj } from '@middy/core';
import type { Context } from 'aws-lambda';
import type { z } from 'zod';
import { HangarError } from '#core/kernel/errors';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { appendLogKeys, logger } from '#platform/logger';

/** Replaces the event with the parsed input. */
export function taskInput(schema: z.ZodType): MiddlewareObj<unknown, unknown, Error, Context> {
  return {
    name: 'taskInput',
    before: (request) => {
      request.event = schema.parse(request.event);
    },
  };
}

/** Logs each run of a step that got as far as its use case (its input parsed). */
export function taskLogging(step: string): MiddlewareObj<unknown, unknown, Error, Context> {
  const runs = new WeakMap<object, { taskId?: string; imageId?: string; started: number }>();
  return {
    name: 'taskLogging',
    before: (request) => {
      const ids = request.event as { task_id?: string; image_id?: string };
      runs.set(request, { taskId: ids.task_id, imageId: ids.image_id, started: Date.now() });
      appendLogKeys({ step, taskId: ids.task_id, imageId: ids.image_id });
    },
    after: (request) => {
      const run = runs.get(request);
      if (!run) return;
      logger.info('task step done', {
        step,
        taskId: run.taskId,
        imageId: run.imageId,
        ms: Date.now() - run.started,
      });
    },
    onError: (request) => {
      const run = runs.get(request);
      if (!run) return;
      // A refusal (unsafe image, bad input) is the task's outcome, not a fault of the service.
      const log = request.error instanceof HangarError ? logger.info : logger.error;
      log('task step failed', { step, taskId: run.taskId, imageId: run.imageId, error: request.error });
    },
  };
}

export function taskStep<S extends z.ZodType, R>(
  step: string,
  schema: S,
  run: (input: z.infer<S>) => Promise<R>,
): (event?: unknown, context?: Context) => Promise<R> {
  return serviceHandler({ service: 'states' }, [taskInput(schema), taskLogging(step)], (input: unknown) =>
    run(input as z.infer<S>),
  );
}
