/**
 * An InstanceStore that tells the host of every job it enqueues (JobNotifier), after the write that
 * enqueues it has committed: an agent told earlier could claim before the job exists and find
 * nothing. Every enqueue goes through createInstance (the build job) or updateInstance with a job
 * (actions, destroy), so wrapping the store covers them all, whichever service method wrote.
 */
import type { Change, InstanceListSpec, InstanceStore, JobNotifier } from './ports.ts';
import type { HostRecord, HostRegistration, InstanceRecord } from './records.ts';
import type { JobRecord } from './work-queue.ts';

export class NotifyingInstanceStore implements InstanceStore {
  constructor(
    private readonly store: InstanceStore,
    private readonly notifier: JobNotifier,
  ) {}

  async createInstance(instance: InstanceRecord, job: JobRecord, host: HostRecord): Promise<void> {
    await this.store.createInstance(instance, job, host);
    await this.notifier.jobsQueued(job.host_id);
  }

  async updateInstance(
    previous: InstanceRecord,
    next: InstanceRecord,
    job?: JobRecord,
    host?: HostRecord,
  ): Promise<void> {
    await this.store.updateInstance(previous, next, job, host);
    if (job) await this.notifier.jobsQueued(job.host_id);
  }

  getInstance(id: string): Promise<InstanceRecord | null> {
    return this.store.getInstance(id);
  }

  listInstances(spec: InstanceListSpec): Promise<InstanceRecord[]> {
    return this.store.listInstances(spec);
  }

  listHostInstances(hostId: string): Promise<InstanceRecord[]> {
    return this.store.listHostInstances(hostId);
  }

  getJob(id: string): Promise<JobRecord | null> {
    return this.store.getJob(id);
  }

  queue(hostId: string, limit: number): Promise<JobRecord[]> {
    return this.store.queue(hostId, limit);
  }

  claimJob(previous: JobRecord, next: JobRecord, now: Date): Promise<void> {
    return this.store.claimJob(previous, next, now);
  }

  updateJob(previous: JobRecord, next: JobRecord): Promise<void> {
    return this.store.updateJob(previous, next);
  }

  finishJob(job: Change<JobRecord>, instance?: Change<InstanceRecord>): Promise<void> {
    return this.store.finishJob(job, instance);
  }

  getHost(id: string): Promise<HostRecord | null> {
    return this.store.getHost(id);
  }

  listHosts(): Promise<HostRecord[]> {
    return this.store.listHosts();
  }

  putHost(id: string, registration: HostRegistration, now: Date): Promise<HostRecord> {
    return this.store.putHost(id, registration, now);
  }

  heartbeatHost(id: string, now: Date): Promise<boolean> {
    return this.store.heartbeatHost(id, now);
  }

  destroyWithoutHost(instance: Change<InstanceRecord>, job?: Change<JobRecord>): Promise<void> {
    return this.store.destroyWithoutHost(instance, job);
  }

  imagesInUse(imageIds: readonly string[]): Promise<Set<string>> {
    return this.store.imagesInUse(imageIds);
  }
}
