/**
 * Lambda functions from the project's TypeScript modules, with the house defaults (arm64,
 * X-Ray, its own log group with retention, source maps) and an IAM role that starts empty:
 * every permission comes from bindTable/bindBucket/allow, which set the matching environment
 * variable in the same call so the two cannot drift apart.
 *
 * NodeFunction: an esbuild bundle on the Node 22 runtime. ContainerFunction (container-function.ts):
 * the same bundle in a container image, for modules that need programs the runtime lacks.
 */
import { type CfnElement, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Architecture, type Function as LambdaFunction, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat, SourceMapMode } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { NagSuppressions } from 'cdk-nag';
import type { Construct, IConstruct } from 'constructs';
import { BUCKET_ACTIONS, type BucketMode, TABLE_ACTIONS, type TableMode } from '../declarations.ts';
import { REPO_ROOT, repoPath } from '../paths.ts';

export interface HangarFunctionProps {
  /** Module path relative to the repository root (or absolute); it exports `handler`. */
  readonly entry: string;
  readonly description: string;
  readonly logRetention: RetentionDays;
  readonly memorySize?: number;
  readonly timeout?: Duration;
  readonly environment?: Readonly<Record<string, string>>;
  /** A role made elsewhere (the image writers live in the stateful stack); default: a new empty one. */
  readonly role?: iam.IRole;
}

/** What the stacks need from any Hangar function, however it is packaged. */
export interface HangarFunction extends LambdaFunction {
  readonly functionLogGroup: LogGroup;
  bindTable(table: ITable, mode: TableMode, envVar?: string): void;
  bindBucket(bucket: IBucket, modes: readonly BucketMode[], envVar: string, objects?: string): void;
  allow(statement: { actions: string[]; resources: string[] }): void;
}

