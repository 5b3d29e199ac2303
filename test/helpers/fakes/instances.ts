/**
 * In-memory fakes of the instances ports (InstanceStore and ImageLookup in
 * core/instances/ports.ts, TaskTokenNotifier in core/tasks/ports.ts). The store keeps
 * the DynamoDB adapter's conditions (functions/adapters/dynamo/instance-repository.ts): versions,
 * the host's room and capacity on create, claimable-at-now on claim, capacity released when an
 * instance ends Inexistent. failWrites(method, n) makes the next n calls of a write method throw
 * StaleWriteError and change nothing (a TransactionConflict), interfere() lets another writer land first.
 */
import type { ImageRecord } from '#core/images/image';
import { demandChange } from '#core/instances/placement';
import type { Change, ImageLookup, InstanceListSpec, InstanceStore } from '#core/instances/ports';
import type { HostRecord, HostRegistration, InstanceRecord } from '#core/instances/records';
import { isClaimable, type JobRecord } from '#core/instances/work-queue';
import { NotFoundError, StaleWriteError } from '#core/kernel/errors';
import type { Principal } from '#core/kernel/principal';
import type { TaskTokenNotifier } from '#core/tasks/ports';

const clone = <T>(value: T): T => structuredClone(value);

export type WriteMethod =
  | 'createInstance'
  | 'updateInstance'
  | 'claimJob'
  | 'updateJob'
  | 'finishJob'
  | 'destroyWithoutHost';

export class FakeInstanceStore implements InstanceStore {
  readonly instances = new Map<string, InstanceRecord>();
  readonly jobs = new Map<string, JobRecord>();
  readonly hosts = new Map<string, HostRecord>();
  /** Calls of each write method (landed or not). */
  readonly attempts: Record<WriteMethod, number> = {
    createInstance: 0,
    updateInstance: 0,
    claimJob: 0,
    updateJob: 0,
    finishJob: 0,
    destroyWithoutHost: 0,
  };
  private readonly failing = new Map<WriteMethod, number>();
  private readonly interference = new Map<WriteMethod, () => void>();

  /** The next `count` calls of `method` throw StaleWriteError (Infinity: every one). */
  failWrites(method: WriteMethod, count: number): void {
    this.failing.set(method, count);
  }

  /** Before the next call of `method`, `change` (another writer) runs against the store. */
  interfere(method: WriteMethod, change: (store: this) => void): void {
    this.interference.set(method, () => change(this));
  }

  private before(method: WriteMethod): void {
    this.attempts[method] += 1;
    const left = this.failing.get(method) ?? 0;
    if (left > 0) {
      this.failing.set(method, left - 1);
      throw new StaleWriteError(`${method}: transaction conflict (injected)`);
    }
    const change = this.interference.get(method);
    this.interference.delete(method);
    change?.();
  }

  instance(id: string): InstanceRecord {
    const found = this.instances.get(id);
    if (!found) throw new Error(`no instance ${id} in the fake store`);
    return clone(found);
  }

  job(id: string): JobRecord {
    const found = this.jobs.get(id);
    if (!found) throw new Error(`no job ${id} in the fake store`);
    return clone(found);
  }

  host(id: string): HostRecord {
    const found = this.hosts.get(id);
    if (!found) throw new Error(`no host ${id} in the fake store`);
    return clone(found);
  }

  private checkInstance(previous: InstanceRecord, next: InstanceRecord): void {
    if (this.instances.get(next.id)?.version !== previous.version || next.version !== previous.version + 1)
      throw new StaleWriteError(`Instance ${next.id} was changed by another request`);
  }

  private checkJob(previous: JobRecord, next: JobRecord): void {
    if (this.jobs.get(next.id)?.version !== previous.version)
      throw new StaleWriteError(`Job ${next.id} was changed by another request`);
  }

