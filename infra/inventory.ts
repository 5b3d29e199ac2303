/**
 * Which functions and state machines this synth deploys, worked out at synth time from the route
 * table (ROUTES), the state-machine registry (functions/tasks/registry.ts: ASL files, the modules
 * their placeholders name, S3 triggers) and the files present. Both stacks use it: the stateful
 * stack to make the image-writer roles, the application stack to make everything else.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ROUTES } from '#api/routes';
import {
  S3_TRIGGERS,
  SCHEDULES,
  type ScheduleSpec,
  STATE_MACHINES,
  type StateMachineSpec,
  TASK_FUNCTIONS,
  type TaskFunctionSpec,
} from '../functions/tasks/registry.ts';
import type { AuthMode } from './config.ts';
import {
  type Access,
  AGENT_SOCKET_FUNCTIONS,
  apiAccess,
  apiModules,
  type BucketName,
  KEYSTONE_AUTHORIZER,
  SCHEDULE_ACCESS,
  type SocketRole,
  TASK_ACCESS,
  TRIGGER_ACCESS,
  taskAccess,
} from './declarations.ts';
import { repoPath, STATE_MACHINES_DIR } from './paths.ts';

export type FunctionKind = 'api' | 'trigger' | 'schedule' | 'task' | 'authorizer' | 'socket';

export interface TriggerSpec {
  readonly module: string;
  readonly bucket: BucketName;
  readonly events: readonly string[];
  readonly prefixes: readonly string[];
}

export interface FunctionEntry {
  /** API module name (ROUTES fn), module path (tasks, triggers, schedules) or 'keystone-authorizer'. */
  readonly key: string;
  /** CDK construct id, unique across kinds. */
  readonly id: string;
  readonly kind: FunctionKind;
  /** Relative to the repository root, or absolute (test fixtures). */
  readonly entry: string;
  readonly access: Access;
  readonly memorySize?: number;
  readonly timeoutSeconds?: number;
  readonly ephemeralStorageMb?: number;
  /** container: a Lambda container image that also ships qemu-img. */
  readonly packaging: 'zip' | 'container';
  /** API modules: whether any route they serve is authenticated. */
  readonly authenticated: boolean;
  readonly trigger?: TriggerSpec;
  /** Scheduled functions: which rate setting runs them. */
  readonly schedule?: ScheduleSpec;
  /** The agents' WebSocket API functions: which part they play. */
  readonly socket?: SocketRole;
}

export interface WorkflowEntry {
  readonly name: string;
  readonly file: string;
  /** Placeholder (e.g. ImportCopyFunctionArn) -> key of the function in `functions`. */
  readonly functions: Readonly<Record<string, string>>;
}

export interface Inventory {
  readonly functions: readonly FunctionEntry[];
  readonly workflows: readonly WorkflowEntry[];
  /** Optional modules that were looked for and not found. */
  readonly skipped: readonly string[];
}

export interface InventoryOptions {
  readonly authMode: AuthMode;
  /** Overrides for tests (fixtures); the defaults are the real registry and declarations. */
  readonly stateMachinesDirs?: readonly string[];
  readonly stateMachines?: Readonly<Record<string, StateMachineSpec>>;
  readonly taskFunctions?: Readonly<Record<string, TaskFunctionSpec>>;
  readonly taskAccess?: Readonly<Record<string, Access>>;
  readonly triggers?: readonly TriggerSpec[];
  readonly schedules?: readonly ScheduleSpec[];
  readonly scheduleAccess?: Readonly<
    Record<string, Access & { memorySize?: number; timeoutSeconds?: number }>
  >;
  readonly keystoneAuthorizerEntry?: string;
}

const ASL_SUFFIX = '.asl.json';

export function pascal(name: string): string {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((part) => part[0]?.toUpperCase() + part.slice(1))
    .join('');
}

/** The variable functions/platform/config.ts reads a workflow's state machine ARN from. */
export function workflowEnvVar(name: string): string {
  return `HANGAR_${name.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_STATE_MACHINE_ARN`;
}

function moduleName(path: string): string {
  return basename(path).replace(/\.ts$/, '');
}

