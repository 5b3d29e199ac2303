/**
 * "Boot Candidate" (a `.waitForTaskToken` state): creates the gate instance carrying the task
 * token and returns; the state then waits until the end of the instance's build answers the token.
 */
import { PublishInputSchema } from '#core/references/publish';
import { services } from '#edge/compose';
import { taskStep } from './step.ts';

const BootInputSchema = PublishInputSchema.extend({ task_token: PublishInputSchema.shape.task_id });

export const handler = taskStep('publish-boot', BootInputSchema, (input) =>
  services().publishing.bootGate(input),
);
