/**
 * Step Functions on this machine: the ASL files in state-machines/ run in aws-local-stepfunctions,
 * each Task state bound to the handler module that serves it on Lambda (functions/tasks/registry.ts),
 * called in-process with a JSON copy of its input as Lambda would receive it.
 *
 * Like StartExecution, start() is idempotent per execution name, and returns once the execution
 * has begun; idle() waits for every running execution (tests, shutdown).
 *
 * `.waitForTaskToken` states (aws-local-stepfunctions has no task tokens): each execution gets a
 * token, given to it as `$$.Task.Token` through the Context Object; the state's handler is called
 * with its Payload and then waits until succeed() or fail() answers the token, or until the
 * state's TimeoutSeconds pass (States.Timeout, as on AWS). One token per execution suffices
 * because a machine waits in one state at a time and its waiting states are not retried.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { StateMachine } from 'aws-local-stepfunctions';
import type { TaskTokenNotifier, WorkflowName, WorkflowStarter } from '#core/tasks/ports';
import { logger } from '#platform/logger';
import { STATE_MACHINES } from '../functions/tasks/registry.ts';

// aws-local-stepfunctions 3 uses Promise.withResolvers (Node 22); Node 20 lacks it.
const promiseStatics = Promise as unknown as { withResolvers?: () => unknown };
promiseStatics.withResolvers ??= () => {
  let resolve!: (value: unknown) => void;
  let reject!: (reason?: unknown) => void;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

const ROOT = new URL('../', import.meta.url);

type TaskHandler = (input: unknown) => Promise<unknown>;

type RunOptions = NonNullable<Parameters<StateMachine['run']>[1]>;
type LocalHandlers = NonNullable<NonNullable<RunOptions['overrides']>['taskResourceLocalHandlers']>;
type JsonValue = Parameters<LocalHandlers[string]>[0];

interface LoadedMachine {
  machine: StateMachine;
  handlers: LocalHandlers;
}

const WAIT_FOR_TOKEN = 'arn:aws:states:::lambda:invoke.waitForTaskToken';

interface TaskModule {
  module: string;
  /** For waitForTaskToken states: how long the state may wait (TimeoutSeconds), in ms. */
  waitMs?: number;
}

/** An error as a Task state's Catch sees it: `name` is matched against ErrorEquals. */
function stateError(name: string, cause: string): Error {
  const error = new Error(cause);
  error.name = name;
  return error;
}

/** Placeholder ARNs for the local definition: valid ARNs, never called (every Task is bound locally). */
function localArn(placeholder: string): string {
  return `arn:aws:lambda:us-east-1:000000000000:function:hangar-local-${placeholder}`;
}

/** The definition with its `${...}` placeholders substituted, and each Task state's placeholder. */
export function loadDefinition(workflow: WorkflowName): {
  definition: Record<string, unknown>;
  taskModules: Record<string, TaskModule>;
} {
  const spec = STATE_MACHINES[workflow];
  const text = readFileSync(fileURLToPath(new URL(spec.file, ROOT)), 'utf8');
  const substitutions: Record<string, string> = spec.substitutions;
  const taskModules: Record<string, TaskModule> = {};
  const definition = JSON.parse(text) as {
    States: Record<
      string,
      { Type: string; Resource?: string; TimeoutSeconds?: number; Parameters?: { FunctionName?: string } }
    >;
  };
  for (const [name, state] of Object.entries(definition.States)) {
    if (state.Type !== 'Task') continue;
    const waits = state.Resource === WAIT_FOR_TOKEN;
    const target = waits ? state.Parameters?.FunctionName : state.Resource;
    const placeholder = /^\$\{(\w+)\}$/.exec(target ?? '')?.[1];
    const module = placeholder ? substitutions[placeholder] : undefined;
    if (!placeholder || !module) throw new Error(`${spec.file}: state "${name}" has no registered handler`);
    if (waits && state.Parameters) {
      taskModules[name] = { module, waitMs: (state.TimeoutSeconds ?? 99_999_999) * 1000 };
      state.Parameters.FunctionName = localArn(placeholder);
    } else {
      taskModules[name] = { module };
      state.Resource = localArn(placeholder);
    }
  }
  return { definition, taskModules };
}

async function loadHandler(module: string): Promise<TaskHandler> {
  const loaded = (await import(new URL(module, ROOT).href)) as { handler?: unknown };
  if (typeof loaded.handler !== 'function') throw new Error(`${module} exports no handler`);
  return loaded.handler as TaskHandler;
}

