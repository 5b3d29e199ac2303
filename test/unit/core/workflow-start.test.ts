/** startOrFail (core/tasks/workflow-start.ts): a state machine that cannot start fails its task first. */
import { describe, expect, it } from 'vitest';
import type { StepError } from '#core/tasks/step-error';
import { startOrFail } from '#core/tasks/workflow-start';

describe('startOrFail', () => {
  it('runs the failure step with StartFailed, then passes the start error on', async () => {
    const failures: StepError[] = [];
    const refused = new Error('states unavailable');
    await expect(
      startOrFail(
        'export',
        () => Promise.reject(refused),
        async (error) => {
          failures.push(error);
        },
      ),
    ).rejects.toBe(refused);
    expect(failures).toEqual([{ Error: 'StartFailed', Cause: 'The export could not be started.' }]);
  });

  it('leaves the task alone when the machine starts', async () => {
    const failures: StepError[] = [];
    let started = 0;
    await startOrFail(
      'publish',
      async () => {
        started += 1;
      },
      async (error) => {
        failures.push(error);
      },
    );
    expect(started).toBe(1);
    expect(failures).toEqual([]);
  });
});
