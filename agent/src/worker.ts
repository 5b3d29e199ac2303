/**
 * The poll loop: claim a job, run its handler while a heartbeat keeps the lease, then complete or fail it.
 *
 * - A 409 on the lease heartbeat (or a lease that ran out unrenewed) aborts the handler: someone else owns
 *   the job now, so the agent neither completes nor fails it.
 * - The agent's own abort signal (SIGTERM) stops claiming and aborts the handlers in flight; such jobs are
 *   left for their lease to expire and be claimed again (every handler is idempotent), not failed.
 * - Jobs for one instance never run at the same time; different instances run up to maxConcurrent at once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError, LeaseLostError, ServiceError } from './errors.ts';
import type { JobContext, JobHandler } from './jobs.ts';
import type { Logger } from './log.ts';
import type { ClaimPacer } from './notifications.ts';
import type { Job, JobResult, ServicePort } from './service-client.ts';

export interface WorkerOptions {
  service: ServicePort;
  handlers: Record<Job['kind'], JobHandler>;
  context: JobContext;
  log: Logger;
  leaseSeconds: number;
  pollIntervalMs: number;
  /** When to claim again after a claim found nothing (default: every pollIntervalMs). */
  pacer?: ClaimPacer;
  maxConcurrent: number;
  /** How long to wait for aborted handlers to unwind at shutdown. */
  shutdownGraceMs?: number;
}

const MAX_REASON = 2_000;

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal }).catch(() => undefined);
}

/** Retries a report to the service (complete/fail) on transport errors and 5xx: a result must not be lost. */
async function report(
  what: string,
  log: Logger,
  call: () => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await call();
      return;
    } catch (error) {
      const retriable = error instanceof ServiceError && (error.status === undefined || error.status >= 500);
      if (!retriable || attempt >= 5 || signal.aborted) throw error;
      log.warn(`${what} failed, retrying`, { attempt, error });
      await abortableSleep(Math.min(500 * 2 ** attempt, 8_000), signal);
    }
  }
}

export class Worker {
  private readonly active = new Set<Promise<void>>();
  private readonly instanceChains = new Map<string, Promise<void>>();

  constructor(private readonly options: WorkerOptions) {}

  /** Runs until `signal` aborts, then waits (bounded) for the jobs in flight to unwind. */
  async run(signal: AbortSignal): Promise<void> {
    const { service, log } = this.options;
    let backoffMs = this.options.pollIntervalMs;
    while (!signal.aborted) {
      if (this.active.size >= this.options.maxConcurrent) {
        await Promise.race(this.active);
        continue;
      }
      let claimed: Awaited<ReturnType<ServicePort['claimJob']>>;
      try {
        claimed = await service.claimJob(this.options.leaseSeconds, signal);
        backoffMs = this.options.pollIntervalMs;
      } catch (error) {
        if (signal.aborted) break;
        log.warn('claim failed', { error });
        await abortableSleep(backoffMs, signal);
        backoffMs = Math.min(backoffMs * 2, 30_000);
        continue;
      }
      if (claimed === null) {
        await (this.options.pacer?.wait(signal) ?? abortableSleep(this.options.pollIntervalMs, signal));
        continue;
      }
      if ('invalid' in claimed) {
        await this.rejectInvalid(claimed.invalid, claimed.error, signal);
        continue;
      }
      const job = claimed;
      const previous = this.instanceChains.get(job.instance.id) ?? Promise.resolve();
      const task: Promise<void> = this.runJob(job, previous, signal).finally(() => {
        this.active.delete(task);
        if (this.instanceChains.get(job.instance.id) === task) this.instanceChains.delete(job.instance.id);
      });
      this.active.add(task);
      this.instanceChains.set(job.instance.id, task);
    }
    const grace = this.options.shutdownGraceMs ?? 15_000;
    await Promise.race([Promise.allSettled([...this.active]), sleep(grace)]);
  }

