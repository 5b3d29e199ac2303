/**
 * Instances, hosts and the per-host job queue in the single table (layout in keys.ts).
 *
 * - Creating an instance is one transaction: the instance, its listing row, its build job, the
 *   pointers (host, image) and the host's use, raised under a condition that it stays within the
 *   capacity the placement saw. Concurrent creates can therefore never overcommit a host: a loser
 *   gets StaleWriteError and places again.
 * - A job sits in the by_kind index under its host's queue (kind_pk=HOSTQ#<host>) while it is
 *   pending or claimed; a claim is a Put conditioned on the version read *and* on the job being
 *   pending or its lease expired, so of several claimers exactly one wins.
 * - Finishing a job writes the job (version-checked, so only once) and the instance's new stage in
 *   one transaction; a destroy also gives the host its capacity back and drops the pointers.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import {
  DESTROYED_RETENTION_HOURS,
  type HostRecord,
  type HostRegistration,
  type InstanceRecord,
  JOB_KINDS,
  OBSERVED_STATES,
  STAGES,
} from '#core/instances/instances';
import type { InstanceListSpec, InstanceStore } from '#core/instances/instances-service';
import {
  expirationEpoch,
  JOB_RETENTION_HOURS,
  JOB_STATUSES,
  type JobRecord,
} from '#core/instances/work-queue';
import { StaleWriteError } from '#core/kernel/errors';
import { isUuid } from '#core/kernel/ids';
import { dynamo } from '../aws-clients.ts';
import { isLostRace } from './errors.ts';
import {
  HOST_INSTANCE_PREFIX,
  HOST_KIND_ALL,
  hostInstanceKey,
  hostKey,
  hostQueueKind,
  hostQueueSort,
  INSTANCE_KIND_ALL,
  imageUseKey,
  instanceKey,
  instanceKindSort,
  instanceListRowKey,
  instanceProjectKind,
  jobKey,
  keyFits,
} from './keys.ts';

const StoredInstanceSchema = z.object({
  id: z.string(),
  name: z.string(),
  hostname: z.string(),
  project: z.string(),
  user_id: z.string(),
  image_ref: z.string(),
  image: z.object({
    id: z.string(),
    name: z.string().nullable(),
    disk_format: z.string(),
    size: z.number().nullable(),
    os_hash_algo: z.literal('sha512'),
    os_hash_value: z.string(),
  }),
  vcpus: z.number().int(),
  ram_mb: z.number().int(),
  disk_gb: z.number().int(),
  user_data: z.string().nullable(),
  host_id: z.string(),
  stage: z.enum(STAGES),
  reason: z.string().nullable(),
  last_error: z.string().nullable(),
  pending_job: z.object({ id: z.string(), kind: z.enum(JOB_KINDS) }).nullable(),
  domain_uuid: z.string().nullable(),
  console_log: z.string().nullable(),
  observed: z
    .object({ state: z.enum(OBSERVED_STATES), reason: z.string().nullable(), at: z.string() })
    .nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  destroyed_at: z.string().nullable(),
  // Added with publishing's boot gate: older records have neither.
  boot_check: z.object({ marker: z.string(), timeout_seconds: z.number().int() }).nullish(),
  gate_token: z.string().nullish(),
  version: z.number().int(),
});

const StoredJobSchema = z.object({
  id: z.string(),
  kind: z.enum(JOB_KINDS),
  instance_id: z.string(),
  host_id: z.string(),
  status: z.enum(JOB_STATUSES),
  attempt: z.number().int(),
  lease_token: z.string().nullable(),
  lease_seconds: z.number().int().nullable(),
  lease_expires_at: z.string().nullable(),
  enqueued_at: z.string(),
  claimed_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  reason: z.string().nullable(),
  result: z.object({ console_log: z.string().optional(), domain_uuid: z.string().optional() }).nullable(),
  version: z.number().int(),
});

// Hosts are stored attribute by attribute: the capacity condition of a create compares them.
const StoredHostSchema = z.object({
  id: z.string(),
  vcpus: z.number().int(),
  ram_mb: z.number().int(),
  disk_gb: z.number().int(),
  architecture: z.string(),
  hypervisor_type: z.enum(['qemu', 'kvm']),
  hypervisor_version: z.number().int(),
  used_vcpus: z.number().int(),
  used_ram_mb: z.number().int(),
  used_disk_gb: z.number().int(),
  registered_at: z.string(),
  updated_at: z.string(),
  heartbeat_at: z.string(),
});

function destroyedExpiration(instance: InstanceRecord): number | undefined {
  if (instance.stage !== 'Inexistent') return undefined;
  return expirationEpoch(instance.destroyed_at ?? instance.updated_at, DESTROYED_RETENTION_HOURS);
}

/** JSON text, as for images and tasks: nested nulls survive every SDK version alike. */
function instanceItem(instance: InstanceRecord): Record<string, unknown> {
  return {
    ...instanceKey(instance.id),
    kind_pk: instanceProjectKind(instance.project),
    kind_sk: instanceKindSort(instance.created_at, instance.id),
    data: JSON.stringify(instance),
    version: instance.version,
    expiration: destroyedExpiration(instance),
  };
}

