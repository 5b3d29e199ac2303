/**
 * Instances in the single table (layout in keys.ts): the record (in by_kind under its project),
 * an admin listing row, and pointers from its host and its image while it exists. Writes that
 * also change its host or a job (create, finish, destroy) are made by DynamoInstanceStore from
 * the items built here, in one transaction.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import type { InstanceListSpec } from '#core/instances/ports';
import {
  DESTROYED_RETENTION_HOURS,
  type InstanceRecord,
  JOB_KINDS,
  OBSERVED_STATES,
  STAGES,
} from '#core/instances/records';
import { expirationEpoch } from '#core/instances/work-queue';
import { isUuid } from '#core/kernel/ids';
import {
  HOST_INSTANCE_PREFIX,
  hostInstanceKey,
  hostKey,
  INSTANCE_KIND_ALL,
  imageUseKey,
  instanceKey,
  instanceKindSort,
  instanceListRowKey,
  instanceProjectKind,
  keyFits,
} from './keys.ts';
import { batchGetAll, getItem, queryAll } from './query.ts';
import { type SinglePut, type TransactItem, versionedPut, versionedWrite } from './transact.ts';

const StoredImageSchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  disk_format: z.string(),
  size: z.number().nullable(),
  os_hash_algo: z.literal('sha512'),
  os_hash_value: z.string(),
});

const StoredInstanceSchema = z.object({
  id: z.string(),
  name: z.string(),
  hostname: z.string(),
  project: z.string(),
  user_id: z.string(),
  image_ref: z.string(),
  image: StoredImageSchema,
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
  // Added with upgrades: older records have none of them (core/instances/lifecycle.ts referenceOf).
  reference: z.string().nullish(),
  previous_image: StoredImageSchema.nullish(),
  upgrade_to: z
    .object({ image: StoredImageSchema, requested_as: z.string(), reference: z.string().nullable() })
    .nullish(),
  version: z.number().int(),
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

/** A stored item's record (exported for the test that old records, without later fields, still read). */
export const parseInstance = (item: Record<string, unknown>) =>
  StoredInstanceSchema.parse(JSON.parse(String(item.data))) as InstanceRecord;

/** A new instance: the record (only if no instance has its id), its listing row, its pointers. */
export function instanceCreateItems(table: string, instance: InstanceRecord): TransactItem[] {
  return [
    {
      Put: {
        TableName: table,
        Item: instanceItem(instance),
        ConditionExpression: 'attribute_not_exists(pk)',
      },
    },
    { Put: { TableName: table, Item: listRowItem(instance) } },
    {
      Put: {
        TableName: table,
        Item: { ...hostInstanceKey(instance.host_id, instance.id), instance_id: instance.id },
      },
    },
    {
      Put: {
        TableName: table,
        Item: { ...imageUseKey(instance.image.id, instance.id), instance_id: instance.id },
      },
    },
  ];
}

/** `next`, written only if the stored instance is still at `previous.version`. */
export function instancePut(table: string, previous: InstanceRecord, next: InstanceRecord): SinglePut {
  return versionedPut(table, instanceItem(next), previous.version);
}

/** The images the instance's disks are built on: its disk's and its previous disk's. */
function diskImages(instance: InstanceRecord): string[] {
  return [...new Set([instance.image.id, ...(instance.previous_image ? [instance.previous_image.id] : [])])];
}

/** A destroyed instance: off the host and image pointers (of both its disks), its listing row expires. */
export function instanceReleaseItems(table: string, instance: InstanceRecord): TransactItem[] {
  return [
    { Put: { TableName: table, Item: listRowItem(instance) } },
    { Delete: { TableName: table, Key: hostInstanceKey(instance.host_id, instance.id) } },
    ...diskImages(instance).map((imageId) => ({
      Delete: { TableName: table, Key: imageUseKey(imageId, instance.id) },
    })),
  ];
}

/** The image pointers an upgrade or rollback adds and drops (none when the disks' images stay). */
export function imageUseChangeItems(
  table: string,
  previous: InstanceRecord,
  next: InstanceRecord,
): TransactItem[] {
  const before = diskImages(previous);
  const after = diskImages(next);
  return [
    ...after
      .filter((imageId) => !before.includes(imageId))
      .map((imageId) => ({
        Put: { TableName: table, Item: { ...imageUseKey(imageId, next.id), instance_id: next.id } },
      })),
    ...before
      .filter((imageId) => !after.includes(imageId))
      .map((imageId) => ({ Delete: { TableName: table, Key: imageUseKey(imageId, next.id) } })),
  ];
}

export class DynamoInstanceRepository {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async getInstance(id: string): Promise<InstanceRecord | null> {
    return isUuid(id) ? getItem(this.client, this.table, instanceKey(id), parseInstance) : null;
  }

  /** Newest first. */
  async listInstances(spec: InstanceListSpec): Promise<InstanceRecord[]> {
    if (spec.limit <= 0) return [];
    const kind = spec.project === undefined ? INSTANCE_KIND_ALL : instanceProjectKind(spec.project);
    const bound = spec.marker ? instanceKindSort(spec.marker.created_at, spec.marker.id) : undefined;
    const ids: string[] = [];
    let exclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const out = await this.client.send(
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
    return (await batchGetAll(this.client, this.table, ids.map(instanceKey))).map(parseInstance);
  }

  /** The instances placed on the host and not yet destroyed. */
  async listHostInstances(hostId: string): Promise<InstanceRecord[]> {
    if (!keyFits(hostKey(hostId))) return [];
    const pointers = await queryAll(this.client, {
      TableName: this.table,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
      ExpressionAttributeValues: { ':pk': hostKey(hostId).pk, ':prefix': HOST_INSTANCE_PREFIX },
      ConsistentRead: true,
    });
    const ids = pointers.map((item) => String(item.instance_id));
    return (await batchGetAll(this.client, this.table, ids.map(instanceKey)))
      .map(parseInstance)
      .filter((instance) => instance.stage !== 'Inexistent');
  }

  /** Writes `next` if the stored instance is still `previous.version`. */
  async updateInstance(previous: InstanceRecord, next: InstanceRecord): Promise<void> {
    await versionedWrite(
      this.client,
      [instancePut(this.table, previous, next)],
      `Instance ${next.id} was changed by another request`,
    );
  }

  /** Which of the images some not-destroyed instance was built from. */
  async imagesInUse(imageIds: readonly string[]): Promise<Set<string>> {
    const used = new Set<string>();
    await Promise.all(
      [...new Set(imageIds)].map(async (imageId) => {
        const out = await this.client.send(
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
