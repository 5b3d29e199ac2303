/**
 * Use cases of the instances API (projects) and of the hosts/jobs API (host agents), over the
 * InstanceStore port. Every change is a conditional write; when one loses a race it is
 * recomputed from fresh reads, so concurrent requests never overcommit a host or apply a job twice.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ImageRecord } from '../images/image.ts';
import {
  BadRequestError,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  StaleWriteError,
  UnavailableError,
} from '../kernel/errors.ts';
import { hasReaderRole, type Principal } from '../kernel/principal.ts';
import type { TaskTokenNotifier } from '../tasks/ports.ts';
import { assertActsForHost, assertManagesInstances, assertProjectCaller, canSeeInstance } from './access.ts';
import {
  applyJobOutcome,
  applyObserved,
  destroyOnLostHost,
  type JobOutcome,
  newInstance,
  requestAction,
} from './lifecycle.ts';
import { imageRequirements, place, silentSeconds } from './placement.ts';
import type { ImageLookup, InstanceStore } from './ports.ts';
import type { Action, HostRecord, InstanceRecord } from './records.ts';
import { CreateInstanceRequestSchema, HostRegistrationSchema, isImageId, parseBody } from './requests.ts';
import {
  abandon,
  ClaimRequestSchema,
  CompleteRequestSchema,
  claim,
  FailRequestSchema,
  type Finish,
  finish,
  giveUp,
  isClaimable,
  isExhausted,
  type JobRecord,
  LeaseRequestSchema,
  newJob,
  ObservedRequestSchema,
  renewLease,
} from './work-queue.ts';

export interface InstancesDeps {
  store: InstanceStore;
  images: ImageLookup;
  hostTimeoutSeconds: number;
  newId: () => string;
  newToken: () => string;
  /** Answers publish boot gates when their build ends (absent: nothing waits on builds). */
  gates?: TaskTokenNotifier;
  clock?: () => Date;
}

/** Bounded retries of a write that lost a race; contention on one host is short-lived. */
const MAX_WRITE_ATTEMPTS = 30;

async function backoff(attempt: number): Promise<void> {
  await sleep(Math.floor(Math.random() * Math.min(200, 10 * attempt)) + 1);
}

/** Tells a publish boot gate how the build of its instance ended. */
function answerGate(
  gates: TaskTokenNotifier | undefined,
  token: string,
  instance: InstanceRecord,
  outcome: JobOutcome,
): Promise<void> {
  if (!gates) return Promise.resolve();
  if (outcome.ok)
    return gates.succeed(token, {
      instance_id: instance.id,
      stage: instance.stage,
      console_log: instance.console_log,
    });
  return gates.fail(token, 'BootFailed', `The candidate did not boot: ${outcome.reason}`);
}

export class InstancesService {
  private readonly clock: () => Date;

  constructor(private readonly deps: InstancesDeps) {
    this.clock = deps.clock ?? (() => new Date());
  }

  private async findImage(principal: Principal, ref: string): Promise<ImageRecord> {
    try {
      return isImageId(ref)
        ? await this.deps.images.show(principal, ref)
        : await this.deps.images.resolve(principal, ref);
    } catch (error) {
      // The instance is what was asked for: an image it cannot use makes the request bad, not missing.
      if (error instanceof NotFoundError) throw new BadRequestError(error.message);
      throw error;
    }
  }

  async create(principal: Principal, body: unknown): Promise<InstanceRecord> {
    return this.place(principal, body, {});
  }