/** The log group and role a function is created with (both before `super`, so in `scope`). */
export function functionBasics(
  scope: Construct,
  id: string,
  props: HangarFunctionProps,
): { logGroup: LogGroup; role: iam.IRole } {
  // Explicit, so retention is ours and no LogRetention custom resource is needed.
  const logGroup = new LogGroup(scope, `${id}Logs`, {
    retention: props.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  // No AWSLambdaBasicExecutionRole: its logs:* on every log group is more than one function needs.
  const role =
    props.role ??
    new iam.Role(scope, `${id}Role`, { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  return { logGroup, role };
}

export const FUNCTION_DEFAULTS = {
  architecture: Architecture.ARM_64,
  tracing: Tracing.ACTIVE,
  memorySize: 512,
  // Under API Gateway's 30 s integration timeout.
  timeout: Duration.seconds(29),
  // Stack traces point into the TypeScript sources, not the bundle.
  environment: { NODE_OPTIONS: '--enable-source-maps' },
};

/** The grants every function gets (its own log streams) and the findings that come with X-Ray. */
export function finishFunction(fn: HangarFunction): void {
  fn.allow({
    actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
    resources: [fn.functionLogGroup.logGroupArn],
  });
  suppress(
    fn,
    'X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions: AWS requires Resource "*".',
    'Resource::*',
  );
}

/** An IAM5 finding on the function's policy, accepted for a stated reason. */
function suppress(fn: LambdaFunction, reason: string, appliesTo: string | { regex: string }): void {
  // Applies to the policies that exist now; every grant lands in the role's one policy.
  NagSuppressions.addResourceSuppressions(
    fn.role ?? fn,
    [{ id: 'AwsSolutions-IAM5', reason, appliesTo: [appliesTo] }],
    true,
  );
}

/**
 * cdk-nag's finding for `<resource ARN><suffix>`. The ARN reads `<LogicalId.Arn>` before
 * cross-stack references are resolved and a stack-output expression after (on a second synth),
 * so both are matched, by the logical id.
 */
function nagResource(resource: IConstruct, suffix: string): { regex: string } {
  const element = resource.node.defaultChild as CfnElement;
  const id = Stack.of(element).resolve(element.logicalId) as string;
  const escaped = suffix.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  return {
    regex: `/^Resource::(<${id}\\.Arn>|\\{"Fn::GetStackOutput".*"[A-Za-z]*${id}Arn[A-Za-z0-9]*"\\}\\})${escaped}$/`,
  };
}

export function bindTable(fn: HangarFunction, table: ITable, mode: TableMode, envVar: string): void {
  fn.addEnvironment(envVar, table.tableName);
  fn.allow({ actions: [...TABLE_ACTIONS[mode]], resources: [table.tableArn, `${table.tableArn}/index/*`] });
  suppress(
    fn,
    "Listings query the GSIs (by_<sort key>); <table>/index/* is exactly this table's indexes.",
    nagResource(table, '/index/*'),
  );
}

export function bindBucket(
  fn: HangarFunction,
  bucket: IBucket,
  modes: readonly BucketMode[],
  envVar: string,
  objects: string,
): void {
  fn.addEnvironment(envVar, bucket.bucketName);
  const objectActions = modes.filter((m) => m !== 'list').flatMap((m) => BUCKET_ACTIONS[m]);
  if (objectActions.length > 0) {
    fn.allow({ actions: objectActions, resources: [bucket.arnForObjects(objects)] });
    suppress(
      fn,
      `Object keys are made at run time (e.g. images/<id>/<uuid>); the grant covers only ${objects} in this bucket.`,
      nagResource(bucket, `/${objects}`),
    );
  }
  if (modes.includes('list')) fn.allow({ actions: [...BUCKET_ACTIONS.list], resources: [bucket.bucketArn] });
}

export class NodeFunction extends NodejsFunction implements HangarFunction {
  readonly functionLogGroup: LogGroup;

  constructor(scope: Construct, id: string, props: HangarFunctionProps) {
    const { logGroup, role } = functionBasics(scope, id, props);
    super(scope, id, {
      ...FUNCTION_DEFAULTS,
      entry: repoPath(props.entry),
      handler: 'handler',
      description: props.description,
      projectRoot: REPO_ROOT,
      depsLockFilePath: repoPath('package-lock.json'),
      runtime: Runtime.NODEJS_22_X,
      memorySize: props.memorySize ?? FUNCTION_DEFAULTS.memorySize,
      timeout: props.timeout ?? FUNCTION_DEFAULTS.timeout,
      logGroup,
      role,
      environment: { ...FUNCTION_DEFAULTS.environment, ...props.environment },
      bundling: {
        format: OutputFormat.CJS,
        target: 'node22',
        minify: true,
        sourceMap: true,
        sourceMapMode: SourceMapMode.EXTERNAL,
        sourcesContent: false,
        // The SDK versions the code was tested with, not whatever the runtime ships.
        bundleAwsSDK: true,
        externalModules: [],
        // Local esbuild only: synth must work offline and without Docker.
        forceDockerBundling: false,
      },
    });
    this.functionLogGroup = logGroup;
    finishFunction(this);
    NagSuppressions.addResourceSuppressions(this, [
      {
        id: 'AwsSolutions-L1',
        reason:
          'Node.js 22 is the runtime this project targets (local dev and CI run Node 20, so the code stays free of ' +
          'newer APIs); moving to a newer runtime is a deliberate upgrade, not a default.',
      },
    ]);
  }

  bindTable(table: ITable, mode: TableMode, envVar = 'HANGAR_TABLE'): void {
    bindTable(this, table, mode, envVar);
  }

  bindBucket(bucket: IBucket, modes: readonly BucketMode[], envVar: string, objects = '*'): void {
    bindBucket(this, bucket, modes, envVar, objects);
  }

  /** Any other permission, stated in full (no CDK grant helpers: they grant more than is used). */
  allow(statement: { actions: string[]; resources: string[] }): void {
    this.addToRolePolicy(new iam.PolicyStatement({ effect: iam.Effect.ALLOW, ...statement }));
  }
}
