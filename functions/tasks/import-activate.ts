/** "Activate Image": the image becomes active with its data, the lock is released, the task succeeds. */
import { getTaskServices } from '#edge/task-services';
import { ActivateInputSchema } from './schemas.ts';
import { taskStep } from './step.ts';

export const handler = taskStep('import-activate', ActivateInputSchema, async (input) => {
  await getTaskServices().imports.activate(input);
  return {};
});
