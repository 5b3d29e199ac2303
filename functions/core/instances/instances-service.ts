/**
 * Use cases of the instances API (projects) and of the hosts/jobs API (host agents), over the
 * InstanceStore port. Every change is a conditional write; when one loses a race it is
 * recomputed from fresh reads, so concurrent requests never overcommit a host or apply a job twice.
 * Lost races are retried by retryOnStale (core/kernel/retry.ts) until its time budget is spent,
 * then the request is answered 503 (UnavailableError): try again.
 */
import type { ImageRecord } from '../images/image.ts';
import {
  BadRequestError,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  StaleWriteError,
  UnavailableError,
} from '../kernel/errors.ts';
import { hasReaderRole, isHostAgent, makePrincipal, type Principal } from '../kernel/principal.ts';
import { retryOnStale, type StaleRetryOptions } from '../kernel/retry.ts';
import type { TaskTokenNotifier } from '../tasks/ports.ts';
import { assertActsForHost, assertManagesInstances, assertProjectCaller, canSeeInstance } from './access.ts';
import {
  applyJobOutcome,
  applyObserved,
  assertCanRequest,
  destroyOnLostHost,
  instanceImage,
  type JobOutcome,
  newInstance,
  referenceOf,
  requestAction,
} from './lifecycle.ts';
import { hostRefusal, type ImageRequirements, imageRequirements, place, silentSeconds } from './placement.ts';
import type { ImageLookup, InstanceStore, SnapshotImages } from './ports.ts';
import type { Action, HostRecord, InstanceRecord } from './records.ts';
import {
  type CreateInstanceRequest,
  CreateInstanceRequestSchema,
  HostRegistrationSchema,
  isImageId,
  parseBody,
  UpgradeRequestSchema,
} from './requests.ts';
import {
  assertGrants,
  assertSnapshottable,
  parseGrant,
  requestSnapshot,
  SnapshotRequestSchema,
  snapshotImageBody,
  verifySnapshot,
} from './snapshots.ts';
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
  type SnapshotJobSpec,
  type SnapshotUpload,
} from './work-queue.ts';

export interface InstancesDeps {
  store: InstanceStore;
  images: ImageLookup;
  hostTimeoutSeconds: number;
  newId: () => string;
  newToken: () => string;
  /** Images and references for snapshots (absent: snapshots are refused as unavailable). */
  snapshots?: SnapshotImages;
  /** How agents upload snapshots: 'put' where the API streams bodies, 'multipart' where it cannot. */
  snapshotUpload?: SnapshotUpload;
  /** Answers publish boot gates when their build ends (absent: nothing waits on builds). */
  gates?: TaskTokenNotifier;
  /**
   * Told the console a destroy job reported, once written: the last an instance ever shows (a
   * build keeps its build instance's, which ends after the build may have failed). Never rejects.
   */
  finalConsoles?: { destroyed(instanceId: string, consoleLog: string): Promise<void> };
  clock?: () => Date;
  /** The lost-race retries' budget and clock (core/kernel/retry.ts defaults; tests pass a virtual one). */
  retry?: Omit<StaleRetryOptions, 'exhausted'>;
}

const HOSTS_BUSY = 'Too many concurrent requests for the same hosts; try again.';
const busy = (what: string) => `${what} is changing too often; try again.`;

/** Runs `attempt` again on fresh reads while it loses races; then a 503 saying `message`. */
function retryLostRaces<T>(
  deps: InstancesDeps,
  message: string | (() => string),
  attempt: () => Promise<T>,
): Promise<T> {
  return retryOnStale(attempt, {
    ...deps.retry,
    exhausted: (error) =>
      new UnavailableError(typeof message === 'string' ? message : message(), { cause: error }),
  });
}

