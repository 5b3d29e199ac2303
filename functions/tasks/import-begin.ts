/** "Begin Import": the task goes to processing and the image to importing (it must hold the lock). */
import { services } from '#edge/compose';
import { ImportInputSchema } from './schemas.ts';
import { taskStep } from './step.ts';

export const handler = taskStep('import-begin', ImportInputSchema, async (input) => {
  await services().imports.begin(input);
  return {};
});
