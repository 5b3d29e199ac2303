/**
 * Tasks: the record of one asynchronous job (an image import or export), as Glance's tasks API
 * shows it. Statuses go pending -> processing -> success | failure; a finished task expires
 * `task_time_to_live` hours later (Glance: 48), which the table enforces with a TTL attribute.
 */
import { randomUUID } from 'node:crypto';
import { ConflictError } from '../kernel/errors.ts';
import { isoSeconds } from '../kernel/time.ts';

/**
 * import: the legacy tasks-API import; api_image_import: interoperable import; export and
 * publish (POST /v1/references/{ref}/publish): Hangar's.
 */
export const TASK_TYPES = ['import', 'api_image_import', 'export', 'publish'] as const;
export type TaskType = (typeof TASK_TYPES)[number];

export const TASK_STATUSES = ['pending', 'processing', 'success', 'failure'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export interface TaskRecord {
  id: string;
  type: TaskType;
  status: TaskStatus;
  /** Project the task belongs to (the image's owner for imports). */
  owner: string;
  user_id: string;
  request_id: string;
  image_id: string | null;
  input: Record<string, unknown>;
  result: Record<string, unknown> | null;
  message: string;
  /** Full ISO 8601 with milliseconds; views round as Glance does. */
  created_at: string;
  updated_at: string;
  expires_at: string | null;
  /** Optimistic-concurrency counter. Never shown. */
  version: number;
}

const VALID_TASK_TRANSITIONS: Readonly<Record<TaskStatus, readonly TaskStatus[]>> = {
  pending: ['processing', 'failure'],
  processing: ['success', 'failure'],
  success: [],
  failure: [],
};

export function isFinished(task: Pick<TaskRecord, 'status'>): boolean {
  return task.status === 'success' || task.status === 'failure';
}

export interface NewTask {
  id?: string;
  type: TaskType;
  owner: string;
  user_id: string;
  request_id: string;
  image_id: string | null;
  input: Record<string, unknown>;
}

export function newTask(spec: NewTask, now: Date): TaskRecord {
  const at = now.toISOString();
  return {
    id: spec.id ?? randomUUID(),
    type: spec.type,
    status: 'pending',
    owner: spec.owner,
    user_id: spec.user_id,
    request_id: spec.request_id,
    image_id: spec.image_id,
    input: spec.input,
    result: null,
    message: '',
    created_at: at,
    updated_at: at,
    expires_at: null,
    version: 1,
  };
}

/** The next record for a status change; finishing sets expires_at `ttlHours` ahead. Caller bumps the version. */
export function transitionTask(
  task: TaskRecord,
  to: TaskStatus,
  now: Date,
  ttlHours: number,
  fields: { message?: string; result?: Record<string, unknown> | null } = {},
): TaskRecord {
  if (!VALID_TASK_TRANSITIONS[task.status].includes(to))
    throw new ConflictError(`Task status transition from ${task.status} to ${to} is not allowed`);
  const next: TaskRecord = { ...task, status: to, updated_at: now.toISOString() };
  if (fields.message !== undefined) next.message = fields.message;
  if (fields.result !== undefined) next.result = fields.result;
  if (isFinished(next)) next.expires_at = new Date(now.getTime() + ttlHours * 3600_000).toISOString();
  return next;
}

/** Epoch seconds for the table's TTL attribute, or undefined while the task runs. */
export function expirationEpoch(task: Pick<TaskRecord, 'expires_at'>): number | undefined {
  return task.expires_at ? Math.floor(Date.parse(task.expires_at) / 1000) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Views, shaped like Glance 25's (transcripts #218, #238, #241-#243).

export const TASK_SCHEMA_PATH = '/v2/schemas/task';
export const TASKS_SCHEMA_PATH = '/v2/schemas/tasks';

export function taskPath(id: string): string {
  return `/v2/tasks/${id}`;
}

function seconds(iso: string): string {
  return isoSeconds(new Date(iso));
}

/** Glance's per-image view prints microseconds without a zone. */
function micros(iso: string): string {
  return `${iso.slice(0, 19)}.${iso.slice(20, 23)}000`;
}

/** GET /v2/tasks/{id} and POST /v2/tasks. expires_at appears once the task has finished. */
export function renderTask(task: TaskRecord): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: task.id,
    input: task.input,
    type: task.type,
    status: task.status,
    owner: task.owner,
    message: task.message,
    result: task.result,
    created_at: seconds(task.created_at),
    updated_at: seconds(task.updated_at),
    self: taskPath(task.id),
    schema: TASK_SCHEMA_PATH,
    request_id: task.request_id,
    user_id: task.user_id,
  };
  if (task.expires_at) view.expires_at = seconds(task.expires_at);
  if (task.image_id) view.image_id = task.image_id;
  return view;
}

/** An entry of GET /v2/tasks: no input, result or message. */
export function renderTaskListItem(task: TaskRecord): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: task.id,
    type: task.type,
    status: task.status,
    owner: task.owner,
    created_at: seconds(task.created_at),
    updated_at: seconds(task.updated_at),
    self: taskPath(task.id),
    schema: TASK_SCHEMA_PATH,
  };
  if (task.expires_at) view.expires_at = seconds(task.expires_at);
  return view;
}

/** An entry of GET /v2/images/{id}/tasks (Glance's db-style view). */
export function renderImageTask(task: TaskRecord): Record<string, unknown> {
  return {
    id: task.id,
    type: task.type,
    status: task.status,
    owner: task.owner,
    expires_at: task.expires_at ? micros(task.expires_at) : null,
    created_at: micros(task.created_at),
    updated_at: micros(task.updated_at),
    deleted_at: null,
    deleted: false,
    image_id: task.image_id,
    request_id: task.request_id,
    user_id: task.user_id,
    input: task.input,
    result: task.result,
    message: task.message,
  };
}