/** A create request, checked and with its image found: what placing it needs, read once. */
interface Placing {
  request: CreateInstanceRequest;
  image: ImageRecord;
  requirements: ImageRequirements;
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

function requireSnapshots(deps: InstancesDeps): SnapshotImages {
  if (!deps.snapshots) throw new UnavailableError('Snapshots are not available on this service.');
  return deps.snapshots;
}

/** A failed snapshot's image goes; a failure to remove it must not hide the snapshot's own outcome. */
async function discardQuietly(snapshots: SnapshotImages, imageId: string, reason: string): Promise<void> {
  await snapshots.discard(imageId, reason).catch(() => undefined);
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
    const placing = await this.prepare(principal, body);
    return retryLostRaces(this.deps, HOSTS_BUSY, () => this.placeOnce(principal, placing, {}));
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
    let placing: Placing | undefined;
    let lostOn = busy(`Instance ${gate.id}`);
    return retryLostRaces(
      this.deps,
      () => lostOn,
      async () => {
        const existing = await this.deps.store.getInstance(gate.id);
        if (!existing) {
          // Checked only when there is an instance to make, and once; a create that loses to
          // another one under the same id finds that one on the next read.
          placing ??= await this.prepare(principal, body);
          lostOn = HOSTS_BUSY;
          return this.placeOnce(principal, placing, gate);
        }
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
        lostOn = busy(`Instance ${gate.id}`);
        await this.deps.store.updateInstance(existing, next);
        return next;
      },
    );
  }

  /**
   * An instance under a given id (a build's: core/builds/), so a retried step finds the one it
   * made instead of making another.
   */
  async createNamed(principal: Principal, body: unknown, id: string): Promise<InstanceRecord> {
    let placing: Placing | undefined;
    return retryLostRaces(this.deps, HOSTS_BUSY, async () => {
      const existing = await this.deps.store.getInstance(id);
      if (existing) {
        if (existing.project !== principal.project) throw new ConflictError(`Instance ${id} exists.`);
        return existing;
      }
      placing ??= await this.prepare(principal, body);
      return this.placeOnce(principal, placing, { id });
    });
  }

  private async prepare(principal: Principal, body: unknown): Promise<Placing> {
    assertProjectCaller(principal);
    assertManagesInstances(principal, principal.project);
    const request = parseBody(CreateInstanceRequestSchema, body, 'instance');
    const image = await this.findImage(principal, request.image);
    return { request, image, requirements: imageRequirements(image, request) };
  }