function listRowItem(instance: InstanceRecord): Record<string, unknown> {
  return {
    ...instanceListRowKey(instance.id),
    kind_pk: INSTANCE_KIND_ALL,
    kind_sk: instanceKindSort(instance.created_at, instance.id),
    instance_id: instance.id,
    expiration: destroyedExpiration(instance),
  };
}

/** Open jobs are in their host's queue (by_kind); finished ones leave it and expire. */
function jobItem(job: JobRecord): Record<string, unknown> {
  const open = job.status === 'pending' || job.status === 'claimed';
  return {
    ...jobKey(job.id),
    ...(open
      ? { kind_pk: hostQueueKind(job.host_id), kind_sk: hostQueueSort(job.enqueued_at, job.id) }
      : { expiration: expirationEpoch(job.finished_at ?? job.enqueued_at, JOB_RETENTION_HOURS) }),
    data: JSON.stringify(job),
    version: job.version,
    status: job.status,
    lease_expires_ms: job.lease_expires_at === null ? 0 : Date.parse(job.lease_expires_at),
  };
}

const parseInstance = (item: Record<string, unknown>) =>
  StoredInstanceSchema.parse(JSON.parse(String(item.data))) as InstanceRecord;
const parseJob = (item: Record<string, unknown>) =>
  StoredJobSchema.parse(JSON.parse(String(item.data))) as JobRecord;
const parseHost = (item: Record<string, unknown>) => StoredHostSchema.parse(item) as HostRecord;

type TransactItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

export class DynamoInstanceRepository implements InstanceStore {
  constructor(private readonly table: string) {}

  private async get(key: Record<string, string>): Promise<Record<string, unknown> | undefined> {
    const out = await dynamo().send(
      new GetCommand({ TableName: this.table, Key: key, ConsistentRead: true }),
    );
    return out.Item;
  }

  private async transact(items: TransactItem[], what: string): Promise<void> {
    try {
      await dynamo().send(new TransactWriteCommand({ TransactItems: items }));
    } catch (error) {
      if (isLostRace(error)) throw new StaleWriteError(`${what} was changed by another request`);
      throw error;
    }
  }

  /** Consistent reads of many items by key, in the order of `keys` (missing ones left out). */
  private async batchGet(keys: Array<{ pk: string; sk: string }>): Promise<Array<Record<string, unknown>>> {
    const found = new Map<string, Record<string, unknown>>();
    for (let i = 0; i < keys.length; i += 100) {
      let pending: Array<Record<string, unknown>> = keys.slice(i, i + 100);
      // BatchGet may hand keys back unprocessed under load: ask again for those.
      for (let attempt = 0; pending.length > 0 && attempt < 10; attempt++) {
        const out = await dynamo().send(
          new BatchGetCommand({ RequestItems: { [this.table]: { Keys: pending, ConsistentRead: true } } }),
        );
        for (const item of out.Responses?.[this.table] ?? []) found.set(`${item.pk}\n${item.sk}`, item);
        pending = out.UnprocessedKeys?.[this.table]?.Keys ?? [];
      }
    }
    return keys.flatMap((key) => {
      const item = found.get(`${key.pk}\n${key.sk}`);
      return item ? [item] : [];
    });
  }

