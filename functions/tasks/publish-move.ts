/** "Move Reference": the compare-and-swap move to the candidate; the task succeeds. */
import { PublishInputSchema } from '#core/references/publish';
import { services } from '#edge/compose';
import { taskStep } from './step.ts';

export const handler = taskStep('publish-move', PublishInputSchema, async (input) => {
  await services().publishing.move(input);
  return {};
});
