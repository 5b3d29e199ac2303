/** "Fail Publish": the gate instance goes, the task fails with the reason; the reference stays. */
import { PublishInputSchema } from '#core/references/publish';
import { services } from '#edge/compose';
import { StepErrorSchema } from './schemas.ts';
import { taskStep } from './step.ts';

const FailInputSchema = PublishInputSchema.extend({ error: StepErrorSchema });

export const handler = taskStep('publish-fail', FailInputSchema, async (input) => {
  await services().publishing.fail(input);
  return {};
});
