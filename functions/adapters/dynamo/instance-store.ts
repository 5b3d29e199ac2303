/**
 * The instances service's one port (InstanceStore) over the three repositories of its aggregates
 * (instances, jobs, hosts), plus the writes that change several of them in one transaction:
 *
 * - Creating an instance writes the instance, its listing row, its build job, the pointers (host,
 *   image) and raises the host's use under a condition that it stays within the capacity the
 *   placement saw. Concurrent creates can therefore never overcommit a host: a loser gets
 *   StaleWriteError and places again.
 * - Finishing a job writes the job (version-checked, so only once) and the instance's new stage
 *   in one transaction; a destroy also gives the host its capacity back and drops the pointers.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { type Demand, demandChange, demandOf } from '#core/instances/placement';
import type { Change, InstanceListSpec, InstanceStore } from '#core/instances/ports';
import type { HostRecord, HostRegistration, InstanceRecord } from '#core/instances/records';
import type { JobRecord } from '#core/instances/work-queue';
import { DynamoHostRepository, releaseCapacity, reserveCapacity } from './host-repository.ts';
import {
  DynamoInstanceRepository,
  imageUseChangeItems,
  instanceCreateItems,
  instancePut,
  instanceReleaseItems,
} from './instance-repository.ts';
import { DynamoJobRepository, jobCreate, jobPut } from './job-repository.ts';
import { type TransactItem, versionedWrite } from './transact.ts';

/** The change if any part of it is positive, negative parts as zero; null when nothing grows. */
function positive(change: Demand): Demand | null {
  const grown = {
    vcpus: Math.max(0, change.vcpus),
    ram_mb: Math.max(0, change.ram_mb),
    disk_gb: Math.max(0, change.disk_gb),
  };
  return grown.vcpus || grown.ram_mb || grown.disk_gb ? grown : null;
}

export class DynamoInstanceStore implements InstanceStore {
  readonly instances: DynamoInstanceRepository;
  readonly jobs: DynamoJobRepository;
  readonly hosts: DynamoHostRepository;

  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {
    this.instances = new DynamoInstanceRepository(client, table);
    this.jobs = new DynamoJobRepository(client, table);
    this.hosts = new DynamoHostRepository(client, table);
  }

  getInstance(id: string): Promise<InstanceRecord | null> {
    return this.instances.getInstance(id);
  }

  listInstances(spec: InstanceListSpec): Promise<InstanceRecord[]> {
    return this.instances.listInstances(spec);
  }

  listHostInstances(hostId: string): Promise<InstanceRecord[]> {
    return this.instances.listHostInstances(hostId);
  }

  imagesInUse(imageIds: readonly string[]): Promise<Set<string>> {
    return this.instances.imagesInUse(imageIds);
  }

  getJob(id: string): Promise<JobRecord | null> {
    return this.jobs.getJob(id);
  }

  queue(hostId: string, limit: number): Promise<JobRecord[]> {
    return this.jobs.queue(hostId, limit);
  }

  claimJob(previous: JobRecord, next: JobRecord, now: Date): Promise<void> {
    return this.jobs.claimJob(previous, next, now);
  }

  updateJob(previous: JobRecord, next: JobRecord): Promise<void> {
    return this.jobs.updateJob(previous, next);
  }

  getHost(id: string): Promise<HostRecord | null> {
    return this.hosts.getHost(id);
  }

  listHosts(): Promise<HostRecord[]> {
    return this.hosts.listHosts();
  }

  putHost(id: string, registration: HostRegistration, now: Date): Promise<HostRecord> {
    return this.hosts.putHost(id, registration, now);
  }

  heartbeatHost(id: string, now: Date): Promise<boolean> {
    return this.hosts.heartbeatHost(id, now);
  }

  async createInstance(instance: InstanceRecord, job: JobRecord, host: HostRecord): Promise<void> {
    await versionedWrite(
      this.client,
      [
        ...instanceCreateItems(this.table, instance),
        reserveCapacity(this.table, host, instance),
        jobCreate(this.table, job),
      ],
      `Host ${host.id} was changed by another request`,
    );
  }

  async updateInstance(
    previous: InstanceRecord,
    next: InstanceRecord,
    job?: JobRecord,
    host?: HostRecord,
  ): Promise<void> {
    if (!job && !host) return this.instances.updateInstance(previous, next);
    const items: TransactItem[] = [instancePut(this.table, previous, next)];
    if (job) items.push(jobCreate(this.table, job));
    const more = positive(demandChange(previous, next));
    if (host && more) items.push(reserveCapacity(this.table, host, more));
    await versionedWrite(this.client, items, `Instance ${next.id} was changed by another request`);
  }

  async finishJob(job: Change<JobRecord>, instance?: Change<InstanceRecord>): Promise<void> {
    const items: TransactItem[] = [jobPut(this.table, job.previous, job.next)];
    if (instance) {
      const { previous, next } = instance;
      items.push(instancePut(this.table, previous, next));
      if (next.stage === 'Inexistent' && previous.stage !== 'Inexistent')
        items.push(...instanceReleaseItems(this.table, next));
      else items.push(...imageUseChangeItems(this.table, previous, next));
      const less = positive(demandChange(next, previous));
      if (less) items.push(releaseCapacity(this.table, next.host_id, less));
    }
    await versionedWrite(this.client, items, `Job ${job.next.id} was changed by another request`);
  }

  async destroyWithoutHost(instance: Change<InstanceRecord>, job?: Change<JobRecord>): Promise<void> {
    const items: TransactItem[] = [
      instancePut(this.table, instance.previous, instance.next),
      ...instanceReleaseItems(this.table, instance.next),
      releaseCapacity(this.table, instance.next.host_id, demandOf(instance.previous)),
    ];
    if (job) items.push(jobPut(this.table, job.previous, job.next));
    await versionedWrite(this.client, items, `Instance ${instance.next.id} was changed by another request`);
  }
}
