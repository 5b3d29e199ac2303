/** "Begin Publish": the publish task goes to processing. */
import { PublishInputSchema } from '#core/references/publish';
import { services } from '#edge/compose';
import { taskStep } from './step.ts';

export const handler = taskStep('publish-begin', PublishInputSchema, async (input) => {
  await services().publishing.begin(input);
  return {};
});