  async getInstance(id: string): Promise<InstanceRecord | null> {
    if (!isUuid(id)) return null;
    const item = await this.get(instanceKey(id));
    return item ? parseInstance(item) : null;
  }

  async listInstances(spec: InstanceListSpec): Promise<InstanceRecord[]> {
    if (spec.limit <= 0) return [];
    const kind = spec.project === undefined ? INSTANCE_KIND_ALL : instanceProjectKind(spec.project);
    const bound = spec.marker ? instanceKindSort(spec.marker.created_at, spec.marker.id) : undefined;
    const ids: string[] = [];
    let exclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const out = await dynamo().send(
        new QueryCommand({
          TableName: this.table,
          IndexName: 'by_kind',
          KeyConditionExpression: bound ? 'kind_pk = :kind AND kind_sk < :bound' : 'kind_pk = :kind',
          ExpressionAttributeValues: bound ? { ':kind': kind, ':bound': bound } : { ':kind': kind },
          ScanIndexForward: false,
          Limit: spec.limit - ids.length,
          ExclusiveStartKey: exclusiveStartKey,
        }),
      );
      // Both the records (a project's) and the listing rows (all) are keyed INST#<id>.
      for (const item of out.Items ?? []) ids.push(String(item.pk).slice(instanceKey('').pk.length));
      exclusiveStartKey = out.LastEvaluatedKey;
    } while (exclusiveStartKey && ids.length < spec.limit);
    // The index only finds them; the records are read consistently from the table.
    return (await this.batchGet(ids.map(instanceKey))).map(parseInstance);
  }

  async listHostInstances(hostId: string): Promise<InstanceRecord[]> {
    const ids: string[] = [];
    if (!keyFits(hostKey(hostId))) return [];
    let exclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const out = await dynamo().send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: { ':pk': hostKey(hostId).pk, ':prefix': HOST_INSTANCE_PREFIX },
          ConsistentRead: true,
          ExclusiveStartKey: exclusiveStartKey,
        }),
      );
      for (const item of out.Items ?? []) ids.push(String(item.instance_id));
      exclusiveStartKey = out.LastEvaluatedKey;
    } while (exclusiveStartKey);
    return (await this.batchGet(ids.map(instanceKey)))
      .map(parseInstance)
      .filter((instance) => instance.stage !== 'Inexistent');
  }

  async createInstance(instance: InstanceRecord, job: JobRecord, host: HostRecord): Promise<void> {
    await this.transact(
      [
        {
          Put: {
            TableName: this.table,
            Item: instanceItem(instance),
            ConditionExpression: 'attribute_not_exists(pk)',
          },
        },
        { Put: { TableName: this.table, Item: listRowItem(instance) } },
        {
          // No arithmetic in conditions: "used + demand <= capacity" is "used <= capacity - demand",
          // against the capacity placement saw (a re-registration in between fails the write).
          Update: {
            TableName: this.table,
            Key: hostKey(host.id),
            UpdateExpression:
              'SET used_vcpus = used_vcpus + :v, used_ram_mb = used_ram_mb + :r, used_disk_gb = used_disk_gb + :d',
            ConditionExpression:
              'attribute_exists(pk) AND vcpus = :cv AND ram_mb = :cr AND disk_gb = :cd AND architecture = :arch ' +
              'AND hypervisor_type = :ht AND hypervisor_version = :hv ' +
              'AND used_vcpus <= :lv AND used_ram_mb <= :lr AND used_disk_gb <= :ld',
            ExpressionAttributeValues: {
              ':v': instance.vcpus,
              ':r': instance.ram_mb,
              ':d': instance.disk_gb,
              ':cv': host.vcpus,
              ':cr': host.ram_mb,
              ':cd': host.disk_gb,
              ':arch': host.architecture,
              ':ht': host.hypervisor_type,
              ':hv': host.hypervisor_version,
              ':lv': host.vcpus - instance.vcpus,
              ':lr': host.ram_mb - instance.ram_mb,
              ':ld': host.disk_gb - instance.disk_gb,
            },
          },
        },
        {
          Put: {
            TableName: this.table,
            Item: { ...hostInstanceKey(host.id, instance.id), instance_id: instance.id },
          },
        },
        {
          Put: {
            TableName: this.table,
            Item: { ...imageUseKey(instance.image.id, instance.id), instance_id: instance.id },
          },
        },
        {
          Put: { TableName: this.table, Item: jobItem(job), ConditionExpression: 'attribute_not_exists(pk)' },
        },
      ],
      `Host ${host.id}`,
    );
  }

  private instancePut(previous: InstanceRecord, next: InstanceRecord): TransactItem {
    return {
      Put: {
        TableName: this.table,
        Item: instanceItem(next),
        ConditionExpression: 'version = :expected',
        ExpressionAttributeValues: { ':expected': previous.version },
      },
    };
  }

  async updateInstance(previous: InstanceRecord, next: InstanceRecord, job?: JobRecord): Promise<void> {
    await this.transact(
      [
        this.instancePut(previous, next),
        ...(job
          ? [
              {
                Put: {
                  TableName: this.table,
                  Item: jobItem(job),
                  ConditionExpression: 'attribute_not_exists(pk)',
                },
              },
            ]
          : []),
      ],
      `Instance ${next.id}`,
    );
  }

  async getJob(id: string): Promise<JobRecord | null> {
    if (!isUuid(id)) return null;
    const item = await this.get(jobKey(id));
    return item ? parseJob(item) : null;
  }

  async queue(hostId: string, limit: number): Promise<JobRecord[]> {
    const out = await dynamo().send(
      new QueryCommand({
        TableName: this.table,
        IndexName: 'by_kind',
        KeyConditionExpression: 'kind_pk = :kind',
        ExpressionAttributeValues: { ':kind': hostQueueKind(hostId) },
        ScanIndexForward: true,
        Limit: limit,
      }),
    );
    return (out.Items ?? []).map(parseJob);
  }

  async claimJob(previous: JobRecord, next: JobRecord, now: Date): Promise<void> {
    try {
      await dynamo().send(
        new PutCommand({
          TableName: this.table,
          Item: jobItem(next),
          ConditionExpression:
            'version = :expected AND (#status = :pending OR (#status = :claimed AND lease_expires_ms <= :now))',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':expected': previous.version,
            ':pending': 'pending',
            ':claimed': 'claimed',
            ':now': now.getTime(),
          },
        }),
      );
    } catch (error) {
      if (isLostRace(error)) throw new StaleWriteError(`Job ${next.id} was claimed by another request`);
      throw error;
    }
  }

  async updateJob(previous: JobRecord, next: JobRecord): Promise<void> {
    try {
      await dynamo().send(
        new PutCommand({
          TableName: this.table,
          Item: jobItem(next),
          ConditionExpression: 'version = :expected',
          ExpressionAttributeValues: { ':expected': previous.version },
        }),
      );
    } catch (error) {
      if (isLostRace(error)) throw new StaleWriteError(`Job ${next.id} was changed by another request`);
      throw error;
    }
  }

  async finishJob(
    previous: JobRecord,
    next: JobRecord,
    instance?: { previous: InstanceRecord; next: InstanceRecord },
  ): Promise<void> {
    const items: TransactItem[] = [
      {
        Put: {
          TableName: this.table,
          Item: jobItem(next),
          ConditionExpression: 'version = :expected',
          ExpressionAttributeValues: { ':expected': previous.version },
        },
      },
    ];
    if (instance) {
      items.push(this.instancePut(instance.previous, instance.next));
      if (instance.next.stage === 'Inexistent' && instance.previous.stage !== 'Inexistent')
        items.push(...this.releaseItems(instance.next));
    }
    await this.transact(items, `Job ${next.id}`);
  }

  async destroyWithoutHost(
    previous: InstanceRecord,
    next: InstanceRecord,
    job?: { previous: JobRecord; next: JobRecord },
  ): Promise<void> {
    const items: TransactItem[] = [this.instancePut(previous, next), ...this.releaseItems(next)];
    if (job)
      items.push({
        Put: {
          TableName: this.table,
          Item: jobItem(job.next),
          ConditionExpression: 'version = :expected',
          ExpressionAttributeValues: { ':expected': job.previous.version },
        },
      });
    await this.transact(items, `Instance ${next.id}`);
  }

  /** A destroyed instance: capacity back to its host, off the host and image pointers, listing row expires. */
  private releaseItems(instance: InstanceRecord): TransactItem[] {
    return [
      { Put: { TableName: this.table, Item: listRowItem(instance) } },
      {
        Update: {
          TableName: this.table,
          Key: hostKey(instance.host_id),
          UpdateExpression: 'ADD used_vcpus :v, used_ram_mb :r, used_disk_gb :d',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: {
            ':v': -instance.vcpus,
            ':r': -instance.ram_mb,
            ':d': -instance.disk_gb,
          },
        },
      },
      { Delete: { TableName: this.table, Key: hostInstanceKey(instance.host_id, instance.id) } },
      { Delete: { TableName: this.table, Key: imageUseKey(instance.image.id, instance.id) } },
    ];
  }

  async getHost(id: string): Promise<HostRecord | null> {
    if (!keyFits(hostKey(id))) return null;
    const item = await this.get(hostKey(id));
    return item ? parseHost(item) : null;
  }

  async listHosts(): Promise<HostRecord[]> {
    const keys: Array<{ pk: string; sk: string }> = [];
    let exclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const out = await dynamo().send(
        new QueryCommand({
          TableName: this.table,
          IndexName: 'by_kind',
          KeyConditionExpression: 'kind_pk = :kind',
          ExpressionAttributeValues: { ':kind': HOST_KIND_ALL },
          ExclusiveStartKey: exclusiveStartKey,
        }),
      );
      for (const item of out.Items ?? []) keys.push({ pk: String(item.pk), sk: String(item.sk) });
      exclusiveStartKey = out.LastEvaluatedKey;
    } while (exclusiveStartKey);
    // Placement decides on use: read it consistently, not from the index's copy.
    return (await this.batchGet(keys)).map(parseHost);
  }

  async putHost(id: string, registration: HostRegistration, now: Date): Promise<HostRecord> {
    const at = now.toISOString();
    const out = await dynamo().send(
      new UpdateCommand({
        TableName: this.table,
        Key: hostKey(id),
        UpdateExpression:
          'SET id = :id, kind_pk = :kind, kind_sk = :id, vcpus = :vcpus, ram_mb = :ram, disk_gb = :disk, ' +
          'architecture = :arch, hypervisor_type = :ht, hypervisor_version = :hv, updated_at = :at, ' +
          'heartbeat_at = :at, registered_at = if_not_exists(registered_at, :at), ' +
          'used_vcpus = if_not_exists(used_vcpus, :zero), used_ram_mb = if_not_exists(used_ram_mb, :zero), ' +
          'used_disk_gb = if_not_exists(used_disk_gb, :zero)',
        ExpressionAttributeValues: {
          ':id': id,
          ':kind': HOST_KIND_ALL,
          ':vcpus': registration.vcpus,
          ':ram': registration.ram_mb,
          ':disk': registration.disk_gb,
          ':arch': registration.architecture,
          ':ht': registration.hypervisor_type,
          ':hv': registration.hypervisor_version,
          ':at': at,
          ':zero': 0,
        },
        ReturnValues: 'ALL_NEW',
      }),
    );
    return parseHost(out.Attributes ?? {});
  }

  async heartbeatHost(id: string, now: Date): Promise<boolean> {
    try {
      await dynamo().send(
        new UpdateCommand({
          TableName: this.table,
          Key: hostKey(id),
          UpdateExpression: 'SET heartbeat_at = :at',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ':at': now.toISOString() },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async imagesInUse(imageIds: readonly string[]): Promise<Set<string>> {
    const used = new Set<string>();
    await Promise.all(
      [...new Set(imageIds)].map(async (imageId) => {
        const out = await dynamo().send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: 'pk = :pk',
            ExpressionAttributeValues: { ':pk': imageUseKey(imageId, '').pk },
            ConsistentRead: true,
            Limit: 1,
          }),
        );
        if ((out.Items ?? []).length > 0) used.add(imageId);
      }),
    );
    return used;
  }
}
