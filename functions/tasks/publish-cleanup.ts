/** "Remove Gate Instance": the gate passed; its instance is destroyed. */
import { PublishInputSchema } from '#core/references/publish';
import { getTaskServices } from '#edge/task-services';
import { taskStep } from './step.ts';

export const handler = taskStep('publish-cleanup', PublishInputSchema, (input) =>
  getTaskServices().publishing.removeGate(input),
);
