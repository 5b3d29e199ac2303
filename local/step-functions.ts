/**
 * Step Functions on this machine: the ASL files in state-machines/ run in aws-local-stepfunctions,
 * each Task state bound to the handler module that serves it on Lambda (functions/tasks/registry.ts),
 * called in-process with a JSON copy of its input as Lambda would receive it.
 *
 * Like StartExecution, start() is idempotent per execution name, and returns once the execution
 * has begun; idle() waits for every running execution (tests, shutdown).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { StateMachine } from 'aws-local-stepfunctions';
import type { WorkflowName, WorkflowStarter } from '#core/ports';
import { logger } from '#shared/logger';
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

/** Placeholder ARNs for the local definition: valid ARNs, never called (every Task is bound locally). */
function localArn(placeholder: string): string {
  return `arn:aws:lambda:us-east-1:000000000000:function:hangar-local-${placeholder}`;
}

/** The definition with its `${...}` placeholders substituted, and each Task state's placeholder. */
export function loadDefinition(workflow: WorkflowName): {
  definition: Record<string, unknown>;
  taskModules: Record<string, string>;
} {
  const spec = STATE_MACHINES[workflow];
  const text = readFileSync(fileURLToPath(new URL(spec.file, ROOT)), 'utf8');
  const substitutions: Record<string, string> = spec.substitutions;
  const taskModules: Record<string, string> = {};
  const definition = JSON.parse(text) as { States: Record<string, { Type: string; Resource?: string }> };
  for (const [name, state] of Object.entries(definition.States)) {
    if (state.Type !== 'Task') continue;
    const placeholder = /^\$\{(\w+)\}$/.exec(state.Resource ?? '')?.[1];
    const module = placeholder ? substitutions[placeholder] : undefined;
    if (!placeholder || !module) throw new Error(`${spec.file}: state "${name}" has no registered handler`);
    taskModules[name] = module;
    state.Resource = localArn(placeholder);
  }
  return { definition, taskModules };
}

async function loadHandler(module: string): Promise<TaskHandler> {
  const loaded = (await import(new URL(module, ROOT).href)) as { handler?: unknown };
  if (typeof loaded.handler !== 'function') throw new Error(`${module} exports no handler`);
  return loaded.handler as TaskHandler;
}

export class LocalStepFunctions implements WorkflowStarter {
  private readonly machines = new Map<WorkflowName, Promise<LoadedMachine>>();
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
    await this.idle();
  }

  private load(workflow: WorkflowName): Promise<LoadedMachine> {
    let loaded = this.machines.get(workflow);
    if (!loaded) {
      loaded = (async () => {
        const { definition, taskModules } = loadDefinition(workflow);
        const handlers: LoadedMachine['handlers'] = {};
        for (const [state, module] of Object.entries(taskModules)) {
          const handler = await loadHandler(module);
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
