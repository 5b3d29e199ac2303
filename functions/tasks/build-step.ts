/**
 * Every step of the build machine but the publish steps it shares with the publish machine, as
 * one function: each Task state names its step in its Parameters. One function rather than one
 * per step, unlike the other machines, because each function costs the application stack about
 * seven resources and it is near CloudFormation's 500 per stack.
 */
import { z } from 'zod';
import { BuildInputSchema } from '#core/builds/builds-service';
import { services } from '#edge/compose';
import { StepErrorSchema } from './schemas.ts';
import { taskStep } from './step.ts';

const BuildStepSchema = BuildInputSchema.extend({
  step: z.enum(['begin', 'check', 'snapshot', 'remove', 'test', 'publish', 'fail']),
  error: StepErrorSchema,
});

export const handler = taskStep('build-step', BuildStepSchema, async (input): Promise<object> => {
  const builds = services().builds;
  switch (input.step) {
    case 'begin':
      return builds.begin(input).then(() => ({}));
    case 'check':
      return builds.check(input);
    case 'snapshot':
      return builds.snapshot(input);
    case 'remove':
      return builds.removeInstance(input).then(() => ({}));
    case 'test':
      return builds.test(input);
    case 'publish':
      return builds.publish(input).then(() => ({}));
    case 'fail':
      return builds.fail(input).then(() => ({}));
  }
});