  /** Moves the host's use by what `next` holds of it more (or less) than `previous` (demandOf). */
  private adjust(previous: InstanceRecord, next: InstanceRecord): void {
    const host = this.hosts.get(next.host_id);
    if (!host) return;
    const change = demandChange(previous, next);
    host.used_vcpus += change.vcpus;
    host.used_ram_mb += change.ram_mb;
    host.used_disk_gb += change.disk_gb;
  }

  async getInstance(id: string): Promise<InstanceRecord | null> {
    const found = this.instances.get(id);
    return found ? clone(found) : null;
  }

  async listInstances(spec: InstanceListSpec): Promise<InstanceRecord[]> {
    const newestFirst = (a: InstanceRecord, b: InstanceRecord) =>
      b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id);
    const marker = spec.marker;
    return [...this.instances.values()]
      .filter((i) => spec.project === undefined || i.project === spec.project)
      .sort(newestFirst)
      .filter((i) => !marker || newestFirst(marker, i) < 0)
      .slice(0, Math.max(0, spec.limit))
      .map(clone);
  }

  async listHostInstances(hostId: string): Promise<InstanceRecord[]> {
    return [...this.instances.values()]
      .filter((i) => i.host_id === hostId && i.stage !== 'Inexistent')
      .map(clone);
  }

  async createInstance(instance: InstanceRecord, job: JobRecord, host: HostRecord): Promise<void> {
    this.before('createInstance');
    const stored = this.hosts.get(host.id);
    const sameCapacity =
      stored &&
      (
        ['vcpus', 'ram_mb', 'disk_gb', 'architecture', 'hypervisor_type', 'hypervisor_version'] as const
      ).every((key) => stored[key] === host[key]);
    if (
      !stored ||
      !sameCapacity ||
      this.instances.has(instance.id) ||
      stored.used_vcpus + instance.vcpus > stored.vcpus ||
      stored.used_ram_mb + instance.ram_mb > stored.ram_mb ||
      stored.used_disk_gb + instance.disk_gb > stored.disk_gb
    )
      throw new StaleWriteError(`Host ${host.id} no longer has room`);
    stored.used_vcpus += instance.vcpus;
    stored.used_ram_mb += instance.ram_mb;
    stored.used_disk_gb += instance.disk_gb;
    this.instances.set(instance.id, clone(instance));
    this.jobs.set(job.id, clone(job));
  }

  async updateInstance(
    previous: InstanceRecord,
    next: InstanceRecord,
    job?: JobRecord,
    host?: HostRecord,
  ): Promise<void> {
    this.before('updateInstance');
    this.checkInstance(previous, next);
    if (job && this.jobs.has(job.id)) throw new StaleWriteError(`Job ${job.id} exists`);
    if (host) {
      const stored = this.hosts.get(host.id);
      const more = demandChange(previous, next);
      if (!stored || stored.used_disk_gb + Math.max(0, more.disk_gb) > stored.disk_gb)
        throw new StaleWriteError(`Host ${host.id} no longer has room`);
      this.adjust(previous, next);
    }
    this.instances.set(next.id, clone(next));
    if (job) this.jobs.set(job.id, clone(job));
  }

  async getJob(id: string): Promise<JobRecord | null> {
    const found = this.jobs.get(id);
    return found ? clone(found) : null;
  }

  async queue(hostId: string, limit: number): Promise<JobRecord[]> {
    return [...this.jobs.values()]
      .filter((job) => job.host_id === hostId && (job.status === 'pending' || job.status === 'claimed'))
      .sort((a, b) => a.enqueued_at.localeCompare(b.enqueued_at))
      .slice(0, limit)
      .map(clone);
  }

  async claimJob(previous: JobRecord, next: JobRecord, now: Date): Promise<void> {
    this.before('claimJob');
    this.checkJob(previous, next);
    if (!isClaimable(this.jobs.get(next.id) as JobRecord, now))
      throw new StaleWriteError(`Job ${next.id} was claimed by another request`);
    this.jobs.set(next.id, clone(next));
  }

  async updateJob(previous: JobRecord, next: JobRecord): Promise<void> {
    this.before('updateJob');
    this.checkJob(previous, next);
    this.jobs.set(next.id, clone(next));
  }

  async finishJob(job: Change<JobRecord>, instance?: Change<InstanceRecord>): Promise<void> {
    this.before('finishJob');
    this.checkJob(job.previous, job.next);
    if (instance) this.checkInstance(instance.previous, instance.next);
    this.jobs.set(job.next.id, clone(job.next));
    if (instance) {
      this.instances.set(instance.next.id, clone(instance.next));
      // Only what shrinks goes back here (as in the DynamoDB store): growth is reserved on request.
      const change = demandChange(instance.previous, instance.next);
      if (change.vcpus < 0 || change.ram_mb < 0 || change.disk_gb < 0)
        this.adjust(instance.previous, instance.next);
    }
  }

  async getHost(id: string): Promise<HostRecord | null> {
    const found = this.hosts.get(id);
    return found ? clone(found) : null;
  }

  async listHosts(): Promise<HostRecord[]> {
    return [...this.hosts.values()].map(clone);
  }

  async putHost(id: string, registration: HostRegistration, now: Date): Promise<HostRecord> {
    const at = now.toISOString();
    const stored = this.hosts.get(id);
    const host: HostRecord = {
      id,
      ...registration,
      used_vcpus: stored?.used_vcpus ?? 0,
      used_ram_mb: stored?.used_ram_mb ?? 0,
      used_disk_gb: stored?.used_disk_gb ?? 0,
      registered_at: stored?.registered_at ?? at,
      updated_at: at,
      heartbeat_at: at,
    };
    this.hosts.set(id, host);
    return clone(host);
  }

  async heartbeatHost(id: string, now: Date): Promise<boolean> {
    const stored = this.hosts.get(id);
    if (!stored) return false;
    stored.heartbeat_at = now.toISOString();
    return true;
  }

  async destroyWithoutHost(instance: Change<InstanceRecord>, job?: Change<JobRecord>): Promise<void> {
    this.before('destroyWithoutHost');
    this.checkInstance(instance.previous, instance.next);
    if (job) this.checkJob(job.previous, job.next);
    this.instances.set(instance.next.id, clone(instance.next));
    this.adjust(instance.previous, instance.next);
    if (job) this.jobs.set(job.next.id, clone(job.next));
  }

  async imagesInUse(imageIds: readonly string[]): Promise<Set<string>> {
    const live = [...this.instances.values()].filter((i) => i.stage !== 'Inexistent');
    return new Set(
      imageIds.filter((id) => live.some((i) => i.image.id === id || i.previous_image?.id === id)),
    );
  }
}