  /**
   * A publish boot gate's instance: its id is given (so a retried step finds the one it made)
   * and it carries the task token that the end of its build answers.
   */
  async createGate(
    principal: Principal,
    body: unknown,
    gate: { id: string; gateToken: string },
  ): Promise<InstanceRecord> {
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const existing = await this.deps.store.getInstance(gate.id);
      if (!existing) return this.place(principal, body, gate);
      if (existing.project !== principal.project) throw new ConflictError(`Instance ${gate.id} exists.`);
      if (existing.gate_token === gate.gateToken) return existing;
      // A retried state waits on a new token: hand it to the build, or answer it if the build ended.
      if (existing.stage !== 'Building' || existing.pending_job?.kind !== 'build') {
        const outcome: JobOutcome =
          existing.stage === 'Error'
            ? { ok: false, reason: existing.reason ?? 'build failed' }
            : { ok: true, result: {} };
        await answerGate(this.deps.gates, gate.gateToken, existing, outcome);
        return existing;
      }
      const next = { ...existing, gate_token: gate.gateToken, version: existing.version + 1 };
      try {
        await this.deps.store.updateInstance(existing, next);
        return next;
      } catch (error) {
        if (!(error instanceof StaleWriteError)) throw error;
        await backoff(attempt);
      }
    }
    throw new UnavailableError(`Instance ${gate.id} is changing too often; try again.`);
  }

  private async place(
    principal: Principal,
    body: unknown,
    gate: { id?: string; gateToken?: string },
  ): Promise<InstanceRecord> {
    assertProjectCaller(principal);
    assertManagesInstances(principal, principal.project);
    const request = parseBody(CreateInstanceRequestSchema, body, 'instance');
    const image = await this.findImage(principal, request.image);
    const requirements = imageRequirements(image, request);
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const now = this.clock();
      const placement = place(await this.deps.store.listHosts(), request, requirements, {
        now,
        hostTimeoutSeconds: this.deps.hostTimeoutSeconds,
      });
      if ('refused' in placement) throw new ConflictError(`No host can take it: ${placement.refused}`);
      const id = gate.id ?? this.deps.newId();
      const jobId = this.deps.newId();
      const instance = newInstance({
        id,
        request,
        image,
        principal,
        host: placement.host,
        buildJobId: jobId,
        now,
        ...(gate.gateToken !== undefined ? { gateToken: gate.gateToken } : {}),
      });
      const job = newJob({ id: jobId, kind: 'build', instance, now });
      try {
        await this.deps.store.createInstance(instance, job, placement.host);
        return instance;
      } catch (error) {
        // Another create took the room (or the host re-registered): place again on fresh reads.
        if (!(error instanceof StaleWriteError)) throw error;
        await backoff(attempt);
      }
    }
    throw new UnavailableError('Too many concurrent requests for the same hosts; try again.');
  }

  async show(principal: Principal, id: string): Promise<InstanceRecord> {
    assertProjectCaller(principal);
    const instance = await this.deps.store.getInstance(id);
    if (!instance || !canSeeInstance(instance, principal))
      throw new NotFoundError(`No instance found with ID ${id}`);
    return instance;
  }

  /** A project's instances, newest first; admins see every project's unless they name one. */
  async list(
    principal: Principal,
    query: { limit: number; marker?: string; project?: string },
  ): Promise<InstanceRecord[]> {
    assertProjectCaller(principal);
    if (!hasReaderRole(principal))
      throw new ForbiddenError('Listing instances needs the reader, member or admin role.');
    let marker: InstanceRecord | undefined;
    if (query.marker !== undefined) {
      const found = await this.deps.store.getInstance(query.marker);
      if (!found || !canSeeInstance(found, principal))
        throw new BadRequestError(`No instance found with ID ${query.marker}`);
      marker = found;
    }
    const project = principal.isAdmin ? query.project : principal.project;
    return this.deps.store.listInstances({ project, limit: query.limit, ...(marker ? { marker } : {}) });
  }

  /**
   * Queues the action's job; 409 when a job is pending or the stage does not allow it. A destroy
   * on a lost host (see destroyOnLostHost) happens at once instead, pending job or not.
   */
  async act(principal: Principal, id: string, action: Action): Promise<InstanceRecord> {
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const current = await this.show(principal, id);
      assertManagesInstances(principal, current.project);
      const now = this.clock();
      if (action === 'destroy' && current.stage !== 'Inexistent') {
        const host = await this.deps.store.getHost(current.host_id);
        if (host && silentSeconds(host, now) > this.deps.hostTimeoutSeconds) {
          try {
            return await this.destroyWithoutHost(current, host, now);
          } catch (error) {
            if (!(error instanceof StaleWriteError)) throw error;
            await backoff(attempt);
            continue;
          }
        }
      }
      const jobId = this.deps.newId();
      const next = requestAction(current, action, jobId, now);
      const job = newJob({ id: jobId, kind: action, instance: current, now });
      try {
        await this.deps.store.updateInstance(current, next, job);
        return next;
      } catch (error) {
        if (!(error instanceof StaleWriteError)) throw error;
        await backoff(attempt);
      }
    }
    throw new UnavailableError(`Instance ${id} is changing too often; try again.`);
  }

  private async destroyWithoutHost(
    current: InstanceRecord,
    host: { id: string; heartbeat_at: string },
    now: Date,
  ): Promise<InstanceRecord> {
    const next = destroyOnLostHost(current, host, now);
    const pending = current.pending_job ? await this.deps.store.getJob(current.pending_job.id) : null;
    const open = pending && (pending.status === 'pending' || pending.status === 'claimed') ? pending : null;
    const job = open
      ? { previous: open, next: abandon(open, next.last_error ?? 'host lost', now) }
      : undefined;
    await this.deps.store.destroyWithoutHost(current, next, job);
    // A publish gate waiting on this build hears that it will never boot.
    if (open?.kind === 'build' && current.gate_token)
      await answerGate(this.deps.gates, current.gate_token, next, {
        ok: false,
        reason: next.last_error ?? '',
      });
    return next;
  }
}

