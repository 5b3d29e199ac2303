/** "Verify Candidate": the stored bytes re-hashed and inspected; the reference has not moved. */
import { PublishInputSchema } from '#core/references/publish';
import { services } from '#edge/compose';
import { taskStep } from './step.ts';

export const handler = taskStep('publish-verify', PublishInputSchema, (input) =>
  services().publishing.verify(input),
);
