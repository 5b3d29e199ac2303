/** "Remove Gate Instance": the gate passed; its instance is destroyed. */
import { PublishInputSchema } from '#core/references/publish';
import { services } from '#edge/compose';
import { taskStep } from './step.ts';

export const handler = taskStep('publish-cleanup', PublishInputSchema, (input) =>
  services().publishing.removeGate(input),
);