/** The host agents' side: registration, heartbeats, the work queue and reconciliation. */
export class HostsService {
  private readonly clock: () => Date;

  constructor(private readonly deps: InstancesDeps) {
    this.clock = deps.clock ?? (() => new Date());
  }

  async register(principal: Principal, hostId: string, body: unknown): Promise<HostRecord> {
    assertActsForHost(principal, hostId);
    const registration = parseBody(HostRegistrationSchema, body, 'host registration');
    return this.deps.store.putHost(hostId, registration, this.clock());
  }

  async heartbeat(principal: Principal, hostId: string): Promise<void> {
    assertActsForHost(principal, hostId);
    if (!(await this.deps.store.heartbeatHost(hostId, this.clock())))
      throw new NotFoundError(`Host ${hostId} is not registered; PUT /v1/hosts/${hostId} first.`);
  }

  /** Admins see every host; a host agent sees itself. */
  async show(principal: Principal, hostId: string): Promise<HostRecord> {
    if (!principal.isAdmin) assertActsForHost(principal, hostId);
    const host = await this.deps.store.getHost(hostId);
    if (!host) throw new NotFoundError(`No host found with ID ${hostId}`);
    return host;
  }

  async list(principal: Principal): Promise<HostRecord[]> {
    if (!principal.isAdmin) throw new ForbiddenError('Only admins may list hosts.');
    return this.deps.store.listHosts();
  }

  async instances(principal: Principal, hostId: string): Promise<InstanceRecord[]> {
    assertActsForHost(principal, hostId);
    return this.deps.store.listHostInstances(hostId);
  }

  /**
   * The oldest claimable job of the host, leased to the caller; null when there is none. Walks
   * the host's queue (an index Query, never a Scan) and tries a conditional write on each
   * candidate: when several agents race for one job, exactly one write succeeds.
   */
  async claim(
    principal: Principal,
    hostId: string,
    body: unknown,
  ): Promise<{ job: JobRecord; instance: InstanceRecord } | null> {
    assertActsForHost(principal, hostId);
    const { lease_seconds } = parseBody(ClaimRequestSchema, body ?? {}, 'claim');
    const now = this.clock();
    for (const candidate of await this.deps.store.queue(hostId, 25)) {
      // The index may lag behind the table: decide on the record itself.
      const job = await this.deps.store.getJob(candidate.id);
      if (!job || job.host_id !== hostId || !isClaimable(job, now)) continue;
      if (isExhausted(job, now)) {
        await this.giveUp(job, now);
        continue;
      }
      const instance = await this.deps.store.getInstance(job.instance_id);
      if (!instance) continue;
      const next = claim(job, { now, leaseSeconds: lease_seconds, token: this.deps.newToken() });
      try {
        await this.deps.store.claimJob(job, next, now);
        return { job: next, instance };
      } catch (error) {
        // Someone else claimed it first: on to the next one.
        if (!(error instanceof StaleWriteError)) throw error;
      }
    }
    return null;
  }

