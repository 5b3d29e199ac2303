/**
 * Optimistic writes that lost a race (StaleWriteError) are re-read and re-applied. The bound is
 * time, not a count: with N writers on one record each round lets about one through, so any fixed
 * count is too small for some N. Full-jitter exponential backoff spreads the retries out so the
 * rounds do not all collide again. A caller whose contract names a count of attempts says so with
 * `maxAttempts`, and what giving up throws with `exhausted`: every optimistic loop in core runs here.
 */
import { StaleWriteError } from './errors.ts';

export interface StaleRetryOptions {
  /** Give up (throw, see `exhausted`) once this much time has passed. */
  budgetMs?: number;
  /** Give up after this many attempts too, whichever bound comes first. */
  maxAttempts?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** What to throw once the budget is spent, made from the last StaleWriteError (default: that error). */
  exhausted?: (error: StaleWriteError) => Error;
}

/** Inside an API Lambda's 29 s timeout; a record contended for this long is a hot spot. */
export const STALE_RETRY_BUDGET_MS = 20_000;
/** The count the image, lease and task writes give up after (their callers' contracts and tests name it). */
export const STALE_RETRY_ATTEMPTS = 20;
const BASE_DELAY_MS = 2;
const MAX_DELAY_MS = 1000;

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The delay before retry `attempt` (1-based): uniform in [0, min(max, base·2^attempt)). */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** Math.min(attempt, 16));
  return Math.floor(random() * ceiling);
}

/**
 * Runs `attempt` until it does not throw StaleWriteError. Each call must read the record afresh
 * and decide again, so a change that now truly conflicts throws its own error instead.
 */
export async function retryOnStale<T>(
  attempt: (n: number) => Promise<T>,
  options: StaleRetryOptions = {},
): Promise<T> {
  const budget = options.budgetMs ?? STALE_RETRY_BUDGET_MS;
  const maxAttempts = options.maxAttempts ?? Number.POSITIVE_INFINITY;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const random = options.random ?? Math.random;
  const start = now();
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (error) {
      if (!(error instanceof StaleWriteError)) throw error;
      const left = budget - (now() - start);
      if (left <= 0 || n >= maxAttempts) throw options.exhausted ? options.exhausted(error) : error;
      await sleep(Math.min(backoffDelay(n, random), left));
    }
  }
}
