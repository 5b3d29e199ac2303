/**
 * "Fail Import" (every Catch of the import machine leads here): no blob left behind, the image back
 * to queued with os_glance_failed_import, the task failed with the same message.
 */
import { services } from '#edge/compose';
import { FailInputSchema } from './schemas.ts';
import { taskStep } from './step.ts';

export const handler = taskStep('import-fail', FailInputSchema, async (input) => {
  await services().imports.fail(input);
  return {};
});
