/** "Finish Export" and "Fail Export": the task succeeds with the result, or fails with the reason. */
import type { ExportResult } from '#core/transfer/export';
import { services } from '#edge/compose';
import { ExportFinishInputSchema } from './schemas.ts';
import { taskStep } from './step.ts';

export const handler = taskStep('export-finish', ExportFinishInputSchema, async (input) => {
  const { result, ...rest } = input;
  await services().exports.finish(result ? { ...rest, result: result as ExportResult } : rest);
  return {};
});