export function buildInventory(options: InventoryOptions): Inventory {
  const functions: FunctionEntry[] = [];
  const skipped: string[] = [];

  for (const fn of apiModules()) {
    const entry = `functions/api/${fn}.ts`;
    if (!existsSync(repoPath(entry)))
      throw new Error(`ROUTES names module '${fn}' but ${entry} does not exist`);
    const access = apiAccess(fn);
    functions.push({
      key: fn,
      id: `${pascal(fn)}Function`,
      kind: 'api',
      entry,
      access,
      ...(access.memorySize ? { memorySize: access.memorySize } : {}),
      packaging: 'zip',
      authenticated: ROUTES.some((r) => r.fn === fn && r.auth !== false),
    });
  }

  const triggers = options.triggers ?? (S3_TRIGGERS as readonly TriggerSpec[]);
  for (const trigger of triggers) {
    if (!existsSync(repoPath(trigger.module))) {
      skipped.push(trigger.module);
      continue;
    }
    const access = TRIGGER_ACCESS[trigger.module];
    if (!access)
      throw new Error(
        `S3 trigger ${trigger.module} declares no access: add it to TRIGGER_ACCESS in infra/declarations.ts`,
      );
    functions.push({
      key: trigger.module,
      id: `${pascal(moduleName(trigger.module))}TriggerFunction`,
      kind: 'trigger',
      entry: trigger.module,
      access,
      ...(access.memorySize ? { memorySize: access.memorySize } : {}),
      ...(access.timeoutSeconds ? { timeoutSeconds: access.timeoutSeconds } : {}),
      packaging: 'zip',
      authenticated: false,
      trigger,
    });
  }

  // Unlike an S3 trigger, a registered schedule is not optional: a missing module is a mistake.
  const scheduleAccess = options.scheduleAccess ?? SCHEDULE_ACCESS;
  for (const schedule of options.schedules ?? (SCHEDULES as readonly ScheduleSpec[])) {
    if (!existsSync(repoPath(schedule.module)))
      throw new Error(`SCHEDULES names ${schedule.module}, which does not exist`);
    const access = scheduleAccess[schedule.module];
    if (!access)
      throw new Error(
        `scheduled function ${schedule.module} declares no access: add it to SCHEDULE_ACCESS in infra/declarations.ts`,
      );
    functions.push({
      key: schedule.module,
      id: `${pascal(moduleName(schedule.module))}ScheduleFunction`,
      kind: 'schedule',
      entry: schedule.module,
      access,
      ...(access.memorySize ? { memorySize: access.memorySize } : {}),
      ...(access.timeoutSeconds ? { timeoutSeconds: access.timeoutSeconds } : {}),
      packaging: 'zip',
      authenticated: false,
      schedule,
    });
  }

  // Every ASL file in the directory must be registered, and every registered one must exist.
  const dirs = options.stateMachinesDirs ?? [STATE_MACHINES_DIR];
  const machines = options.stateMachines ?? STATE_MACHINES;
  const specs = options.taskFunctions ?? TASK_FUNCTIONS;
  const accessTable = options.taskAccess ?? TASK_ACCESS;
  const paths = dirs.flatMap((dir) =>
    existsSync(dir)
      ? readdirSync(dir)
          .filter((f) => f.endsWith(ASL_SUFFIX))
          .sort()
          .map((f) => join(dir, f))
      : [],
  );
  const workflows: WorkflowEntry[] = [];
  const modules = new Set<string>();
  for (const path of paths) {
    const file = basename(path);
    const found = Object.entries(machines).find(([, spec]) => resolve(repoPath(spec.file)) === resolve(path));
    if (!found)
      throw new Error(
        `${file} is not registered: add it to STATE_MACHINES in functions/tasks/registry.ts with the modules ` +
          'its ...FunctionArn placeholders name.',
      );
    const [name, spec] = found;
    for (const module of Object.values(spec.substitutions)) modules.add(module);
    workflows.push({ name, file: path, functions: { ...spec.substitutions } });
  }
  for (const [name, spec] of Object.entries(machines))
    if (!workflows.some((w) => w.name === name))
      throw new Error(`STATE_MACHINES registers '${name}' but ${spec.file} is not in ${dirs.join(' or ')}`);

  for (const module of [...modules].sort()) {
    if (!existsSync(repoPath(module))) throw new Error(`state-machine task module ${module} does not exist`);
    const spec = specs[module];
    functions.push({
      key: module,
      id: `${pascal(moduleName(module))}TaskFunction`,
      kind: 'task',
      entry: module,
      access: taskAccess(module, accessTable),
      ...(spec ? { memorySize: spec.memoryMb, timeoutSeconds: spec.timeoutSeconds } : {}),
      ...(spec?.ephemeralStorageMb ? { ephemeralStorageMb: spec.ephemeralStorageMb } : {}),
      packaging: spec?.packaging ?? 'zip',
      authenticated: false,
    });
  }

  if (options.authMode === 'keystone') {
    const entry = options.keystoneAuthorizerEntry ?? KEYSTONE_AUTHORIZER.entry;
    if (!existsSync(repoPath(entry)))
      throw new Error(
        `authMode=keystone needs the Lambda authorizer ${entry}, which is not available yet; ` +
          'deploy with authMode=jwt or authMode=tokens until it exists.',
      );
    functions.push({
      key: 'keystone-authorizer',
      id: 'KeystoneAuthorizerFunction',
      kind: 'authorizer',
      entry,
      access: KEYSTONE_AUTHORIZER.access,
      timeoutSeconds: KEYSTONE_AUTHORIZER.timeoutSeconds,
      packaging: 'zip',
      authenticated: false,
    });
  }

  // The agents' WebSocket API is part of every deployment: its modules must exist.
  for (const [role, spec] of Object.entries(AGENT_SOCKET_FUNCTIONS) as [
    SocketRole,
    (typeof AGENT_SOCKET_FUNCTIONS)[SocketRole],
  ][]) {
    if (!existsSync(repoPath(spec.entry)))
      throw new Error(`AGENT_SOCKET_FUNCTIONS names ${spec.entry} (${role}), which does not exist`);
    functions.push({
      key: spec.entry,
      id: spec.id,
      kind: 'socket',
      entry: spec.entry,
      access: spec.access,
      ...(spec.timeoutSeconds ? { timeoutSeconds: spec.timeoutSeconds } : {}),
      packaging: 'zip',
      authenticated: false,
      socket: role,
    });
  }

  const names = new Set(workflows.map((w) => w.name));
  for (const fn of functions)
    for (const wf of fn.access.startsWorkflows ?? []) {
      if (!names.has(wf))
        throw new Error(`${fn.key} starts workflow '${wf}', which STATE_MACHINES does not register`);
      if (fn.kind === 'task')
        throw new Error(`task ${fn.key} cannot start a workflow (it would depend on itself)`);
    }
  for (const fn of functions)
    for (const wf of fn.access.answersWorkflows ?? []) {
      if (!names.has(wf))
        throw new Error(`${fn.key} answers workflow '${wf}', which STATE_MACHINES does not register`);
      if (fn.kind === 'task')
        throw new Error(`task ${fn.key} cannot answer a workflow's tokens (it would depend on itself)`);
    }

  return { functions, workflows, skipped };
}
