/** "Move Reference": the compare-and-swap move to the candidate; the task succeeds. */
import { PublishInputSchema } from '#core/references/publish';
import { getTaskServices } from '#edge/task-services';
import { taskStep } from './step.ts';

export const handler = taskStep('publish-move', PublishInputSchema, async (input) => {
  await getTaskServices().publishing.move(input);
  return {};
});
