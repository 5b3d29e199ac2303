/**
 * A Hangar function packaged as a container image: the same esbuild bundle as NodeFunction, on
 * AWS's Node 22 Lambda base image, plus qemu-img (the export conversion runs it). The image is
 * built by `cdk deploy` (it needs Docker there); `cdk synth` only bundles and stages the context.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Size, Stack } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import { DockerImageCode, DockerImageFunction } from 'aws-cdk-lib/aws-lambda';
import type { LogGroup } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { buildSync } from 'esbuild';
import type { BucketMode, TableMode } from '../declarations.ts';
import { REPO_ROOT, repoPath } from '../paths.ts';
import {
  bindBucket,
  bindTable,
  FUNCTION_DEFAULTS,
  finishFunction,
  functionBasics,
  type HangarFunction,
  type HangarFunctionProps,
} from './node-function.ts';
import { stagingDir } from './staging.ts';

export interface ContainerFunctionProps extends HangarFunctionProps {
  /** /tmp size; a conversion holds source and output there. */
  readonly ephemeralStorageMb?: number;
}

export const CONTAINER_DOCKERFILE = `# Staged by infra/constructs/container-function.ts: an esbuild bundle plus qemu-img.
FROM public.ecr.aws/lambda/nodejs:22
RUN dnf install -y qemu-img && dnf clean all
COPY index.js index.js.map \${LAMBDA_TASK_ROOT}/
CMD ["index.handler"]
`;

/**
 * Bundles the module and writes the Dockerfile next to it: the image's build context. Skipped,
 * like NodejsFunction's bundling, for stacks the CLI excludes from bundling (`cdk deploy -e`).
 */
function stageBuildContext(scope: Construct, id: string, entry: string): string {
  const dir = stagingDir(scope, id);
  writeFileSync(join(dir, 'Dockerfile'), CONTAINER_DOCKERFILE);
  if (!Stack.of(scope).bundlingRequired) return dir;
  buildSync({
    absWorkingDir: REPO_ROOT,
    entryPoints: [repoPath(entry)],
    outfile: join(dir, 'index.js'),
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    minify: true,
    sourcemap: 'external',
    sourcesContent: false,
    logLevel: 'error',
  });
  return dir;
}

export class ContainerFunction extends DockerImageFunction implements HangarFunction {
  readonly functionLogGroup: LogGroup;

  constructor(scope: Construct, id: string, props: ContainerFunctionProps) {
    const { logGroup, role } = functionBasics(scope, id, props);
    super(scope, id, {
      ...FUNCTION_DEFAULTS,
      code: DockerImageCode.fromImageAsset(stageBuildContext(scope, id, props.entry), {
        platform: Platform.LINUX_ARM64,
      }),
      description: props.description,
      memorySize: props.memorySize ?? FUNCTION_DEFAULTS.memorySize,
      timeout: props.timeout ?? FUNCTION_DEFAULTS.timeout,
      ...(props.ephemeralStorageMb ? { ephemeralStorageSize: Size.mebibytes(props.ephemeralStorageMb) } : {}),
      logGroup,
      role,
      environment: { ...FUNCTION_DEFAULTS.environment, ...props.environment },
    });
    this.functionLogGroup = logGroup;
    finishFunction(this);
  }

  bindTable(table: ITable, mode: TableMode, envVar = 'HANGAR_TABLE'): void {
    bindTable(this, table, mode, envVar);
  }

  bindBucket(bucket: IBucket, modes: readonly BucketMode[], envVar: string, objects = '*'): void {
    bindBucket(this, bucket, modes, envVar, objects);
  }

  allow(statement: { actions: string[]; resources: string[] }): void {
    this.addToRolePolicy(new iam.PolicyStatement({ effect: iam.Effect.ALLOW, ...statement }));
  }
}
