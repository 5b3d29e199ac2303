/** Assertions several infra test files make about a synthesized app. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { expect } from 'vitest';
import { CONNECTIONS_TABLE } from '#adapters/dynamo/connections-table';
import { AGENT_SOCKET_STAGE } from '../../infra/app-stack.ts';
import { placeholdersOf } from '../../infra/constructs/workflow.ts';
import {
  BUCKET_ACTIONS,
  BUCKETS,
  type BucketName,
  CONNECTIONS_ACTIONS,
  STREAM_ACTIONS,
  STREAM_LIST_ACTION,
  TABLE_ACTIONS,
} from '../../infra/declarations.ts';
import type { FunctionEntry } from '../../infra/inventory.ts';
import { grants, logicalId, resources, type Synthesized, statementsOfRole, unique } from './synth.ts';

/** Actions AWS accepts only on Resource "*" (X-Ray, and the log delivery Step Functions sets up). */
export const STAR_ONLY_ACTIONS = new Set([
  'xray:PutTraceSegments',
  'xray:PutTelemetryRecords',
  'xray:GetSamplingRules',
  'xray:GetSamplingTargets',
  'logs:CreateLogDelivery',
  'logs:GetLogDelivery',
  'logs:UpdateLogDelivery',
  'logs:DeleteLogDelivery',
  'logs:ListLogDeliveries',
  'logs:PutResourcePolicy',
  'logs:DescribeResourcePolicies',
  'logs:DescribeLogGroups',
  // Lambda's stream poller lists the table's streams; the reads themselves name the stream.
  'dynamodb:ListStreams',
]);

/** Logical id -> a readable label, for every resource a grant may point at. */
export function labels(synth: Synthesized): Record<string, string> {
  const { stateful, application } = synth.hangar;
  const out: Record<string, string> = { [logicalId(stateful.table)]: 'table' };
  // The stream ARN arrives as the stateful stack's output <table id>StreamArn...
  out[`${logicalId(stateful.table)}Stream`] = 'table-stream';
  out[logicalId(application.agentSockets.connections)] = 'connections';
  out[logicalId(application.agentSockets.api)] = 'socket-api';
  for (const [name, bucket] of Object.entries(stateful.buckets)) out[logicalId(bucket)] = `bucket:${name}`;
  for (const [key, fn] of Object.entries(application.functions)) {
    out[logicalId(fn)] = `fn:${key}`;
    out[logicalId(fn.functionLogGroup)] = `logs:${key}`;
  }
  for (const [key, queue] of Object.entries(application.failureQueues))
    out[logicalId(queue)] = `queue:${key}`;
  for (const [name, wf] of Object.entries(application.workflows))
    out[logicalId(wf.stateMachine)] = `sm:${name}`;
  return out;
}

function accessGrants(access: FunctionEntry['access']): string[] {
  const out: string[] = [];
  if (access.table)
    for (const action of TABLE_ACTIONS[access.table]) out.push(`${action}@table`, `${action}@table/index/*`);
  for (const [name, modes] of Object.entries(access.buckets ?? {}) as [BucketName, string[]][])
    for (const mode of modes)
      for (const action of BUCKET_ACTIONS[mode as keyof typeof BUCKET_ACTIONS])
        out.push(
          mode === 'list' ? `${action}@bucket:${name}` : `${action}@bucket:${name}/${BUCKETS[name].objects}`,
        );
  for (const mode of access.agentConnections ?? [])
    for (const action of CONNECTIONS_ACTIONS[mode])
      out.push(
        mode === 'query-by-connection'
          ? `${action}@connections/index/${CONNECTIONS_TABLE.connectionIndex}`
          : `${action}@connections`,
      );
  if (access.postsToAgentSockets)
    out.push(`execute-api:ManageConnections@socket-api/${AGENT_SOCKET_STAGE}/POST/@connections/*`);
  if (access.readsJobStream)
    out.push(...STREAM_ACTIONS.map((action) => `${action}@table-stream`), `${STREAM_LIST_ACTION}@*`);
  for (const wf of access.startsWorkflows ?? []) out.push(`states:StartExecution@sm:${wf}`);
  for (const wf of access.answersWorkflows ?? [])
    out.push(`states:SendTaskSuccess@sm:${wf}`, `states:SendTaskFailure@sm:${wf}`);
  return out;
}

/** What a function's role may do: its declarations plus the house defaults (logs, X-Ray, its DLQ). */
export function expectedFunctionGrants(entry: FunctionEntry): string[] {
  const out = [
    'xray:PutTelemetryRecords@*',
    'xray:PutTraceSegments@*',
    `logs:CreateLogStream@logs:${entry.key}`,
    `logs:PutLogEvents@logs:${entry.key}`,
    ...accessGrants(entry.access),
  ];
  if (entry.kind === 'trigger')
    for (const action of ['sqs:SendMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'])
      out.push(`${action}@queue:${entry.key}`);
  return unique(out);
}

