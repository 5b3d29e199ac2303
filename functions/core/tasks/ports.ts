/** Ports of the tasks and the state machines. Adapters in functions/adapters implement them. */
import type { TaskRecord } from './task.ts';

export interface TaskListSpec {
  limit: number;
  /** Newest first unless false. */
  descending: boolean;
  /** The task the previous page ended with. */
  marker?: TaskRecord;
  /** Applied after reading the index (status/type filters). */
  filter: (task: TaskRecord) => boolean;
}

export interface TaskRepository {
  get(id: string): Promise<TaskRecord | null>;
  /** ConflictError when the id exists. Also indexes the task under its image. */
  create(task: TaskRecord): Promise<void>;
  /** Writes `next` if the stored version is still `next.version - 1`; StaleWriteError otherwise. */
  update(previous: TaskRecord, next: TaskRecord): Promise<void>;
  list(spec: TaskListSpec): Promise<TaskRecord[]>;
  listForImage(imageId: string): Promise<TaskRecord[]>;
}

export type WorkflowName = 'import' | 'export' | 'publish' | 'build';

/**
 * Answers a state machine's `.waitForTaskToken` state (SendTaskSuccess / SendTaskFailure on AWS,
 * the local runner in the embedded backend). A token nobody waits for any more is not an error
 * of the caller's: implementations log it and return.
 */
export interface TaskTokenNotifier {
  succeed(token: string, output: Record<string, unknown>): Promise<void>;
  fail(token: string, error: string, cause: string): Promise<void>;
}

/** Starts a state machine execution. Idempotent per execution name: a repeat is a no-op. */
export interface WorkflowStarter {
  start(workflow: WorkflowName, executionName: string, input: Record<string, unknown>): Promise<void>;
}