  private async giveUp(job: JobRecord, now: Date): Promise<void> {
    const next = giveUp(job, now);
    await this.applyFinish(job, next, { ok: false, reason: next.reason ?? 'gave up' }).catch(
      (error: unknown) => {
        // A racing claimer or finisher got there first; the job is theirs to settle.
        if (!(error instanceof StaleWriteError)) throw error;
      },
    );
  }

  async heartbeatJob(principal: Principal, jobId: string, body: unknown): Promise<JobRecord> {
    const { lease_token } = parseBody(LeaseRequestSchema, body, 'heartbeat');
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const job = await this.ownJob(principal, jobId);
      const next = renewLease(job, lease_token, this.clock());
      try {
        await this.deps.store.updateJob(job, next);
        return next;
      } catch (error) {
        if (!(error instanceof StaleWriteError)) throw error;
      }
    }
    throw new UnavailableError(`Job ${jobId} is changing too often; try again.`);
  }

  async complete(principal: Principal, jobId: string, body: unknown): Promise<void> {
    const { lease_token, result } = parseBody(CompleteRequestSchema, body, 'completion');
    await this.finishJob(principal, jobId, lease_token, { outcome: 'done', result });
  }

  async fail(principal: Principal, jobId: string, body: unknown): Promise<void> {
    const { lease_token, reason } = parseBody(FailRequestSchema, body, 'failure');
    await this.finishJob(principal, jobId, lease_token, { outcome: 'failed', reason });
  }

  /** Idempotent: a repeat of the same report (same lease, same outcome) changes nothing. */
  private async finishJob(principal: Principal, jobId: string, token: string, input: Finish): Promise<void> {
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const job = await this.ownJob(principal, jobId);
      const next = finish(job, token, input, this.clock());
      if (next === 'repeat') return;
      const outcome: JobOutcome =
        input.outcome === 'done' ? { ok: true, result: input.result } : { ok: false, reason: input.reason };
      try {
        await this.applyFinish(job, next, outcome);
        return;
      } catch (error) {
        // The instance or the job moved meanwhile (a reconcile report, a repeat of this very
        // request): read both again; a repeat then finds the job finished and stops.
        if (!(error instanceof StaleWriteError)) throw error;
        await backoff(attempt);
      }
    }
    throw new UnavailableError(`Job ${jobId} is changing too often; try again.`);
  }

  private async applyFinish(job: JobRecord, next: JobRecord, outcome: JobOutcome): Promise<void> {
    const instance = await this.deps.store.getInstance(job.instance_id);
    const changed = instance ? applyJobOutcome(instance, job, outcome, this.clock()) : null;
    await this.deps.store.finishJob(
      job,
      next,
      instance && changed ? { previous: instance, next: changed } : undefined,
    );
    // After the write, so a gate hears only of an outcome that was applied (once: a repeated
    // report stops at `finish` as a repeat). A lost answer ends in the gate's own timeout.
    if (changed && job.kind === 'build' && changed.gate_token)
      await answerGate(this.deps.gates, changed.gate_token, changed, outcome);
  }

  private async ownJob(principal: Principal, jobId: string): Promise<JobRecord> {
    const job = await this.deps.store.getJob(jobId);
    if (!job) throw new NotFoundError(`No job found with ID ${jobId}`);
    assertActsForHost(principal, job.host_id);
    return job;
  }

  /** What the agent sees in libvirt, applied to the service's view (see applyObserved). */
  async observed(
    principal: Principal,
    hostId: string,
    instanceId: string,
    body: unknown,
  ): Promise<InstanceRecord> {
    assertActsForHost(principal, hostId);
    const { state, reason } = parseBody(ObservedRequestSchema, body, 'observation');
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const instance = await this.deps.store.getInstance(instanceId);
      if (!instance || instance.host_id !== hostId || instance.stage === 'Inexistent')
        throw new NotFoundError(`No instance ${instanceId} on host ${hostId}`);
      const { next } = applyObserved(instance, state, reason ?? null, this.clock());
      try {
        await this.deps.store.updateInstance(instance, next);
        return next;
      } catch (error) {
        if (!(error instanceof StaleWriteError)) throw error;
        await backoff(attempt);
      }
    }
    throw new UnavailableError(`Instance ${instanceId} is changing too often; try again.`);
  }
}
