/**
 * Moving a stored task on through its repository. Apart from task.ts (the record's pure rules) so
 * that the repository port, which takes task records, and the rules do not import each other.
 */
import { NotFoundError } from '../kernel/errors.ts';
import { retryOnStale, STALE_RETRY_ATTEMPTS } from '../kernel/retry.ts';
import type { TaskRepository } from './ports.ts';
import { isFinished, type TaskStatus, transitionTask } from './task.ts';

/**
 * Moves a stored task on, re-reading on a lost race. A task already there (a retried step) or
 * already finished is left alone, so steps can run twice.
 */
export async function advanceTask(
  repo: TaskRepository,
  id: string,
  to: TaskStatus,
  clock: () => Date,
  ttlHours: number,
  fields: { message?: string; result?: Record<string, unknown> | null } = {},
): Promise<void> {
  await retryOnStale(
    async () => {
      const task = await repo.get(id);
      if (!task) throw new NotFoundError(`Could not find task ${id}`);
      if (task.status === to || isFinished(task)) return;
      const next = { ...transitionTask(task, to, clock(), ttlHours, fields), version: task.version + 1 };
      await repo.update(task, next);
    },
    { maxAttempts: STALE_RETRY_ATTEMPTS },
  );
}

/** Moves a task of `repo` on (advanceTask): what a workflow's steps hold, bound to its settings. */
export type TaskAdvancer = (
  id: string,
  to: TaskStatus,
  fields?: { message?: string; result?: Record<string, unknown> | null },
) => Promise<void>;

export function taskAdvancer(repo: TaskRepository, clock: () => Date, ttlHours: number): TaskAdvancer {
  return (id, to, fields) => advanceTask(repo, id, to, clock, ttlHours, fields);
}
