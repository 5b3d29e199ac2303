/**
 * A state machine from an ASL file (state-machines/<name>.asl.json). CDK cannot see into the
 * file, so this construct does what it would otherwise infer: it checks that every `${...}`
 * placeholder gets a substitution, and grants the role exactly `lambda:InvokeFunction` on the
 * functions the file names, no more.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { DefinitionBody, LogLevel, StateMachine, StateMachineType } from 'aws-cdk-lib/aws-stepfunctions';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';

export interface WorkflowProps {
  /** Absolute path of the ASL file. */
  readonly aslFile: string;
  /** By the placeholder the file names each with, e.g. `ImportCopyFunctionArn`. */
  readonly functions: Readonly<Record<string, IFunction>>;
  /** Other placeholders the file may use (resource names); unused ones are fine. */
  readonly substitutions?: Readonly<Record<string, string>>;
  readonly logRetention: RetentionDays;
}

/** `${Name}` placeholders in ASL text, sorted and unique. */
export function placeholdersOf(asl: string): string[] {
  return [...new Set([...asl.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1] ?? ''))].sort();
}

export class Workflow extends Construct {
  readonly stateMachine: StateMachine;
  readonly role: iam.Role;
  /** The placeholders the file uses, all of them substituted. */
  readonly placeholders: readonly string[];

  constructor(scope: Construct, id: string, props: WorkflowProps) {
    super(scope, id);
    const file = basename(props.aslFile);
    const text = readFileSync(props.aslFile, 'utf8');
    try {
      JSON.parse(text);
    } catch (error) {
      throw new Error(`${file} is not valid JSON`, { cause: error });
    }
    this.placeholders = placeholdersOf(text);

    const substitutions: Record<string, string> = { ...props.substitutions };
    for (const [name, fn] of Object.entries(props.functions)) {
      // A granted function the file does not call would be a permission nobody uses.
      if (!this.placeholders.includes(name))
        throw new Error(`${file} does not use \${${name}}, but a function is registered for it`);
      substitutions[name] = fn.functionArn;
    }
    const missing = this.placeholders.filter((p) => !(p in substitutions));
    if (missing.length > 0)
      throw new Error(
        `${file} uses ${missing.map((p) => `\${${p}}`).join(', ')} with no substitution: register the ` +
          'module in functions/tasks/registry.ts (STATE_MACHINES) or use a resource placeholder (TableName, ...).',
      );
    const used = Object.fromEntries(
      Object.entries(substitutions).filter(([k]) => this.placeholders.includes(k)),
    );

    this.role = new iam.Role(this, 'Role', { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });
    const invocable = Object.values(props.functions);
    if (invocable.length > 0)
      this.role.addToPolicy(
        new iam.PolicyStatement({
          actions: ['lambda:InvokeFunction'],
          // Qualified ARNs too, for a file that invokes a version or alias.
          resources: invocable.flatMap((fn) => [fn.functionArn, `${fn.functionArn}:*`]),
        }),
      );

    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      definitionBody: DefinitionBody.fromFile(props.aslFile),
      definitionSubstitutions: used,
      stateMachineType: StateMachineType.STANDARD,
      role: this.role,
      tracingEnabled: true,
      logs: { destination: logGroup, level: LogLevel.ALL, includeExecutionData: false },
    });

    NagSuppressions.addResourceSuppressions(
      this.role,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'Resource "*" only for X-Ray (PutTraceSegments, PutTelemetryRecords, GetSampling*) and CloudWatch ' +
            'Logs delivery (logs:*LogDelivery*, *ResourcePolic*, DescribeLogGroups), which support no ' +
            'resource-level permissions; `<fn>:*` is the qualified ARN of a function this file invokes.',
          appliesTo: ['Resource::*', { regex: '/^Resource::<[A-Za-z0-9]+\\.Arn>:\\*$/' }],
        },
      ],
      true,
    );
  }
}
