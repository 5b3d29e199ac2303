/**
 * The WorkflowStarter and TaskTokenNotifier ports. On AWS: StartExecution on the state machine
 * whose ARN the CDK app passes in (HANGAR_{IMPORT,EXPORT,PUBLISH}_STATE_MACHINE_ARN), and
 * SendTaskSuccess / SendTaskFailure for task tokens. Locally
 * (HANGAR_WORKFLOWS=local): the in-process runner that local/backend.ts registers here, which
 * runs the same ASL files with the same task handlers (local/step-functions.ts).
 */
import {
  SendTaskFailureCommand,
  SendTaskSuccessCommand,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import type { TaskTokenNotifier, WorkflowName, WorkflowStarter } from '#core/tasks/ports';
import { serviceConfig } from '#platform/config';
import { logger } from '#platform/logger';
import { awsErrorName } from './errors.ts';

let client: SFNClient | undefined;
let localRunner: (WorkflowStarter & TaskTokenNotifier) | undefined;

/** local/backend.ts registers its runner (or removes it on stop). */
export function registerLocalWorkflows(runner: (WorkflowStarter & TaskTokenNotifier) | undefined): void {
  localRunner = runner;
}

/** Step Functions' limits on SendTaskFailure (error 256, cause 32,768 characters). */
const MAX_ERROR_CHARS = 256;
const MAX_CAUSE_CHARS = 32_768;

/** Tokens that no state waits for any more: the waiting state timed out or its execution ended. */
const GONE_TOKEN_ERRORS = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

async function sendToken(kind: 'success' | 'failure', send: () => Promise<unknown>): Promise<void> {
  try {
    await send();
  } catch (error) {
    // The outcome that is reported is already stored; the waiting state ends by its own timeout.
    const name = awsErrorName(error);
    if (name && GONE_TOKEN_ERRORS.has(name))
      logger.warn('task token no longer awaited', { kind, error: name });
    else logger.error('task token could not be answered', { kind, error });
  }
}

export class SfnWorkflowStarter implements WorkflowStarter {
  constructor(private readonly arns: Readonly<Record<WorkflowName, string | undefined>>) {}

  async start(workflow: WorkflowName, executionName: string, input: Record<string, unknown>): Promise<void> {
    const arn = this.arns[workflow];
    if (!arn) throw new Error(`HANGAR_${workflow.toUpperCase()}_STATE_MACHINE_ARN is not set`);
    client ??= new SFNClient({});
    try {
      await client.send(
        new StartExecutionCommand({
          stateMachineArn: arn,
          name: executionName,
          input: JSON.stringify(input),
        }),
      );
    } catch (error) {
      // Execution names are task ids: the execution exists, so a retried start has nothing to do.
      if (awsErrorName(error) === 'ExecutionAlreadyExists') return;
      throw error;
    }
  }
}

/** Chooses per call, so a runner registered after the services were built is still found. */
export const workflowStarter: WorkflowStarter = {
  start(workflow, executionName, input) {
    const config = serviceConfig();
    if (config.workflows.mode === 'local') {
      if (!localRunner)
        return Promise.reject(new Error('HANGAR_WORKFLOWS=local but no local runner is registered'));
      return localRunner.start(workflow, executionName, input);
    }
    return new SfnWorkflowStarter({
      import: config.workflows.importArn,
      export: config.workflows.exportArn,
      publish: config.workflows.publishArn,
    }).start(workflow, executionName, input);
  },
};

/** Chooses per call, like workflowStarter. */
export const taskTokens: TaskTokenNotifier = {
  succeed(token, output) {
    if (serviceConfig().workflows.mode === 'local') {
      if (!localRunner) return Promise.reject(new Error('no local Step Functions runner is registered'));
      return localRunner.succeed(token, output);
    }
    client ??= new SFNClient({});
    const sfn = client;
    return sendToken('success', () =>
      sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(output) })),
    );
  },
  fail(token, error, cause) {
    if (serviceConfig().workflows.mode === 'local') {
      if (!localRunner) return Promise.reject(new Error('no local Step Functions runner is registered'));
      return localRunner.fail(token, error, cause);
    }
    client ??= new SFNClient({});
    const sfn = client;
    return sendToken('failure', () =>
      sfn.send(
        new SendTaskFailureCommand({
          taskToken: token,
          error: error.slice(0, MAX_ERROR_CHARS),
          cause: cause.slice(0, MAX_CAUSE_CHARS),
        }),
      ),
    );
  },
};
