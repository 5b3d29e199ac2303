/**
 * Reading tasks. Glance's default policy keeps /v2/tasks to admins (tasks_api_access, transcripts
 * #237-#239); an image's own tasks (GET /v2/images/{id}/tasks) are for whoever may read the image.
 */

import { readable } from '../images/access.ts';
import type { ImageRepository } from '../images/ports.ts';
import { BadRequestError, ForbiddenError, NotFoundError } from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import type { TaskRepository } from './ports.ts';
import { TASK_STATUSES, TASK_TYPES, type TaskRecord } from './task.ts';

/** Glance's sortable task attributes; glanceclient's task-list sorts by status by default. */
export const TASK_SORT_KEYS = ['created_at', 'updated_at', 'id', 'type', 'status'] as const;
export type TaskSortKey = (typeof TASK_SORT_KEYS)[number];

export interface TaskListQuery {
  limit: number;
  sortKey: TaskSortKey;
  descending: boolean;
  marker?: string;
  status?: string;
  type?: string;
}

/** Glance's limit_param_default and api_limit_max. */
const DEFAULT_LIMIT = 25;
const MAX_LIMIT = 1000;

export function assertTasksApiAccess(principal: Principal): void {
  if (!principal.isAdmin)
    throw new ForbiddenError('You are not authorized to complete tasks_api_access action.');
}

/** The query of GET /v2/tasks: limit, marker, sort_key, sort_dir, status and type filters. */
export function parseTaskListQuery(pairs: ReadonlyArray<readonly [string, string]>): TaskListQuery {
  const get = (key: string) => pairs.filter(([k]) => k === key).at(-1)?.[1];
  const query: TaskListQuery = { limit: DEFAULT_LIMIT, sortKey: 'created_at', descending: true };
  const limit = get('limit');
  if (limit !== undefined) {
    if (!/^-?\d+$/.test(limit)) throw new BadRequestError('limit param must be an integer');
    const n = Number(limit);
    if (n < 0) throw new BadRequestError('limit param must be positive');
    query.limit = Math.min(n, MAX_LIMIT);
  }
  const sortKey = get('sort_key');
  if (sortKey !== undefined) {
    if (!(TASK_SORT_KEYS as readonly string[]).includes(sortKey))
      throw new BadRequestError(
        `Invalid sort key: ${sortKey}. It must be one of: ${TASK_SORT_KEYS.join(', ')}.`,
      );
    query.sortKey = sortKey as TaskSortKey;
  }
  const sortDir = get('sort_dir');
  if (sortDir !== undefined) {
    if (sortDir !== 'asc' && sortDir !== 'desc')
      throw new BadRequestError(`Invalid sort direction: ${sortDir}`);
    query.descending = sortDir === 'desc';
  }
  const marker = get('marker');
  if (marker !== undefined) query.marker = marker;
  const status = get('status');
  if (status !== undefined) {
    if (!(TASK_STATUSES as readonly string[]).includes(status))
      throw new BadRequestError(`Invalid status value: ${status}`);
    query.status = status;
  }
  const type = get('type');
  if (type !== undefined) {
    if (!(TASK_TYPES as readonly string[]).includes(type))
      throw new BadRequestError(`Invalid type value: ${type}`);
    query.type = type;
  }
  return query;
}

export class TasksService {
  constructor(
    private readonly tasks: TaskRepository,
    private readonly images: ImageRepository,
  ) {}

  async show(principal: Principal, id: string): Promise<TaskRecord> {
    assertTasksApiAccess(principal);
    const task = await this.tasks.get(id);
    if (!task) throw new NotFoundError(`Could not find task ${id}`);
    return task;
  }

  async list(principal: Principal, query: TaskListQuery): Promise<TaskRecord[]> {
    assertTasksApiAccess(principal);
    let marker: TaskRecord | undefined;
    if (query.marker !== undefined) {
      marker = (await this.tasks.get(query.marker)) ?? undefined;
      if (!marker) throw new BadRequestError(`Task with identifier ${query.marker} not found`);
    }
    if (query.limit === 0) return [];
    const filter = (task: TaskRecord) =>
      (query.status === undefined || task.status === query.status) &&
      (query.type === undefined || task.type === query.type);
    if (query.sortKey === 'created_at')
      return this.tasks.list({
        limit: query.limit,
        descending: query.descending,
        ...(marker ? { marker } : {}),
        filter,
      });
    // Other orders are sorted here; tasks expire two days after finishing, so the set stays small.
    const all = await this.tasks.list({
      limit: Number.MAX_SAFE_INTEGER,
      descending: query.descending,
      filter,
    });
    const direction = query.descending ? -1 : 1;
    const key = query.sortKey;
    const compare = (a: TaskRecord, b: TaskRecord) =>
      direction *
      (compareText(a[key], b[key]) || compareText(a.created_at, b.created_at) || compareText(a.id, b.id));
    all.sort(compare);
    const start = marker ? all.findIndex((task) => compare(task, marker) > 0) : 0;
    return start < 0 ? [] : all.slice(start, start + query.limit);
  }

  /** The image's tasks, newest first; 404 unless the caller may read the image. */
  async listForImage(principal: Principal, imageId: string): Promise<TaskRecord[]> {
    readable(await this.images.get(imageId), imageId, principal);
    return this.tasks.listForImage(imageId);
  }
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
