/**
 * The ASL files: valid Amazon States Language (asl-validator, with the placeholders substituted as
 * the CDK app does), JSONPath only, every placeholder bound to an existing handler module, and the
 * import machine's paths (success, a failing step, a failure after the copy) run in
 * aws-local-stepfunctions with stub handlers.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { StateMachine } from 'aws-local-stepfunctions';
import { describe, expect, it } from 'vitest';
import { STATE_MACHINES, TASK_FUNCTIONS } from '../../functions/tasks/registry.ts';
import { loadDefinition } from '../../local/step-functions.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);
const aslValidator = require('asl-validator') as (
  definition: unknown,
  options?: { checkPaths?: boolean; checkArn?: boolean },
) => { isValid: boolean; errorsText: (separator?: string) => string };

type RunOptions = NonNullable<Parameters<StateMachine['run']>[1]>;
type LocalHandlers = NonNullable<NonNullable<RunOptions['overrides']>['taskResourceLocalHandlers']>;

const files = readdirSync(`${ROOT}state-machines`).filter((f) => f.endsWith('.asl.json'));

function read(file: string): string {
  return readFileSync(`${ROOT}state-machines/${file}`, 'utf8');
}

/** What CDK's definitionSubstitutions make of the file: every `${X}` becomes a Lambda ARN. */
function substituted(text: string): unknown {
  return JSON.parse(
    text.replace(
      /\$\{(\w+)\}/g,
      (_, name: string) => `arn:aws:lambda:eu-west-1:123456789012:function:hangar-${name}`,
    ),
  );
}

