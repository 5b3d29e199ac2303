/**
 * Shared by the infra tests: synthesize the whole app once (real esbuild bundling, cdk.json's
 * context, no account or region in the environment) and read what came out.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { buildHangar, type Hangar, type HangarOptions } from '../../infra/hangar.ts';
import { repoPath } from '../../infra/paths.ts';

export interface Synthesized {
  readonly hangar: Hangar;
  readonly outdir: string;
  readonly stateful: Template;
  readonly application: Template;
  cleanup(): void;
}

export function cdkJsonContext(): Record<string, unknown> {
  return (JSON.parse(readFileSync(repoPath('cdk.json'), 'utf8')) as { context: Record<string, unknown> })
    .context;
}

export interface SynthOptions extends HangarOptions {
  /**
   * false: skip esbuild (CDK's own `aws:cdk:bundling-stacks` switch). The default deployment is
   * bundled for real (app.test.ts, cdk-cli.test.ts); the variants only change wiring.
   */
  readonly bundle?: boolean;
}

/** A built console's stand-in: the real one (console/dist) is built by Vite, not by these tests. */
export const CONSOLE_FIXTURE = 'test/fixtures/infra/console';

export function synthHangar(context: Record<string, unknown> = {}, options: SynthOptions = {}): Synthesized {
  const outdir = mkdtempSync(join(tmpdir(), 'hangar-cdk-'));
  const { bundle = true, ...hangarOptions } = options;
  const app = new App({
    outdir,
    context: {
      ...cdkJsonContext(),
      consoleDir: CONSOLE_FIXTURE,
      ...(bundle ? {} : { 'aws:cdk:bundling-stacks': [] }),
      ...context,
    },
  });
  // An empty environment: no CDK_DEFAULT_ACCOUNT/REGION and no HANGAR_* settings leak in.
  const hangar = buildHangar(app, { env: {}, ...hangarOptions });
  app.synth();
  return {
    hangar,
    outdir,
    stateful: Template.fromStack(hangar.stateful),
    application: Template.fromStack(hangar.application),
    cleanup: () => rmSync(outdir, { recursive: true, force: true }),
  };
}

export function logicalId(construct: IConstruct): string {
  const element = (construct.node.defaultChild ?? construct) as CfnElement;
  return Stack.of(element).resolve(element.logicalId) as string;
}

export type Resources = Record<
  string,
  { Type: string; Properties?: Record<string, unknown>; Metadata?: unknown }
>;

export function resources(template: Template): Resources {
  return (template.toJSON() as { Resources: Resources }).Resources;
}

export interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: unknown;
  Principal?: unknown;
  Sid?: string;
}

const list = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

/** The statements of every IAM policy attached to the role a function (or state machine) runs as. */
export function statementsOfRole(template: Template, roleRef: unknown): Statement[] {
  // A role made in this stack is {Fn::GetAtt: [id, Arn]}; one from the stateful stack is a stack output.
  const marker =
    roleRef && typeof roleRef === 'object' && 'Fn::GetAtt' in roleRef
      ? String((roleRef as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0])
      : JSON.stringify(
          (roleRef as { 'Fn::GetStackOutput': { OutputName: string } })['Fn::GetStackOutput'].OutputName,
        );
  return Object.values(resources(template))
    .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties?.Roles).includes(marker))
    .flatMap(
      (r) => (r.Properties?.PolicyDocument as { Statement: Statement[] } | undefined)?.Statement ?? [],
    );
}

/**
 * Names what a policy resource points at, so statements can be compared with the declarations:
 * `*`, or `<label><suffix>` for a known logical id (e.g. `bucket:images/images/*`).
 */
export function describeResource(resource: unknown, labels: Readonly<Record<string, string>>): string {
  if (resource === '*') return '*';
  const json = JSON.stringify(resource);
  const found = Object.entries(labels).filter(
    ([id]) => json.includes(`"${id}"`) || json.includes(`${id}Arn`) || json.includes(`Ref${id}`),
  );
  if (found.length !== 1) return `unknown:${json}`;
  const suffix = /"(\/[^"]*|:\*)"\]\]\}$/.exec(json)?.[1] ?? '';
  return `${found[0]?.[1]}${suffix}`;
}

/** `action@resource` for every allowed action/resource pair of the statements. */
export function grants(statements: readonly Statement[], labels: Readonly<Record<string, string>>): string[] {
  return statements
    .filter((s) => s.Effect === 'Allow')
    .flatMap((s) =>
      list(s.Action).flatMap((a) => list(s.Resource).map((r) => `${a}@${describeResource(r, labels)}`)),
    )
    .sort();
}

export function unique(values: readonly string[]): string[] {
  return [...new Set(values)].sort();
}
