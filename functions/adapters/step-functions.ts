/**
 * The WorkflowStarter and TaskTokenNotifier ports on AWS: StartExecution on the state machine
 * whose ARN the CDK app passes in (HANGAR_{IMPORT,EXPORT,PUBLISH,BUILD}_STATE_MACHINE_ARN), and
 * SendTaskSuccess / SendTaskFailure for task tokens. Locally (HANGAR_WORKFLOWS=local) the
 * embedded runner passes its in-process runner to compose() instead (local/step-functions.ts),
 * which runs the same ASL files with the same task handlers.
 */
import {
  SendTaskFailureCommand,
  SendTaskSuccessCommand,
  type SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import type { TaskTokenNotifier, WorkflowName, WorkflowStarter } from '#core/tasks/ports';
import { logger } from '#platform/logger';
import { awsErrorName } from './errors.ts';

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
  constructor(
    private readonly arns: Readonly<Record<WorkflowName, string | undefined>>,
    private readonly client: SFNClient,
  ) {}

  async start(workflow: WorkflowName, executionName: string, input: Record<string, unknown>): Promise<void> {
    const arn = this.arns[workflow];
    if (!arn) throw new Error(`HANGAR_${workflow.toUpperCase()}_STATE_MACHINE_ARN is not set`);
    try {
      await this.client.send(
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

export class SfnTaskTokens implements TaskTokenNotifier {
  constructor(private readonly client: SFNClient) {}

  succeed(token: string, output: Record<string, unknown>): Promise<void> {
    return sendToken('success', () =>
      this.client.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(output) })),
    );
  }

  fail(token: string, error: string, cause: string): Promise<void> {
    return sendToken('failure', () =>
      this.client.send(
        new SendTaskFailureCommand({
          taskToken: token,
          error: error.slice(0, MAX_ERROR_CHARS),
          cause: cause.slice(0, MAX_CAUSE_CHARS),
        }),
      ),
    );
  }
}