export function assertFunctionGrants(synth: Synthesized): void {
  const names = labels(synth);
  const app = resources(synth.application);
  expect(Object.keys(synth.hangar.application.functions).sort()).toEqual(
    synth.hangar.inventory.functions.map((f) => f.key).sort(),
  );
  for (const entry of synth.hangar.inventory.functions) {
    const fn = synth.hangar.application.functions[entry.key];
    if (!fn) throw new Error(`no function ${entry.key}`);
    const role = app[logicalId(fn)]?.Properties?.Role;
    const actual = unique(grants(statementsOfRole(synth.application, role), names));
    expect(actual, entry.key).toEqual(expectedFunctionGrants(entry));
    for (const grant of actual.filter((g) => g.endsWith('@*')))
      expect(STAR_ONLY_ACTIONS.has(grant.slice(0, -2)), `${entry.key}: ${grant}`).toBe(true);
  }
}

/**
 * Every ASL file in `dir` is a state machine whose `${...}` placeholders all have substitutions,
 * whose staged definition is the file, and whose role invokes exactly the functions it names.
 */
export function assertWorkflowsWired(synth: Synthesized, dir: string): number {
  const files = readdirSync(dir).filter((f) => f.endsWith('.asl.json'));
  const app = resources(synth.application);
  const names = labels(synth);
  expect(synth.hangar.inventory.workflows.map((w) => w.file)).toEqual(
    expect.arrayContaining(files.map((f) => join(dir, f))),
  );
  for (const file of files) {
    const name = synth.hangar.inventory.workflows.find((w) => w.file === join(dir, file))?.name ?? file;
    const text = readFileSync(join(dir, file), 'utf8');
    const workflow = synth.hangar.application.workflows[name];
    if (!workflow) throw new Error(`no state machine for ${file}`);
    const machine = app[logicalId(workflow.stateMachine)]?.Properties ?? {};

    const substitutions = machine.DefinitionSubstitutions as Record<string, unknown> | undefined;
    const placeholders = placeholdersOf(text);
    expect(Object.keys(substitutions ?? {}).sort(), file).toEqual(placeholders);
    const registered = synth.hangar.inventory.workflows.find((w) => w.name === name)?.functions ?? {};
    for (const [key, value] of Object.entries(substitutions ?? {})) {
      expect(value, `${file}: ${key}`).toBeTruthy();
      const module = registered[key];
      if (module) {
        const fn = synth.hangar.application.functions[module];
        expect(fn, `${file}: ${key}`).toBeDefined();
        expect(JSON.stringify(value)).toContain(logicalId(fn ?? synth.hangar.application));
      } else expect(key, file).not.toMatch(/FunctionArn$/);
    }
    // The definition CloudFormation substitutes into is the file itself, staged as an asset.
    const location = machine.DefinitionS3Location as { Key: string };
    expect(readFileSync(join(synth.outdir, `asset.${location.Key}`), 'utf8')).toBe(text);

    // The role may invoke exactly the registered functions; everything else is log delivery and X-Ray.
    const actual = unique(grants(statementsOfRole(synth.application, machine.RoleArn), names));
    const invokes = actual.filter((g) => !(g.endsWith('@*') && STAR_ONLY_ACTIONS.has(g.slice(0, -2))));
    expect(invokes, file).toEqual(
      unique(
        Object.values(registered).flatMap((k) => [
          `lambda:InvokeFunction@fn:${k}`,
          `lambda:InvokeFunction@fn:${k}:*`,
        ]),
      ),
    );
  }
  return files.length;
}

export interface Suppression {
  readonly resource: string;
  readonly id: string;
  readonly reason: string;
}

/** No AwsSolutions error or warning is left, and each suppression gives a reason. */
export function assertNagClean(synth: Synthesized): Suppression[] {
  const suppressions: Suppression[] = [];
  for (const stack of [synth.hangar.stateful, synth.hangar.application]) {
    const annotations = Annotations.fromStack(stack);
    expect(annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-'))).toEqual([]);
    expect(annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-'))).toEqual([]);
    const template = stack === synth.hangar.stateful ? synth.stateful : synth.application;
    for (const [id, resource] of Object.entries(resources(template))) {
      const rules =
        (resource.Metadata as { cdk_nag?: { rules_to_suppress?: Array<{ id: string; reason: string }> } })
          ?.cdk_nag?.rules_to_suppress ?? [];
      for (const rule of rules) {
        expect(rule.reason.length, `${id} ${rule.id}`).toBeGreaterThan(40);
        suppressions.push({ resource: `${stack.stackName}/${id}`, id: rule.id, reason: rule.reason });
      }
    }
  }
  return suppressions;
}