interface TokenWaiter {
  resolve: (output: Record<string, unknown>) => void;
  reject: (error: Error) => void;
}

export class LocalStepFunctions implements WorkflowStarter, TaskTokenNotifier {
  private readonly machines = new Map<WorkflowName, Promise<LoadedMachine>>();
  private readonly waiters = new Map<string, TokenWaiter>();
  private readonly started = new Set<string>();
  private readonly running = new Map<string, { done: Promise<void>; abort: () => void }>();
  private stopped = false;

  async start(workflow: WorkflowName, executionName: string, input: Record<string, unknown>): Promise<void> {
    if (this.stopped) throw new Error('the local Step Functions runner is stopped');
    const id = `${workflow}:${executionName}`;
    if (this.started.has(id)) return;
    this.started.add(id);
    const { machine, handlers } = await this.load(workflow);
    const execution = machine.run(JSON.parse(JSON.stringify(input)), {
      overrides: { taskResourceLocalHandlers: handlers },
      context: {
        Execution: { Id: `local:${id}`, Name: executionName, StartTime: new Date().toISOString() },
        Task: { Token: `local:${id}:${randomUUID()}` },
      },
      noThrowOnAbort: true,
    });
    const done = execution.result.then(
      (output) => logger.info('execution succeeded', { workflow, executionName, output }),
      (error: unknown) => logger.info('execution failed', { workflow, executionName, error }),
    );
    const tracked = { done, abort: execution.abort };
    this.running.set(id, tracked);
    void done.finally(() => this.running.delete(id));
  }

  async succeed(token: string, output: Record<string, unknown>): Promise<void> {
    const waiter = this.waiters.get(token);
    if (!waiter) return logger.warn('task token no longer awaited', { kind: 'success' });
    waiter.resolve(JSON.parse(JSON.stringify(output)) as Record<string, unknown>);
  }

  async fail(token: string, error: string, cause: string): Promise<void> {
    const waiter = this.waiters.get(token);
    if (!waiter) return logger.warn('task token no longer awaited', { kind: 'failure' });
    waiter.reject(stateError(error, cause));
  }

  /** Runs a waitForTaskToken state: the handler gets the Payload, the state the token's answer. */
  private async waitForToken(
    handler: TaskHandler,
    parameters: { Payload?: unknown },
    waitMs: number,
  ): Promise<Record<string, unknown>> {
    const payload = JSON.parse(JSON.stringify(parameters.Payload ?? {})) as { task_token?: unknown };
    const token = payload.task_token;
    if (typeof token !== 'string') throw stateError('States.Runtime', 'the Payload carries no task_token');
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<Record<string, unknown>>((resolve, reject) => {
      this.waiters.set(token, { resolve, reject });
      timer = setTimeout(
        () => reject(stateError('States.Timeout', 'the task token was not answered in time')),
        waitMs,
      );
    });
    try {
      await handler(payload);
      return await answered;
    } finally {
      clearTimeout(timer);
      this.waiters.delete(token);
    }
  }

  /** Resolves when no execution is running (including ones started meanwhile). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running.values()].map((r) => r.done));
  }

  pending(): boolean {
    return this.running.size > 0;
  }

  /** Lets running executions finish for up to `graceMs`, then aborts what is left. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopped = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([this.idle(), timeout]);
    clearTimeout(timer);
    for (const execution of this.running.values()) execution.abort();
    for (const waiter of this.waiters.values())
      waiter.reject(stateError('States.Aborted', 'the runner stopped'));
    await this.idle();
  }

  private load(workflow: WorkflowName): Promise<LoadedMachine> {
    let loaded = this.machines.get(workflow);
    if (!loaded) {
      loaded = (async () => {
        const { definition, taskModules } = loadDefinition(workflow);
        const handlers: LoadedMachine['handlers'] = {};
        for (const [state, { module, waitMs }] of Object.entries(taskModules)) {
          const handler = await loadHandler(module);
          if (waitMs !== undefined) {
            handlers[state] = async (input) =>
              (await this.waitForToken(handler, input as { Payload?: unknown }, waitMs)) as JsonValue;
            continue;
          }
          // Lambda receives and returns JSON: copying both ways keeps local runs honest about that.
          handlers[state] = async (input) =>
            JSON.parse(
              JSON.stringify((await handler(JSON.parse(JSON.stringify(input)))) ?? null),
            ) as JsonValue;
        }
        const machine = new StateMachine(definition as never, {});
        return { machine, handlers };
      })();
      loaded.catch(() => this.machines.delete(workflow));
      this.machines.set(workflow, loaded);
    }
    return loaded;
  }
}