describe('state machine definitions', () => {
  it('are all registered, and every registered one exists', () => {
    // Prepare
    const registered = Object.values(STATE_MACHINES).map((m) => m.file);
    // Assess
    expect(files.map((f) => `state-machines/${f}`).sort()).toEqual([...registered].sort());
  });

  it.each(files)('%s is valid ASL once substituted', (file) => {
    const result = aslValidator(substituted(read(file)));
    expect(result.isValid, result.errorsText('\n')).toBe(true);
  });

  it.each(files)('%s uses JSONPath only (the local runner ignores JSONata)', (file) => {
    const text = read(file);
    const definition = JSON.parse(text) as { QueryLanguage?: string };
    expect(definition.QueryLanguage ?? 'JSONPath').toBe('JSONPath');
    expect(text).not.toMatch(/"QueryLanguage":\s*"JSONata"|"Arguments"|"Output"|\{%/);
  });

  it.each(Object.entries(STATE_MACHINES))(
    '%s: placeholders and handler modules match the registry',
    async (_name, spec) => {
      const placeholders = new Set(
        [...readFileSync(`${ROOT}${spec.file}`, 'utf8').matchAll(/\$\{(\w+)\}/g)].map((m) => m[1]),
      );
      expect([...placeholders].sort()).toEqual(Object.keys(spec.substitutions).sort());
      for (const module of Object.values(spec.substitutions)) {
        expect(existsSync(`${ROOT}${module}`), module).toBe(true);
        expect(TASK_FUNCTIONS[module], `${module} in TASK_FUNCTIONS`).toBeDefined();
        const loaded = (await import(`${ROOT}${module}`)) as { handler?: unknown };
        expect(typeof loaded.handler, module).toBe('function');
      }
    },
  );

  it.each(files)('%s gives every Task state a timeout, and every step that can fail a Catch', (file) => {
    const definition = JSON.parse(read(file)) as {
      States: Record<string, { Type: string; TimeoutSeconds?: number; Catch?: unknown[]; Next?: string }>;
    };
    for (const [name, state] of Object.entries(definition.States)) {
      if (state.Type !== 'Task') continue;
      expect(state.TimeoutSeconds, name).toBeGreaterThan(0);
      // The failure handlers themselves end in a Fail state instead.
      if (!/^Fail /.test(name)) expect(state.Catch, name).toBeDefined();
    }
  });
});

describe('the import state machine, run locally with stub handlers', () => {
  type Calls = Array<[string, Record<string, unknown>]>;
  const input = { task_id: 't', image_id: 'i', source: { kind: 's3', bucket: 'b', key: 'k', delete: true } };

  async function runImport(failAt?: string): Promise<{ calls: Calls; outcome: unknown }> {
    const { definition, taskModules } = loadDefinition('import');
    const calls: Calls = [];
    const handlers: LocalHandlers = {};
    for (const state of Object.keys(taskModules)) {
      handlers[state] = (async (stateInput: unknown) => {
        calls.push([state, stateInput as Record<string, unknown>]);
        if (state === failAt) {
          const error = new Error('qcow2 image has a backing file');
          error.name = 'BadRequestError';
          throw error;
        }
        return state === 'Copy And Inspect' ? { blob_key: 'images/i/x', size: 1 } : {};
      }) as LocalHandlers[string];
    }
    const machine = new StateMachine(definition as never);
    const execution = machine.run(input, { overrides: { taskResourceLocalHandlers: handlers } });
    const outcome = await execution.result.then(
      (result) => ({ ok: result }),
      (error: Error) => ({ failed: error.message }),
    );
    return { calls, outcome };
  }

  it('runs begin, copy and activate, handing the copy result on', async () => {
    const { calls, outcome } = await runImport();
    expect(calls.map(([state]) => state)).toEqual(['Begin Import', 'Copy And Inspect', 'Activate Image']);
    expect(calls[2]?.[1]).toEqual({ ...input, data: { blob_key: 'images/i/x', size: 1 } });
    expect(outcome).toHaveProperty('ok');
  });

  it('sends a failing copy to Fail Import with the error, and fails the execution', async () => {
    const { calls, outcome } = await runImport('Copy And Inspect');
    expect(calls.map(([state]) => state)).toEqual(['Begin Import', 'Copy And Inspect', 'Fail Import']);
    expect(calls[2]?.[1]).toEqual({
      ...input,
      error: { Error: 'BadRequestError', Cause: 'qcow2 image has a backing file' },
    });
    expect(outcome).toHaveProperty('failed');
  });

  it('hands Fail Import the copy result when activation fails, so it can remove the blob', async () => {
    const { calls } = await runImport('Activate Image');
    expect(calls.map(([state]) => state)).toEqual([
      'Begin Import',
      'Copy And Inspect',
      'Activate Image',
      'Fail Import',
    ]);
    expect(calls[3]?.[1]).toMatchObject({
      data: { blob_key: 'images/i/x' },
      error: { Error: 'BadRequestError' },
    });
  });
});

describe('the publish state machine, run locally with stub handlers', () => {
  type Calls = Array<[string, Record<string, unknown>]>;
  const base = {
    task_id: 't',
    image_id: 'i',
    reference: 'fedora:40',
    namespace: 'p',
    expect: 'old',
    principal: { project: 'p', user: 'u', roles: ['member'] },
  };

  async function runPublish(
    boot: Record<string, string> | null,
    failAt?: string,
  ): Promise<{ calls: Calls; outcome: unknown }> {
    const { definition, taskModules } = loadDefinition('publish');
    const calls: Calls = [];
    const handlers: LocalHandlers = {};
    for (const state of Object.keys(taskModules)) {
      handlers[state] = (async (stateInput: unknown) => {
        calls.push([state, stateInput as Record<string, unknown>]);
        if (state === failAt) {
          const error = new Error('The candidate did not boot: no marker');
          error.name = 'BootFailed';
          throw error;
        }
        return state === 'Boot Candidate' ? { instance_id: 't' } : {};
      }) as LocalHandlers[string];
    }
    const machine = new StateMachine(definition as never);
    const execution = machine.run(
      { ...base, boot },
      { overrides: { taskResourceLocalHandlers: handlers }, context: { Task: { Token: 'tok' } } },
    );
    const outcome = await execution.result.then(
      (result) => ({ ok: result }),
      (error: Error) => ({ failed: error.message }),
    );
    return { calls, outcome };
  }

  it('skips the boot gate when none is asked for', async () => {
    const { calls, outcome } = await runPublish(null);
    expect(calls.map(([state]) => state)).toEqual(['Begin Publish', 'Verify Candidate', 'Move Reference']);
    expect(outcome).toHaveProperty('ok');
  });

  it('hands the boot gate its task token in the payload, then removes the gate instance and moves', async () => {
    const { calls } = await runPublish({ marker: 'READY' });
    expect(calls.map(([state]) => state)).toEqual([
      'Begin Publish',
      'Verify Candidate',
      'Boot Candidate',
      'Remove Gate Instance',
      'Move Reference',
    ]);
    expect(calls[2]?.[1]).toMatchObject({
      Payload: { ...base, boot: { marker: 'READY' }, task_token: 'tok' },
    });
  });

  it('sends a failed gate to Fail Publish with the reason, and never moves the reference', async () => {
    const { calls, outcome } = await runPublish({ marker: 'READY' }, 'Boot Candidate');
    expect(calls.map(([state]) => state)).toEqual([
      'Begin Publish',
      'Verify Candidate',
      'Boot Candidate',
      'Fail Publish',
    ]);
    expect(calls[3]?.[1]).toMatchObject({
      error: { Error: 'BootFailed', Cause: 'The candidate did not boot: no marker' },
    });
    expect(outcome).toHaveProperty('failed');
  });
});

describe('the build state machine, run locally with stub handlers', () => {
  type Calls = Array<[string, Record<string, unknown>]>;
  const input = { build_id: 'b', poll_seconds: 1 };
  const publish = {
    task_id: 'p',
    image_id: 'i',
    reference: 'app:1',
    namespace: 'proj',
    expect: 'old',
    principal: { project: 'proj', user: 'u', roles: ['member'] },
    build_id: 'b',
  };

  /** Runs the machine; the checks answer not-done `pending` times first; `failAt` throws. */
  async function runBuild(
    boot: Record<string, string> | null,
    options: { failAt?: string; pending?: number } = {},
  ): Promise<{ calls: Calls; outcome: unknown }> {
    const { definition, taskModules } = loadDefinition('build');
    const calls: Calls = [];
    const handlers: LocalHandlers = {};
    let pending = options.pending ?? 0;
    for (const state of Object.keys(taskModules)) {
      handlers[state] = (async (stateInput: unknown) => {
        calls.push([state, stateInput as Record<string, unknown>]);
        if (state === options.failAt) {
          const error = new Error('The recipe did not power the guest off');
          error.name = 'BuildFailedError';
          throw error;
        }
        if (state === 'Check Recipe' || state === 'Check Snapshot') {
          pending -= 1;
          return { done: pending < 0 };
        }
        if (state === 'Start Testing') return { ...publish, boot };
        return state === 'Snapshot Build' ? { image_id: 'i' } : {};
      }) as LocalHandlers[string];
    }
    const machine = new StateMachine(definition as never);
    const execution = machine.run(input, {
      overrides: {
        taskResourceLocalHandlers: handlers,
        waitTimeOverrides: { 'Wait For Recipe': 1, 'Wait For Snapshot': 1 },
      },
      context: { Task: { Token: 'tok' } },
    });
    const outcome = await execution.result.then(
      (result) => ({ ok: result }),
      (error: Error) => ({ failed: error.message }),
    );
    return { calls, outcome };
  }

  it('waits for the recipe, snapshots, removes the instance, verifies and publishes (no gate)', async () => {
    const { calls, outcome } = await runBuild(null, { pending: 2 });
    expect(calls.map(([state]) => state)).toEqual([
      'Begin Build',
      'Check Recipe',
      'Check Recipe',
      'Check Recipe',
      'Snapshot Build',
      'Check Snapshot',
      'Remove Build Instance',
      'Start Testing',
      'Verify Candidate',
      'Publish Build',
    ]);
    // The publish steps get the publish input, as the publish machine hands it.
    expect(calls[8]?.[1]).toEqual({ ...publish, boot: null });
    expect(outcome).toHaveProperty('ok');
  });

  it('boots the candidate behind the gate with its task token, then removes the gate instance', async () => {
    const { calls } = await runBuild({ marker: 'READY' });
    expect(calls.map(([state]) => state).slice(-4)).toEqual([
      'Verify Candidate',
      'Boot Candidate',
      'Remove Gate Instance',
      'Publish Build',
    ]);
    expect(calls.at(-3)?.[1]).toMatchObject({
      Payload: { ...publish, boot: { marker: 'READY' }, task_token: 'tok' },
    });
    expect(calls.at(-2)?.[1]).toEqual({ ...publish, boot: { marker: 'READY' } });
  });

  it.each(['Check Recipe', 'Verify Candidate', 'Publish Build'])(
    'sends a failure in %s to Fail Build with the error, and fails the execution',
    async (failAt) => {
      const { calls, outcome } = await runBuild(null, { failAt });
      expect(calls.map(([state]) => state).slice(-2)).toEqual([failAt, 'Fail Build']);
      expect(calls.at(-1)?.[1]).toMatchObject({
        build_id: 'b',
        error: { Error: 'BuildFailedError', Cause: 'The recipe did not power the guest off' },
      });
      expect(outcome).toHaveProperty('failed');
    },
  );
});
