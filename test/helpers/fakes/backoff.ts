/**
 * retryOnStale (core/kernel/retry.ts) sleeps a jittered backoff between lost races. A unit test
 * that loses every race on purpose runs the retries under a fake setTimeout, so twenty rounds of
 * backoff take no real time; the count of attempts and what giving up answers are unchanged.
 */
import { vi } from 'vitest';

export async function withoutBackoff<T>(run: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ['setTimeout'] });
  try {
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    run().then(
      (value) => {
        outcome = { ok: true, value };
      },
      (error: unknown) => {
        outcome = { ok: false, error };
      },
    );
    while (outcome === undefined) {
      await vi.advanceTimersToNextTimerAsync();
      // Lets real I/O callbacks (setImmediate is not faked) run between the timers.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  } finally {
    vi.useRealTimers();
  }
}
