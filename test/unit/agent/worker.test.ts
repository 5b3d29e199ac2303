/** The poll loop with an in-memory service and stub handlers: completion, failure, lease loss, shutdown. */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { LeaseLostError, ServiceError } from '../../../agent/src/errors.ts';
import type { JobContext, JobHandler } from '../../../agent/src/jobs.ts';
import { silentLogger } from '../../../agent/src/log.ts';
import type { Job, JobResult, ServicePort } from '../../../agent/src/service-client.ts';
import { Worker } from '../../../agent/src/worker.ts';

function job(id: string, kind: Job['kind'] = 'start', instanceId = `inst-${id}`): Job {
  return {
    id,
    kind,
    lease_token: `lease-${id}`,
    lease_expires_at: new Date(Date.now() + 60_000).toISOString(),
    attempt: 1,
    instance: {
      id: instanceId,
      name: 'n',
      hostname: 'h',
      vcpus: 1,
      ram_mb: 128,
      disk_gb: 1,
      user_data: null,
      image: null,
    },
  };
}

class FakeService implements ServicePort {
  queue: Array<Job | { invalid: unknown; error: string }> = [];
  completed: Array<{ id: string; result: JobResult }> = [];
  failed: Array<{ id: string; reason: string }> = [];
  heartbeats: string[] = [];
  lostLeases = new Set<string>();
  completeFailuresLeft = 0;

  async claimJob(): Promise<Job | null | { invalid: unknown; error: string }> {
    return this.queue.shift() ?? null;
  }
  async heartbeatJob(jobId: string): Promise<string> {
    this.heartbeats.push(jobId);
    if (this.lostLeases.has(jobId)) throw new LeaseLostError('409');
    return new Date(Date.now() + 60_000).toISOString();
  }
  async completeJob(jobId: string, _token: string, result: JobResult): Promise<void> {
    if (this.completeFailuresLeft > 0) {
      this.completeFailuresLeft -= 1;
      throw new ServiceError('503', 503);
    }
    this.completed.push({ id: jobId, result });
  }
  async failJob(jobId: string, _token: string, reason: string): Promise<void> {
    this.failed.push({ id: jobId, reason });
  }
  async registerHost(): Promise<void> {}
  async heartbeatHost(): Promise<void> {}
  async listInstances() {
    return [];
  }
  async reportObserved(): Promise<void> {}
  async open(): Promise<never> {
    throw new Error('not used');
  }
}

const noop: JobHandler = async () => ({});
const handlers = (overrides: Partial<Record<Job['kind'], JobHandler>>): Record<Job['kind'], JobHandler> => ({
  build: noop,
  start: noop,
  stop: noop,
  sleep: noop,
  wake: noop,
  reboot: noop,
  destroy: noop,
  upgrade: noop,
  rollback: noop,
  snapshot: noop,
  ...overrides,
});

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

function worker(
  service: FakeService,
  h: Record<Job['kind'], JobHandler>,
  leaseSeconds = 60,
  maxConcurrent = 2,
) {
  return new Worker({
    service,
    handlers: h,
    context: {} as JobContext,
    log: silentLogger,
    leaseSeconds,
    pollIntervalMs: 10,
    maxConcurrent,
    shutdownGraceMs: 2_000,
  });
}