/** Images by id, references by `name:tag`; visibility is the test's business (it stores what may be seen). */
export class FakeImageLookup implements ImageLookup {
  readonly images = new Map<string, ImageRecord>();
  readonly references = new Map<string, string>();

  constructor(...images: ImageRecord[]) {
    for (const image of images) this.images.set(image.id, image);
  }

  async show(_principal: Principal, id: string): Promise<ImageRecord> {
    const found = this.images.get(id);
    if (!found) throw new NotFoundError(`No image found with ID ${id}`);
    return clone(found);
  }

  async resolve(principal: Principal, reference: string): Promise<ImageRecord> {
    const id = this.references.get(reference);
    if (!id) throw new NotFoundError(`Reference ${reference} not found.`);
    return this.show(principal, id);
  }
}

/** Records the answers given to waiting Step Functions tasks. */
export class FakeTaskTokenNotifier implements TaskTokenNotifier {
  readonly answers: Array<
    | { token: string; ok: true; output: Record<string, unknown> }
    | { token: string; ok: false; error: string; cause: string }
  > = [];

  async succeed(token: string, output: Record<string, unknown>): Promise<void> {
    this.answers.push({ token, ok: true, output });
  }

  async fail(token: string, error: string, cause: string): Promise<void> {
    this.answers.push({ token, ok: false, error, cause });
  }
}
