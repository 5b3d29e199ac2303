/**
 * The WorkflowStarter port. On AWS: StartExecution on the state machine whose ARN the CDK app
 * passes in (HANGAR_IMPORT_STATE_MACHINE_ARN, HANGAR_EXPORT_STATE_MACHINE_ARN). Locally
 * (HANGAR_WORKFLOWS=local): the in-process runner that local/backend.ts registers here, which
 * runs the same ASL files with the same task handlers (local/step-functions.ts).
 */
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { WorkflowName, WorkflowStarter } from '#core/ports';
import { serviceConfig } from '#shared/config';
import { awsErrorName } from './errors.ts';

let client: SFNClient | undefined;
let localRunner: WorkflowStarter | undefined;

/** local/backend.ts registers its runner (or removes it on stop). */
export function registerLocalWorkflows(runner: WorkflowStarter | undefined): void {
  localRunner = runner;
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
    }).start(workflow, executionName, input);
  },
};
