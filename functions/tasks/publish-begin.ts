/** "Begin Publish": the publish task goes to processing. */
import { PublishInputSchema } from '#core/references/publish';
import { getTaskServices } from '#edge/task-services';
import { taskStep } from './step.ts';

export const handler = taskStep('publish-begin', PublishInputSchema, async (input) => {
  await getTaskServices().publishing.begin(input);
  return {};
});
