import { describe, expect, it } from 'vitest';
import {
  ClaimRequestSchema,
  claim,
  finish,
  giveUp,
  isClaimable,
  isExhausted,
  type JobRecord,
  LeaseLostError,
  MAX_ATTEMPTS,
  newJob,
  renderClaimedJob,
  renewLease,
} from '#core/instances/work-queue';
import { captureError, NOW } from './fixtures.ts';

const at = (ms: number) => new Date(NOW.getTime() + ms);
const pending = (): JobRecord =>
  newJob({ id: 'job-1', kind: 'build', instance: { id: 'inst-1', host_id: 'h1' }, now: NOW });
const claimed = (token = 'tok-1', leaseSeconds = 10): JobRecord =>
  claim(pending(), { now: NOW, leaseSeconds, token });

describe('the work queue', () => {
  it('queues a job pending, for the instance host, in enqueue order', () => {
    expect(pending()).toMatchObject({
      status: 'pending',
      host_id: 'h1',
      instance_id: 'inst-1',
      attempt: 0,
      lease_token: null,
      enqueued_at: NOW.toISOString(),
      version: 1,
    });
  });

  it('leases a claimed job until its lease runs out, then lets anyone claim it again', () => {
    // Prepare
    const first = claimed();

    // Act + Assess
    expect(first).toMatchObject({ status: 'claimed', attempt: 1, lease_token: 'tok-1', version: 2 });
    expect(first.lease_expires_at).toBe(at(10_000).toISOString());
    expect(isClaimable(first, at(9_999))).toBe(false);
    expect(captureError(() => claim(first, { now: at(5_000), leaseSeconds: 10, token: 'tok-2' })).kind).toBe(
      'conflict',
    );
    expect(isClaimable(first, at(10_000))).toBe(true);
    const second = claim(first, { now: at(10_000), leaseSeconds: 10, token: 'tok-2' });
    expect(second).toMatchObject({ attempt: 2, lease_token: 'tok-2' });
  });

  it('renews the lease of its holder only', () => {
    // Prepare
    const job = claimed();

    // Act
    const renewed = renewLease(job, 'tok-1', at(8_000));

    // Assess
    expect(renewed.lease_expires_at).toBe(at(18_000).toISOString());
    expect(
      renewLease(claim(job, { now: at(11_000), leaseSeconds: 5, token: 't2' }), 't2', at(12_000))
        .lease_expires_at,
    ).toBe(at(17_000).toISOString());
    expect(captureError(() => renewLease(job, 'stolen', at(1_000)))).toBeInstanceOf(LeaseLostError);
    // Expired but not claimed again: the holder may still carry on.
    expect(renewLease(job, 'tok-1', at(60_000)).status).toBe('claimed');
  });

  it('finishes a job once; a repeat of the same report changes nothing, anything else is a lost lease', () => {
    // Prepare
    const job = claimed();

    // Act
    const done = finish(job, 'tok-1', { outcome: 'done', result: { domain_uuid: 'inst-1' } }, at(3_000));

    // Assess
    if (done === 'repeat') throw new Error('expected a finished job');
    expect(done).toMatchObject({
      status: 'done',
      result: { domain_uuid: 'inst-1' },
      finished_at: at(3_000).toISOString(),
    });
    expect(finish(done, 'tok-1', { outcome: 'done', result: {} }, at(4_000))).toBe('repeat');
    expect(
      captureError(() => finish(done, 'tok-1', { outcome: 'failed', reason: 'x' }, at(4_000))).message,
    ).toMatch(/already completed/);
    expect(
      captureError(() => finish(done, 'other', { outcome: 'done', result: {} }, at(4_000))),
    ).toBeInstanceOf(LeaseLostError);
    expect(captureError(() => renewLease(done, 'tok-1', at(4_000)))).toBeInstanceOf(LeaseLostError);
    expect(isClaimable(done, at(1_000_000))).toBe(false);
  });

  it('refuses a report from a holder whose lease went to someone else', () => {
    // Prepare
    const job = claim(claimed('old'), { now: at(11_000), leaseSeconds: 10, token: 'new' });

    // Act + Assess
    expect(
      captureError(() => finish(job, 'old', { outcome: 'done', result: {} }, at(12_000))),
    ).toBeInstanceOf(LeaseLostError);
    expect(finish(job, 'new', { outcome: 'failed', reason: 'boom' }, at(12_000))).toMatchObject({
      status: 'failed',
      reason: 'boom',
      result: null,
    });
  });

  it(`gives a job up once its lease expired ${MAX_ATTEMPTS} times`, () => {
    // Prepare
    let job = pending();
    for (let i = 0; i < MAX_ATTEMPTS; i++)
      job = claim(job, { now: at(i * 2_000), leaseSeconds: 1, token: `t${i}` });

    // Act + Assess
    expect(isExhausted(job, at(MAX_ATTEMPTS * 2_000 - 1_500))).toBe(false);
    expect(isExhausted(job, at(MAX_ATTEMPTS * 2_000))).toBe(true);
    expect(giveUp(job, at(MAX_ATTEMPTS * 2_000))).toMatchObject({
      status: 'failed',
      reason: `gave up after ${MAX_ATTEMPTS} attempts: every lease expired before the host finished the job`,
    });
  });

  it('bounds lease lengths and defaults them', () => {
    expect(ClaimRequestSchema.parse({})).toEqual({ lease_seconds: 60 });
    expect(ClaimRequestSchema.safeParse({ lease_seconds: 0 }).success).toBe(false);
    expect(ClaimRequestSchema.safeParse({ lease_seconds: 3601 }).success).toBe(false);
  });

  it('hands the agent the job, its lease and what it needs of the instance and image', () => {
    // Prepare
    const instance = {
      id: 'inst-1',
      name: 'web',
      hostname: 'web',
      vcpus: 1,
      ram_mb: 256,
      disk_gb: 1,
      user_data: null,
      image: {
        id: 'img',
        name: null,
        disk_format: 'qcow2',
        size: 5,
        os_hash_algo: 'sha512' as const,
        os_hash_value: 'a',
      },
    };

    // Act
    const view = renderClaimedJob(claimed(), instance as Parameters<typeof renderClaimedJob>[1]);

    // Assess
    expect(view).toEqual({
      id: 'job-1',
      kind: 'build',
      lease_token: 'tok-1',
      lease_expires_at: at(10_000).toISOString(),
      attempt: 1,
      instance: {
        id: 'inst-1',
        name: 'web',
        hostname: 'web',
        vcpus: 1,
        ram_mb: 256,
        disk_gb: 1,
        user_data: null,
        boot_check: null,
        image: { id: 'img', disk_format: 'qcow2', size: 5, os_hash_algo: 'sha512', os_hash_value: 'a' },
        upgrade_image: null,
        previous_image: null,
      },
    });
  });
});
