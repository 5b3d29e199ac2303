/** The embedded runner's schedule: runs on time, never overlaps itself, stops cleanly. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startSchedule } from '../../../local/schedule.ts';

describe('startSchedule', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  /** A run that lasts until the test ends it. */
  function controlledRuns() {
    const finishers: (() => void)[] = [];
    const run = vi.fn(
      () =>
        new Promise<void>((resolve) => {
          finishers.push(resolve);
        }),
    );
    return { run, finishLast: () => finishers.at(-1)?.() };
  }

  it('runs every period, and not again while a run is still in progress', async () => {
    // Prepare
    const { run, finishLast } = controlledRuns();
    const schedule = startSchedule({ name: 'test', everyMs: 1000, run });

    // Act, Assess
    await vi.advanceTimersByTimeAsync(999);
    expect(run).toHaveBeenCalledTimes(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(run).toHaveBeenCalledTimes(1);
    // Five periods pass while the first run is busy: no second run starts.
    await vi.advanceTimersByTimeAsync(5000);
    expect(run).toHaveBeenCalledTimes(1);
    finishLast();
    await vi.advanceTimersByTimeAsync(999);
    expect(run).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(run).toHaveBeenCalledTimes(2);
    finishLast();
    await schedule.stop();
  });

  it('logs a failed run and keeps going', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockReturnValue(true);
    const run = vi.fn().mockRejectedValueOnce(new Error('boom')).mockResolvedValue(undefined);
    const schedule = startSchedule({ name: 'test', everyMs: 1000, run });
    await vi.advanceTimersByTimeAsync(2000);
    expect(run).toHaveBeenCalledTimes(2);
    expect(String(stderr.mock.calls[0]?.[0])).toMatch(/local scheduled run failed.*"schedule":"test".*boom/);
    await schedule.stop();
  });

  it('stop() waits for the run in progress and clears the timer', async () => {
    // Prepare
    const { run, finishLast } = controlledRuns();
    const schedule = startSchedule({ name: 'test', everyMs: 1000, run });
    await vi.advanceTimersByTimeAsync(1000);

    // Act
    let stopped = false;
    const stopping = schedule.stop().then(() => {
      stopped = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    const whileRunning = stopped;
    finishLast();
    await stopping;
    await vi.advanceTimersByTimeAsync(10_000);

    // Assess
    expect(whileRunning).toBe(false);
    expect(run).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does not keep the process alive, and never runs with a period of 0', async () => {
    const run = vi.fn(async () => undefined);
    const timers = vi.spyOn(globalThis, 'setTimeout');
    const schedule = startSchedule({ name: 'test', everyMs: 1000, run });
    const timer = timers.mock.results[0]?.value as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(false);
    await schedule.stop();

    const off = startSchedule({ name: 'off', everyMs: 0, run });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(run).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
    await off.stop();
  });
});
