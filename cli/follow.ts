/**
 * Following a task (an import, a publish) until it ends: each change of state is a line on
 * stderr, and a long wait says it is still waiting, so a person sees the work move.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CliError, ExitCode } from './errors.ts';
import { seconds } from './format.ts';
import type { Output } from './output.ts';
import type { Task } from './schemas.ts';

const POLL_MS = 500;
/** A "still …" line this often while nothing changes. */
const STILL_MS = 15_000;

export const finished = (task: Task) => task.status === 'success' || task.status === 'failure';

/**
 * Polls `read` until the task is finished and returns it. `describe` adds what else moves (the
 * image's status); a line is printed whenever the description changes. Timeout: exit 5.
 */
export async function followTask(
  read: () => Promise<Task>,
  options: { label: string; timeoutMs: number; out: Output; describe?: (task: Task) => Promise<string> },
): Promise<Task> {
  const began = Date.now();
  let last = '';
  let lastLine = began;
  for (;;) {
    const task = await read();
    const state = `${task.status}${options.describe ? await options.describe(task) : ''}`;
    const elapsed = seconds(Date.now() - began);
    if (state !== last) {
      options.out.notice(`${options.label}: ${state} (${elapsed})`);
      last = state;
      lastLine = Date.now();
    } else if (Date.now() - lastLine > STILL_MS) {
      options.out.notice(`${options.label}: still ${state} (${elapsed})`);
      lastLine = Date.now();
    }
    if (finished(task)) return task;
    if (Date.now() - began > options.timeoutMs)
      throw new CliError(
        `${options.label}: task ${task.id} is still ${task.status} after ${seconds(options.timeoutMs)}.`,
        ExitCode.timeout,
      );
    await sleep(POLL_MS);
  }
}