  /**
   * Places the instance on fresh reads of the hosts and writes it with its build job; a
   * StaleWriteError when another create took the room (or the host re-registered) meanwhile.
   */
  private async placeOnce(
    principal: Principal,
    { request, image, requirements }: Placing,
    gate: { id?: string; gateToken?: string },
  ): Promise<InstanceRecord> {
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
    await this.deps.store.createInstance(instance, job, placement.host);
    return instance;
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
  async act(principal: Principal, id: string, action: Action, body?: unknown): Promise<InstanceRecord> {
    if (action === 'upgrade') return this.upgrade(principal, id, body);
    return retryLostRaces(this.deps, busy(`Instance ${id}`), async () => {
      const current = await this.show(principal, id);
      assertManagesInstances(principal, current.project);
      const now = this.clock();
      if (action === 'destroy' && current.stage !== 'Inexistent') {
        const host = await this.deps.store.getHost(current.host_id);
        if (host && silentSeconds(host, now) > this.deps.hostTimeoutSeconds)
          return this.destroyWithoutHost(current, host, now);
      }
      const jobId = this.deps.newId();
      const next = requestAction(current, action, jobId, now);
      const job = newJob({ id: jobId, kind: action, instance: current, now });
      await this.deps.store.updateInstance(current, next, job);
      return next;
    });
  }

  /**
   * Queues an upgrade: a new disk on `image` (default: where the instance's reference points
   * now), the current one kept as the previous disk. Refused (nothing changed) when the instance
   * cannot start an action now (409), follows no reference and names no image (400), names an
   * image the caller cannot see (400), one that cannot boot it (409/400), the image it already
   * runs (409), or when its host has no room for one more disk (409).
   */
  private async upgrade(principal: Principal, id: string, body: unknown): Promise<InstanceRecord> {
    const request = parseBody(UpgradeRequestSchema, body ?? {}, 'upgrade');
    return retryLostRaces(this.deps, busy(`Instance ${id}`), async () => {
      const current = await this.show(principal, id);
      assertManagesInstances(principal, current.project);
      assertCanRequest(current, 'upgrade');
      const followed = referenceOf(current);
      const requested = request.image ?? followed;
      if (requested === null)
        throw new BadRequestError(
          `Instance ${id} was created from image ID ${current.image_ref} and follows no reference: ` +
            'name the image to upgrade to ({"image": "name:tag" or an image ID}).',
        );
      const image = await this.findImage(principal, requested);
      const requirements = imageRequirements(image, current);
      if (image.id === current.image.id)
        throw new ConflictError(
          `Instance ${id} already runs image ${image.id}` +
            (isImageId(requested) ? '' : ` (where ${requested} points)`) +
            '; there is nothing to upgrade to.',
        );
      const now = this.clock();
      const host = await this.deps.store.getHost(current.host_id);
      if (!host) throw new ConflictError(`Host ${current.host_id} of instance ${id} is not registered.`);
      // The new disk is one more on the host until the job ends (then the older previous one goes).
      const refusal = hostRefusal(host, { vcpus: 0, ram_mb: 0, disk_gb: current.disk_gb }, requirements, {
        now,
        hostTimeoutSeconds: this.deps.hostTimeoutSeconds,
      });
      if (refusal !== null) throw new ConflictError(`Host ${host.id} cannot take the upgrade: ${refusal}`);
      const jobId = this.deps.newId();
      const next = requestAction(current, 'upgrade', jobId, now, {
        image: instanceImage(image),
        requested_as: requested,
        reference: isImageId(requested) ? followed : requested,
      });
      const job = newJob({ id: jobId, kind: 'upgrade', instance: current, now });
      await this.deps.store.updateInstance(current, next, job, host);
      return next;
    });
  }

  /**
   * Nova's "create image from server": checks the instance (409 unless Running, Sleep or Shutoff
   * with no job pending) and the reference before anything is made, then creates the image
   * (queued, in the instance's project, with provenance) and queues the `snapshot` job. When the
   * job cannot be queued the image is discarded again.
   */
  async snapshot(
    principal: Principal,
    id: string,
    body: unknown,
  ): Promise<{ instance: InstanceRecord; image: ImageRecord }> {
    const snapshots = requireSnapshots(this.deps);
    const request = parseBody(SnapshotRequestSchema, body, 'snapshot');
    const current = await this.show(principal, id);
    assertManagesInstances(principal, current.project);
    assertSnapshottable(current);
    const reference = request.reference
      ? { text: request.reference, ...(await snapshots.referenceTarget(principal, request.reference)) }
      : null;
    const image = await snapshots.create(
      principal,
      snapshotImageBody(current, request, principal.project !== current.project),
    );
    const spec: SnapshotJobSpec = {
      image_id: image.id,
      upload_grant: this.deps.newToken(),
      upload: this.deps.snapshotUpload ?? 'put',
      reference: reference && {
        text: reference.text,
        namespace: reference.namespace,
        expect: reference.current,
      },
      requested_by: { project: principal.project, user: principal.user, roles: [...principal.roles] },
    };
    try {
      const instance = await retryLostRaces(this.deps, busy(`Instance ${id}`), async () => {
        const fresh = await this.show(principal, id);
        const now = this.clock();
        const jobId = this.deps.newId();
        const next = requestSnapshot(fresh, jobId, now);
        const job = newJob({ id: jobId, kind: 'snapshot', instance: fresh, now, snapshot: spec });
        await this.deps.store.updateInstance(fresh, next, job);
        return next;
      });
      return { instance, image };
    } catch (error) {
      await discardQuietly(snapshots, image.id, `the snapshot job could not be queued: ${String(error)}`);
      throw error;
    }
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
    await this.deps.store.destroyWithoutHost({ previous: current, next }, job);
    if (open?.snapshot && this.deps.snapshots)
      await discardQuietly(this.deps.snapshots, open.snapshot.image_id, next.last_error ?? 'host lost');
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
    return retryLostRaces(this.deps, busy(`Job ${jobId}`), async () => {
      const job = await this.ownJob(principal, jobId);
      const next = renewLease(job, lease_token, this.clock());
      await this.deps.store.updateJob(job, next);
      return next;
    });
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
    const outcome: JobOutcome =
      input.outcome === 'done' ? { ok: true, result: input.result } : { ok: false, reason: input.reason };
    // A lost race means the instance or the job moved meanwhile (a reconcile report, a repeat of
    // this very request): both are read again, and a repeat then finds the job finished and stops.
    let refused: string | null = null;
    await retryLostRaces(this.deps, busy(`Job ${jobId}`), async () => {
      refused = null;
      const job = await this.ownJob(principal, jobId);
      let next = finish(job, token, input, this.clock());
      if (next === 'repeat') return;
      let applied = outcome;
      // A snapshot is done only if the service holds what the agent sent: the image active, with
      // the sha512 and md5 the agent computed. Otherwise the job fails (and its image goes).
      if (job.kind === 'snapshot' && job.snapshot && input.outcome === 'done') {
        const why = verifySnapshot(
          await requireSnapshots(this.deps).get(job.snapshot.image_id),
          input.result,
        );
        if (why) {
          refused = `the service refused the snapshot: ${why}`;
          next = finish(job, token, { outcome: 'failed', reason: refused }, this.clock());
          if (next === 'repeat') return;
          applied = { ok: false, reason: refused };
        }
      }
      await this.applyFinish(job, next, applied);
    });
    if (refused) throw new ConflictError(refused);
  }

  /**
   * 403 unless the job-scoped grant (`<job id>.<secret>`, handed out with a snapshot job's claim)
   * lets this host token upload `imageId` now. A host token writes no image data without one.
   */
  async authorizeUpload(principal: Principal, imageId: string, grantText: string): Promise<void> {
    if (!isHostAgent(principal))
      throw new ForbiddenError('Upload grants are for host agents (tokens with the host role).');
    const grant = parseGrant(grantText);
    assertGrants(await this.deps.store.getJob(grant.jobId), grant, principal.user, imageId);
  }

  private async applyFinish(job: JobRecord, next: JobRecord, outcome: JobOutcome): Promise<void> {
    const instance = await this.deps.store.getInstance(job.instance_id);
    const changed = instance ? applyJobOutcome(instance, job, outcome, this.clock()) : null;
    await this.deps.store.finishJob(
      { previous: job, next },
      instance && changed ? { previous: instance, next: changed } : undefined,
    );
    // After the write, so a gate hears only of an outcome that was applied (once: a repeated
    // report stops at `finish` as a repeat). A lost answer ends in the gate's own timeout.
    if (changed && job.kind === 'build' && changed.gate_token)
      await answerGate(this.deps.gates, changed.gate_token, changed, outcome);
    if (changed && job.kind === 'destroy' && changed.console_log && this.deps.finalConsoles)
      await this.deps.finalConsoles.destroyed(changed.id, changed.console_log);
    if (job.kind === 'snapshot' && job.snapshot) await this.settleSnapshot(job.snapshot, outcome, changed);
  }

  /**
   * After a snapshot job's outcome is written: a failure discards the image (no blob left behind);
   * a success moves the reference, as the one who asked. A move that loses (the reference moved
   * meanwhile) leaves the snapshot active and says so in the instance's last_error.
   */
  private async settleSnapshot(
    spec: SnapshotJobSpec,
    outcome: JobOutcome,
    instance: InstanceRecord | null,
  ): Promise<void> {
    const snapshots = requireSnapshots(this.deps);
    if (!outcome.ok) {
      await discardQuietly(snapshots, spec.image_id, outcome.reason);
      return;
    }
    if (!spec.reference) return;
    const by = makePrincipal(spec.requested_by.project, spec.requested_by.user, spec.requested_by.roles);
    try {
      await snapshots.moveReference(by, spec.reference.text, {
        image_id: spec.image_id,
        expect: spec.reference.expect,
        namespace: spec.reference.namespace,
      });
    } catch (error) {
      if (!instance) return;
      const note = `snapshot ${spec.image_id} is active, but reference ${spec.reference.text} was not moved: ${
        error instanceof Error ? error.message : String(error)
      }`;
      await retryLostRaces(this.deps, busy(`Instance ${instance.id}`), async () => {
        const fresh = await this.deps.store.getInstance(instance.id);
        if (!fresh) return;
        await this.deps.store.updateInstance(fresh, {
          ...fresh,
          last_error: note.slice(0, 4000),
          version: fresh.version + 1,
        });
      }).catch(() => undefined);
    }
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
    return retryLostRaces(this.deps, busy(`Instance ${instanceId}`), async () => {
      const instance = await this.deps.store.getInstance(instanceId);
      if (!instance || instance.host_id !== hostId || instance.stage === 'Inexistent')
        throw new NotFoundError(`No instance ${instanceId} on host ${hostId}`);
      const { next } = applyObserved(instance, state, reason ?? null, this.clock());
      await this.deps.store.updateInstance(instance, next);
      return next;
    });
  }
}
