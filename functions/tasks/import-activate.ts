/** "Activate Image": the image becomes active with its data, the lock is released, the task succeeds. */
import { services } from '#edge/compose';
import { ActivateInputSchema } from './schemas.ts';
import { taskStep } from './step.ts';

export const handler = taskStep('import-activate', ActivateInputSchema, async (input) => {
  await services().imports.activate(input);
  return {};
});
