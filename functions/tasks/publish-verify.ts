/** "Verify Candidate": the stored bytes re-hashed and inspected; the reference has not moved. */
import { PublishInputSchema } from '#core/references/publish';
import { getTaskServices } from '#edge/task-services';
import { taskStep } from './step.ts';

export const handler = taskStep('publish-verify', PublishInputSchema, (input) =>
  getTaskServices().publishing.verify(input),
);
