/** The Workflow construct on its own: a fixture ASL file, inline functions, no bundling. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Code, Function as LambdaFunction, Runtime } from 'aws-cdk-lib/aws-lambda';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { afterAll, describe, expect, it } from 'vitest';
import { placeholdersOf, Workflow } from '../../infra/constructs/workflow.ts';
import { repoPath } from '../../infra/paths.ts';
import { logicalId, resources, type Statement } from './synth.ts';

const FIXTURE = repoPath('test/fixtures/infra/state-machines/echo.asl.json');
const scratch = mkdtempSync(join(tmpdir(), 'hangar-workflow-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function setUp(placeholders: readonly string[] = ['EchoFunctionArn']) {
  const stack = new Stack(new App({ outdir: mkdtempSync(join(scratch, 'out-')) }), 'Test');
  const functions = Object.fromEntries(
    placeholders.map((p) => [
      p,
      new LambdaFunction(stack, p, {
        runtime: Runtime.NODEJS_22_X,
        handler: 'index.handler',
        code: Code.fromInline('exports.handler = async (e) => e;'),
      }),
    ]),
  );
  return { stack, functions };
}

describe('placeholdersOf', () => {
  it('lists each placeholder once, sorted', () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: ASL placeholders, not template literals.
    expect(placeholdersOf('{"a":"${B}","b":"${A}","c":"${B}","d":"$.x","e":"${not valid}"}')).toEqual([
      'A',
      'B',
    ]);
  });
});

describe('Workflow', () => {
  it('substitutes every placeholder and lets its role invoke exactly the named functions', () => {
    // Prepare
    const { stack, functions } = setUp();

    // Act
    const workflow = new Workflow(stack, 'Echo', {
      aslFile: FIXTURE,
      functions,
      substitutions: { TableName: 'the-table', BucketName: 'unused' },
      logRetention: RetentionDays.ONE_WEEK,
    });
    const template = Template.fromStack(stack);

    // Assess
    const machine = resources(template)[logicalId(workflow.stateMachine)]?.Properties ?? {};
    const echoId = logicalId(functions.EchoFunctionArn ?? stack);
    expect(machine.DefinitionSubstitutions).toEqual({
      EchoFunctionArn: { 'Fn::GetAtt': [echoId, 'Arn'] },
      TableName: 'the-table',
    });
    expect(workflow.placeholders).toEqual(placeholdersOf(readFileSync(FIXTURE, 'utf8')));
    expect(machine).toMatchObject({
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: false },
    });
    const statements = Object.values(resources(template))
      .filter((r) => r.Type === 'AWS::IAM::Policy')
      .flatMap(
        (r) => (r.Properties?.PolicyDocument as { Statement: Statement[] } | undefined)?.Statement ?? [],
      );
    const invoke = statements.filter((s) => JSON.stringify(s.Action).includes('lambda:'));
    expect(invoke).toEqual([
      {
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: [
          { 'Fn::GetAtt': [echoId, 'Arn'] },
          { 'Fn::Join': ['', [{ 'Fn::GetAtt': [echoId, 'Arn'] }, ':*']] },
        ],
      },
    ]);
    for (const s of statements.filter((x) => x !== invoke[0]))
      expect(s.Resource, JSON.stringify(s.Action)).toBe('*');
  });

  it('refuses a file with a placeholder nobody substitutes', () => {
    const { stack } = setUp([]);
    expect(
      () =>
        new Workflow(stack, 'Echo', {
          aslFile: FIXTURE,
          functions: {},
          substitutions: { TableName: 't' },
          logRetention: RetentionDays.ONE_WEEK,
        }),
    ).toThrow(/uses \$\{EchoFunctionArn\} with no substitution/);
  });

  it('refuses a function the file never calls (a grant nobody would use)', () => {
    const { stack, functions } = setUp(['EchoFunctionArn', 'OtherFunctionArn']);
    expect(
      () =>
        new Workflow(stack, 'Echo', {
          aslFile: FIXTURE,
          functions,
          substitutions: { TableName: 't' },
          logRetention: RetentionDays.ONE_WEEK,
        }),
    ).toThrow(/does not use \$\{OtherFunctionArn\}/);
  });

  it('refuses a file that is not JSON', () => {
    const broken = join(scratch, 'broken.asl.json');
    writeFileSync(broken, '{"StartAt": ');
    const { stack } = setUp([]);
    expect(
      () =>
        new Workflow(stack, 'Broken', {
          aslFile: broken,
          functions: {},
          logRetention: RetentionDays.ONE_WEEK,
        }),
    ).toThrow(/not valid JSON/);
  });
});
