/**
 * A scheduled function in the embedded runner, standing in for an EventBridge rate rule on AWS.
 * The next run is timed from the end of the previous one, so a slow run never overlaps the next;
 * the timer is unref()ed, so a schedule alone never keeps the process alive.
 */
import { logger } from '#platform/logger';

export interface LocalSchedule {
  /** Clears the timer and waits for a run in progress. Idempotent. */
  stop(): Promise<void>;
}

export function startSchedule(options: {
  /** For the log line when a run fails. */
  name: string;
  /** 0 (or less): never runs. */
  everyMs: number;
  run: () => Promise<unknown>;
}): LocalSchedule {
  const { name, everyMs, run } = options;
  if (everyMs <= 0) return { stop: async () => undefined };
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;

  const arm = () => {
    if (stopped) return;
    timer = setTimeout(fire, everyMs);
    timer.unref();
  };
  const fire = () => {
    timer = undefined;
    running = run()
      .then(
        () => undefined,
        // On AWS the failed invocation would show in the function's errors; here it is logged.
        (error: unknown) => logger.error('local scheduled run failed', { schedule: name, error }),
      )
      .finally(() => {
        running = undefined;
        arm();
      });
  };

  arm();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