describe('Worker', () => {
  it('completes a job with the handler result', async () => {
    // Prepare
    const service = new FakeService();
    service.queue.push(job('j1'));
    const controller = new AbortController();
    const w = worker(service, handlers({ start: async () => ({ domain_uuid: 'u-1', console_log: 'ok' }) }));

    // Act
    const running = w.run(controller.signal);
    await until(() => service.completed.length === 1);
    controller.abort();
    await running;

    // Assess
    expect(service.completed).toEqual([{ id: 'j1', result: { domain_uuid: 'u-1', console_log: 'ok' } }]);
    expect(service.failed).toEqual([]);
  });

  it('fails a job with the error chain as its reason', async () => {
    // Prepare
    const service = new FakeService();
    service.queue.push(job('j1', 'build'));
    const controller = new AbortController();
    const w = worker(
      service,
      handlers({ build: async () => Promise.reject(new Error('outer', { cause: new Error('inner') })) }),
    );

    // Act
    const running = w.run(controller.signal);
    await until(() => service.failed.length === 1);
    controller.abort();
    await running;

    // Assess
    expect(service.failed[0]).toEqual({ id: 'j1', reason: 'Error: outer <- Error: inner' });
  });

  it('retries completion on a 5xx so a finished job is not lost', async () => {
    // Prepare
    const service = new FakeService();
    service.completeFailuresLeft = 1;
    service.queue.push(job('j1'));
    const controller = new AbortController();

    // Act
    const running = worker(service, handlers({})).run(controller.signal);
    await until(() => service.completed.length === 1, 10_000);
    controller.abort();
    await running;

    // Assess
    expect(service.completed.map((c) => c.id)).toEqual(['j1']);
  });

  it('stops working on a job whose lease is lost, and neither completes nor fails it', async () => {
    // Prepare
    const service = new FakeService();
    service.queue.push(job('j1'));
    service.lostLeases.add('j1');
    let sawAbort = false;
    const controller = new AbortController();
    const w = worker(
      service,
      handlers({
        start: async (_job, _ctx, _log, signal) => {
          await sleep(10_000, undefined, { signal }).catch(() => {
            sawAbort = true;
          });
          throw new Error('aborted');
        },
      }),
      2, // heartbeat every ~667 ms
    );

    // Act
    const running = w.run(controller.signal);
    await until(() => sawAbort);
    await sleep(50);
    controller.abort();
    await running;

    // Assess
    expect(service.heartbeats).toContain('j1');
    expect(service.completed).toEqual([]);
    expect(service.failed).toEqual([]);
  });

  it('on shutdown aborts the handler in flight and leaves the job to its lease (no fail)', async () => {
    // Prepare
    const service = new FakeService();
    service.queue.push(job('j1'));
    let started = false;
    let aborted = false;
    const controller = new AbortController();
    const w = worker(
      service,
      handlers({
        start: async (_job, _ctx, _log, signal) => {
          started = true;
          await sleep(10_000, undefined, { signal }).catch(() => {
            aborted = true;
          });
          throw new Error('interrupted');
        },
      }),
    );

    // Act
    const running = w.run(controller.signal);
    await until(() => started);
    controller.abort();
    await running;

    // Assess
    expect(aborted).toBe(true);
    expect(service.failed).toEqual([]);
    expect(service.completed).toEqual([]);
  });

  it('runs jobs of one instance one after the other, and of different instances side by side', async () => {
    // Prepare
    const service = new FakeService();
    service.queue.push(job('a1', 'start', 'A'), job('a2', 'stop', 'A'), job('b1', 'start', 'B'));
    const events: string[] = [];
    const slow: JobHandler = async (j) => {
      events.push(`begin ${j.id}`);
      await sleep(150);
      events.push(`end ${j.id}`);
      return {};
    };
    const controller = new AbortController();

    // Act: a job waiting for its instance holds a slot (and its lease), so 3 slots for a1, a2, b1
    const running = worker(service, handlers({ start: slow, stop: slow }), 60, 3).run(controller.signal);
    await until(() => service.completed.length === 3);
    controller.abort();
    await running;

    // Assess
    expect(events.indexOf('end a1')).toBeLessThan(events.indexOf('begin a2'));
    expect(events.indexOf('begin b1')).toBeLessThan(events.indexOf('end a1'));
  });

  it('fails a claimed job that does not match the contract', async () => {
    // Prepare
    const service = new FakeService();
    service.queue.push({ invalid: { id: 'bad', lease_token: 't', kind: 'explode' }, error: 'kind: invalid' });
    const controller = new AbortController();

    // Act
    const running = worker(service, handlers({})).run(controller.signal);
    await until(() => service.failed.length === 1);
    controller.abort();
    await running;

    // Assess
    expect(service.failed[0]?.id).toBe('bad');
    expect(service.failed[0]?.reason).toContain('invalid job');
  });
});
