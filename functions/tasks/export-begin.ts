/** "Begin Export": the task goes to processing. */
import { services } from '#edge/compose';
import { ExportInputSchema } from './schemas.ts';
import { taskStep } from './step.ts';

export const handler = taskStep('export-begin', ExportInputSchema, async (input) => {
  await services().exports.begin(input);
  return {};
});
