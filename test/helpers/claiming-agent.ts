/**
 * The host agent's claim loop without libvirt: its own service client, worker and notification
 * socket (agent/src), with job handlers that only record the claim. For the notification tests
 * and the claim-latency benchmark.
 */
import type { JobContext, JobHandler } from '../../agent/src/jobs.ts';
import { silentLogger } from '../../agent/src/log.ts';
import { type ClaimPacer, FixedPoll, JobNotifications } from '../../agent/src/notifications.ts';
import { type Job, type JobKind, type JobResult, ServiceClient } from '../../agent/src/service-client.ts';
import { Worker } from '../../agent/src/worker.ts';

export interface ClaimingAgentOptions {
  serviceUrl: string;
  hostId: string;
  token: string;
  /** The notification socket's URL; undefined: no socket, a claim every disconnectedPollMs. */
  socketUrl: string | undefined;
  fallbackMs: number;
  disconnectedPollMs: number;
  /** What each job reports when done (default: nothing), e.g. a console log for the console's tests. */
  result?: (job: Job) => JobResult;
  /**
   * Kinds that do real work through the service after the claim is recorded (e.g. a snapshot that
   * uploads with its grant); their result replaces `result`'s.
   */
  work?: Partial<
    Record<JobKind, (job: Job, service: ServiceClient, signal: AbortSignal) => Promise<JobResult>>
  >;
}

export interface ClaimingAgent {
  /** Every job claimed, with the time (Date.now()) its claim came back. */
  readonly claims: Array<{ job: Job; at: number }>;
  /** undefined without a socket. */
  readonly notifications: JobNotifications | undefined;
  claimOf(instanceId: string): { job: Job; at: number } | undefined;
  stop(): Promise<void>;
}

export function startClaimingAgent(options: ClaimingAgentOptions): ClaimingAgent {
  const controller = new AbortController();
  const { hostId, token } = options;
  const service = new ServiceClient({ baseUrl: options.serviceUrl, hostId, token, timeoutMs: 10_000 });
  const claims: ClaimingAgent['claims'] = [];
  const record: JobHandler = async (job, _ctx, _log, signal) => {
    claims.push({ job, at: Date.now() });
    const work = options.work?.[job.kind];
    if (work) return work(job, service, signal);
    return options.result?.(job) ?? {};
  };
  const notifications =
    options.socketUrl === undefined
      ? undefined
      : new JobNotifications({
          url: options.socketUrl,
          hostId,
          token,
          fallbackMs: options.fallbackMs,
          disconnectedPollMs: options.disconnectedPollMs,
          reconnectMinMs: 100,
          reconnectMaxMs: 400,
          log: silentLogger,
        });
  const pacer: ClaimPacer = notifications ?? new FixedPoll(options.disconnectedPollMs);
  const listening = notifications?.run(controller.signal) ?? Promise.resolve();
  const worker = new Worker({
    service,
    handlers: {
      build: record,
      start: record,
      stop: record,
      sleep: record,
      wake: record,
      reboot: record,
      destroy: record,
      upgrade: record,
      rollback: record,
      snapshot: record,
    },
    // The handlers above use none of it.
    context: {} as JobContext,
    log: silentLogger,
    leaseSeconds: 60,
    pollIntervalMs: options.disconnectedPollMs,
    pacer,
    maxConcurrent: 4,
  });
  const working = worker.run(controller.signal);
  return {
    claims,
    notifications,
    claimOf: (instanceId) => claims.find((claim) => claim.job.instance.id === instanceId),
    async stop() {
      controller.abort();
      await Promise.all([listening, working]);
    },
  };
}
