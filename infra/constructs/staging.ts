/**
 * A scratch directory for files the app generates at synth time (a container build context, the
 * token layer), inside the cloud assembly's output directory, so it goes away with cdk.out
 * instead of piling up in the system's temp directory.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Stage } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

export function stagingDir(scope: IConstruct, name: string): string {
  const stage = Stage.of(scope);
  if (!stage) throw new Error(`${scope.node.path} is not inside an App`);
  // Keyed by construct path: the same construct gets the same (fresh) directory on every synth.
  const dir = join(
    stage.outdir,
    'hangar-staging',
    `${scope.node.path.replace(/[^A-Za-z0-9-]+/g, '-')}-${name}`,
  );
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}
