/**
 * Hosts in the single table (layout in keys.ts), stored attribute by attribute: the capacity
 * condition of an instance's creation compares them. A host's use (used_*) changes only inside
 * the transactions that create or destroy an instance (DynamoInstanceStore, from the items built
 * here), so it can never exceed the capacity the placement saw.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import type { HostRecord, HostRegistration, InstanceRecord } from '#core/instances/records';
import { isConditionFailure } from './errors.ts';
import { HOST_KIND_ALL, hostKey, keyFits } from './keys.ts';
import { batchGetAll, getItem, queryAll } from './query.ts';
import type { TransactItem } from './transact.ts';

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

const parseHost = (item: Record<string, unknown>) => StoredHostSchema.parse(item) as HostRecord;

/** What an instance takes of its host. */
type Demand = Pick<InstanceRecord, 'vcpus' | 'ram_mb' | 'disk_gb'>;

/**
 * Adds `demand` to the host's use, only if the host is still as placement saw it and has room.
 * No arithmetic in conditions: "used + demand <= capacity" is "used <= capacity - demand",
 * against the capacity placement saw (a re-registration in between fails the write).
 */
export function reserveCapacity(table: string, host: HostRecord, demand: Demand): TransactItem {
  return {
    Update: {
      TableName: table,
      Key: hostKey(host.id),
      UpdateExpression:
        'SET used_vcpus = used_vcpus + :v, used_ram_mb = used_ram_mb + :r, used_disk_gb = used_disk_gb + :d',
      ConditionExpression:
        'attribute_exists(pk) AND vcpus = :cv AND ram_mb = :cr AND disk_gb = :cd AND architecture = :arch ' +
        'AND hypervisor_type = :ht AND hypervisor_version = :hv ' +
        'AND used_vcpus <= :lv AND used_ram_mb <= :lr AND used_disk_gb <= :ld',
      ExpressionAttributeValues: {
        ':v': demand.vcpus,
        ':r': demand.ram_mb,
        ':d': demand.disk_gb,
        ':cv': host.vcpus,
        ':cr': host.ram_mb,
        ':cd': host.disk_gb,
        ':arch': host.architecture,
        ':ht': host.hypervisor_type,
        ':hv': host.hypervisor_version,
        ':lv': host.vcpus - demand.vcpus,
        ':lr': host.ram_mb - demand.ram_mb,
        ':ld': host.disk_gb - demand.disk_gb,
      },
    },
  };
}

/** Gives `demand` back to the host (which must still exist). */
export function releaseCapacity(table: string, hostId: string, demand: Demand): TransactItem {
  return {
    Update: {
      TableName: table,
      Key: hostKey(hostId),
      UpdateExpression: 'ADD used_vcpus :v, used_ram_mb :r, used_disk_gb :d',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeValues: { ':v': -demand.vcpus, ':r': -demand.ram_mb, ':d': -demand.disk_gb },
    },
  };
}

export class DynamoHostRepository {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async getHost(id: string): Promise<HostRecord | null> {
    return keyFits(hostKey(id)) ? getItem(this.client, this.table, hostKey(id), parseHost) : null;
  }

  async listHosts(): Promise<HostRecord[]> {
    const items = await queryAll(this.client, {
      TableName: this.table,
      IndexName: 'by_kind',
      KeyConditionExpression: 'kind_pk = :kind',
      ExpressionAttributeValues: { ':kind': HOST_KIND_ALL },
    });
    const keys = items.map((item) => ({ pk: String(item.pk), sk: String(item.sk) }));
    // Placement decides on use: read it consistently, not from the index's copy.
    return (await batchGetAll(this.client, this.table, keys)).map(parseHost);
  }

  /** Creates or updates the host's capacity; its use (used_*) is kept. */
  async putHost(id: string, registration: HostRegistration, now: Date): Promise<HostRecord> {
    const at = now.toISOString();
    const out = await this.client.send(
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

  /** false when the host was never registered. */
  async heartbeatHost(id: string, now: Date): Promise<boolean> {
    try {
      await this.client.send(
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
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }
}
