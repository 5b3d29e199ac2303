/** "Begin Export": the task goes to processing. */
import { getTaskServices } from '#edge/task-services';
import { ExportInputSchema } from './schemas.ts';
import { taskStep } from './step.ts';

export const handler = taskStep('export-begin', ExportInputSchema, async (input) => {
  await getTaskServices().exports.begin(input);
  return {};
});