  private async rejectInvalid(raw: unknown, error: string, signal: AbortSignal): Promise<void> {
    const { service, log } = this.options;
    const candidate = raw as { id?: unknown; lease_token?: unknown } | null;
    log.error('claimed a job that does not match the contract', { error, job: raw });
    if (typeof candidate?.id === 'string' && typeof candidate.lease_token === 'string') {
      const { id, lease_token } = candidate;
      await service
        .failJob(id, lease_token, `invalid job: ${error}`.slice(0, MAX_REASON), signal)
        .catch((failError: unknown) => log.warn('could not fail the invalid job', { error: failError }));
    }
  }

  /** `previous`: the job before this one on the same instance; this one waits for it (holding its lease). */
  private async runJob(job: Job, previous: Promise<void>, agentSignal: AbortSignal): Promise<void> {
    const { service, context } = this.options;
    const log = this.options.log.child({
      job_id: job.id,
      kind: job.kind,
      instance_id: job.instance.id,
      attempt: job.attempt,
    });
    const started = Date.now();
    if (agentSignal.aborted) return;
    log.info('job claimed', { lease_expires_at: job.lease_expires_at });

    const lease = new AbortController();
    const signal = AbortSignal.any([agentSignal, lease.signal]);
    let leaseExpiresAt = Date.parse(job.lease_expires_at);
    if (Number.isNaN(leaseExpiresAt)) leaseExpiresAt = started + this.options.leaseSeconds * 1000;
    const heartbeat = this.keepLease(
      job,
      lease,
      () => leaseExpiresAt,
      (at) => {
        leaseExpiresAt = at;
      },
      signal,
      log,
    );

    try {
      let result: JobResult;
      try {
        await previous;
        if (signal.aborted) throw signal.reason;
        result = await this.options.handlers[job.kind](job, context, log, signal);
      } catch (error) {
        if (agentSignal.aborted) {
          log.info('job abandoned: agent stopping (the lease will expire and the job be retried)', { error });
          return;
        }
        if (lease.signal.aborted) {
          log.warn('job abandoned: lease lost', { error: lease.signal.reason });
          return;
        }
        const reason = describeError(error).slice(0, MAX_REASON);
        log.error('job failed', { error, elapsed_ms: Date.now() - started });
        await report(
          'fail',
          log,
          () => service.failJob(job.id, job.lease_token, reason, agentSignal),
          agentSignal,
        );
        return;
      }
      if (lease.signal.aborted) {
        log.warn('job finished after its lease was lost; not completing it', { reason: lease.signal.reason });
        return;
      }
      await report(
        'complete',
        log,
        () => service.completeJob(job.id, job.lease_token, result, agentSignal),
        agentSignal,
      );
      log.info('job completed', { elapsed_ms: Date.now() - started });
    } catch (error) {
      // Reporting failed for good (lease lost at completion, service unreachable): the lease will expire.
      log.error('could not report the job result', { error });
    } finally {
      lease.abort(new LeaseLostError('job finished'));
      await heartbeat;
    }
  }

  /** Renews the lease every third of its length until the job ends; aborts the job when it is lost. */
  private async keepLease(
    job: Job,
    lease: AbortController,
    expiresAt: () => number,
    setExpiresAt: (at: number) => void,
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    const every = Math.max(500, (this.options.leaseSeconds * 1000) / 3);
    while (!signal.aborted) {
      await abortableSleep(every, signal);
      if (signal.aborted) return;
      try {
        const next = Date.parse(await this.options.service.heartbeatJob(job.id, job.lease_token, signal));
        setExpiresAt(Number.isNaN(next) ? Date.now() + this.options.leaseSeconds * 1000 : next);
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof LeaseLostError) {
          lease.abort(error);
          return;
        }
        log.warn('lease heartbeat failed', { error });
        if (Date.now() >= expiresAt()) {
          lease.abort(new LeaseLostError(`job ${job.id}: lease expired without renewal`));
          return;
        }
      }
    }
  }
}
