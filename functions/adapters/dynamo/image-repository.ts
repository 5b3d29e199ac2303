import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import {
  BatchGetCommand,
  type BatchGetCommandOutput,
  GetCommand,
  QueryCommand,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import {
  IMAGE_STATUSES,
  type ImageRecord,
  LEASE_KINDS,
  MEMBER_STATUSES,
  VISIBILITIES,
} from '#core/images/image';
import type { ImageListSpec, ImageRepository, LeaseIndex } from '#core/images/ports';
import { ConflictError, TooLargeError } from '#core/kernel/errors';
import { isUuid } from '#core/kernel/ids';
import type { ImageMember, MembershipRepository, MemberWrite } from '#core/sharing/ports';
import { logger } from '#platform/logger';
import {
  imageKey,
  indexName,
  keyFits,
  LEASE_KIND,
  leaseListKeys,
  MEMBER_PREFIX,
  memberKey,
  ordAttribute,
  orderValue,
  runBounds,
  SORT_KEYS,
  type SortKey,
  scopeRowKey,
  scopesOf,
} from './keys.ts';
import { desiredRows, planRowWrites, type RowOp, TRANSACTION_ITEMS } from './member-rows.ts';
import { queryAll } from './query.ts';
import { existsOrStale, type TransactItem, transactWrite, versionedWrite } from './transact.ts';

const StoredImageSchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  status: z.enum(IMAGE_STATUSES),
  visibility: z.enum(VISIBILITIES),
  protected: z.boolean(),
  os_hidden: z.boolean(),
  checksum: z.string().nullable(),
  os_hash_algo: z.string().nullable(),
  os_hash_value: z.string().nullable(),
  owner: z.string().nullable(),
  size: z.number().nullable(),
  virtual_size: z.number().nullable(),
  min_ram: z.number(),
  min_disk: z.number(),
  container_format: z.string().nullable(),
  disk_format: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  tags: z.array(z.string()),
  properties: z.record(z.string(), z.string()),
  version: z.number().int(),
  blob_key: z.string().nullable(),
  member_statuses: z.array(z.tuple([z.string(), z.enum(MEMBER_STATUSES)])).optional(),
  lease: z
    .object({
      holder: z.string(),
      kind: z.enum(LEASE_KINDS),
      expires_at: z.string(),
      blob_key: z.string().optional(),
      multipart_upload_id: z.string().optional(),
      source: z.object({ bucket: z.string(), key: z.string() }).optional(),
      task_id: z.string().optional(),
    })
    .optional(),
});

/**
 * A DynamoDB item holds at most 400 KB, and every listing row carries the record next to its keys
 * and order values (a few KB at most): a larger record is refused (413) rather than failing the write.
 */
const MAX_RECORD_BYTES = 384 * 1024;

/** DynamoDB drops nulls inside maps poorly across SDK versions; store the record as JSON text. */
function toItem(image: ImageRecord): Record<string, unknown> {
  const data = JSON.stringify(image);
  const bytes = Buffer.byteLength(data, 'utf8');
  if (bytes > MAX_RECORD_BYTES)
    throw new TooLargeError(
      `Image metadata is too large: ${bytes} bytes, at most ${MAX_RECORD_BYTES} bytes are allowed.`,
    );
  return { data, version: image.version };
}

function fromItem(item: Record<string, unknown>): ImageRecord {
  return StoredImageSchema.parse(JSON.parse(String(item.data)));
}

function scopeRow(image: ImageRecord, scope: string): Record<string, unknown> {
  const row: Record<string, unknown> = { ...scopeRowKey(image.id, scope), scope, ...toItem(image) };
  for (const key of SORT_KEYS) row[ordAttribute(key)] = orderValue(image, key);
  return row;
}

/** A member listing row that only points at the record (member-rows.ts: never trusted as is). */
function refRow(image: ImageRecord, scope: string): Record<string, unknown> {
  const row: Record<string, unknown> = { ...scopeRowKey(image.id, scope), scope, ref: true };
  for (const key of SORT_KEYS) row[ordAttribute(key)] = orderValue(image, key);
  return row;
}

function memberItem(member: ImageMember): Record<string, unknown> {
  return { ...memberKey(member.image_id, member.member_id), ...member };
}

const StoredMemberSchema = z.object({
  image_id: z.string(),
  member_id: z.string(),
  status: z.enum(MEMBER_STATUSES),
  created_at: z.string(),
  updated_at: z.string(),
});

/**
 * Every item a new image consists of: the record and its listing rows (members included), for
 * bulk loads such as the benchmarks' seeding. Normal writes go through create/update.
 */
export function imageItems(image: ImageRecord): Record<string, unknown>[] {
  const items: Record<string, unknown>[] = [{ ...imageKey(image.id), ...toItem(image) }];
  for (const [scope, kind] of desiredRows(image))
    items.push(kind === 'full' ? scopeRow(image, scope) : refRow(image, scope));
  return items;
}

/** The member item, for bulk loads (see imageItems). */
export function imageMemberItem(member: ImageMember): Record<string, unknown> {
  return memberItem(member);
}

/** Membership is changed by membership writes only: other writes keep the stored list. */
function withMembersOf(next: ImageRecord, source: ImageRecord): ImageRecord {
  const { member_statuses: _dropped, ...rest } = next;
  return source.member_statuses ? { ...rest, member_statuses: source.member_statuses } : rest;
}

/** Compares order values as DynamoDB does: by UTF-8 bytes. */
function compareOrd(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

interface Head {
  ord: string;
  image: ImageRecord;
}

export class DynamoImageRepository implements ImageRepository, MembershipRepository, LeaseIndex {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async expiredLeases(before: Date | null, limit: number): Promise<ImageRecord[]> {
    const out = await this.client.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: 'by_kind',
        KeyConditionExpression: before === null ? 'kind_pk = :pk' : 'kind_pk = :pk AND kind_sk <= :before',
        ExpressionAttributeValues: {
          ':pk': LEASE_KIND,
          // Every id sorts before U+FFFF: leases expiring exactly at `before` are included.
          ...(before === null ? {} : { ':before': `${before.toISOString()}#\uffff` }),
        },
        Limit: limit,
      }),
    );
    // The index is eventually consistent: the recovery re-reads each record before acting.
    return (out.Items ?? []).map(fromItem);
  }

  async get(id: string): Promise<ImageRecord | null> {
    if (!isUuid(id)) return null;
    const out = await this.client.send(
      new GetCommand({ TableName: this.table, Key: imageKey(id), ConsistentRead: true }),
    );
    return out.Item ? fromItem(out.Item) : null;
  }

  async create(image: ImageRecord): Promise<void> {
    await versionedWrite(
      this.client,
      [
        {
          Put: {
            TableName: this.table,
            Item: { ...imageKey(image.id), ...toItem(image), ...leaseListKeys(image) },
            ConditionExpression: 'attribute_not_exists(pk)',
          },
        },
        ...scopesOf(image).map((scope) => ({
          Put: { TableName: this.table, Item: scopeRow(image, scope) },
        })),
      ],
      existsOrStale(
        () => new ConflictError(`Image ID ${image.id} already exists!`),
        `Image ${image.id} was changed by another request`,
      ),
    );
  }

  async update(previous: ImageRecord, next: ImageRecord): Promise<void> {
    await this.write(previous, withMembersOf(next, previous));
  }

  async updateMembership(previous: ImageRecord, next: ImageRecord, member: MemberWrite): Promise<void> {
    await this.write(previous, next, member);
  }

  async getMember(imageId: string, memberId: string): Promise<ImageMember | null> {
    if (!isUuid(imageId) || !keyFits(memberKey(imageId, memberId))) return null;
    const out = await this.client.send(
      new GetCommand({ TableName: this.table, Key: memberKey(imageId, memberId), ConsistentRead: true }),
    );
    return out.Item ? StoredMemberSchema.parse(out.Item) : null;
  }

  async listMembers(imageId: string): Promise<ImageMember[]> {
    if (!isUuid(imageId)) return [];
    const items = await queryAll(this.client, {
      TableName: this.table,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
      ExpressionAttributeValues: { ':pk': imageKey(imageId).pk, ':prefix': MEMBER_PREFIX },
      ConsistentRead: true,
    });
    return items.map((item) => StoredMemberSchema.parse(item));
  }

  /**
   * The record, the member item (if any) and the listing rows in one transaction under the
   * record's version; member ref rows that do not fit follow (member-rows.ts).
   */
  private async write(previous: ImageRecord, next: ImageRecord, member?: MemberWrite): Promise<void> {
    const fixed = member ? 2 : 1;
    const plan = planRowWrites(previous, next, TRANSACTION_ITEMS - fixed);
    const items: TransactItem[] = [
      {
        Put: {
          TableName: this.table,
          Item: { ...imageKey(next.id), ...toItem(next), ...leaseListKeys(next) },
          ConditionExpression: 'version = :expected',
          ExpressionAttributeValues: { ':expected': previous.version },
        },
      },
    ];
    if (member && 'put' in member)
      items.push({ Put: { TableName: this.table, Item: memberItem(member.put) } });
    if (member && 'delete' in member)
      items.push({ Delete: { TableName: this.table, Key: memberKey(next.id, member.delete) } });
    items.push(...plan.now.map((op) => this.rowItem(next, op)));
    // planRowWrites keeps what must be atomic within the limit; this guards that promise.
    if (items.length > TRANSACTION_ITEMS)
      throw new Error(`image ${next.id}: ${items.length} items in one transaction`);
    await versionedWrite(this.client, items, `Image ${next.id} was changed by another request`);
    await this.followUp(next, plan.later);
  }

  private rowItem(image: ImageRecord, op: RowOp): TransactItem {
    if (op.op === 'delete')
      return { Delete: { TableName: this.table, Key: scopeRowKey(image.id, op.scope) } };
    const row = op.op === 'put-full' ? scopeRow(image, op.scope) : refRow(image, op.scope);
    return { Put: { TableName: this.table, Item: row } };
  }

  /**
   * Ref-row writes after the main transaction, each batch only while the record is still at
   * `image.version` (a newer write redoes them itself). The main write has succeeded, so a
   * failure here is logged, not thrown: lists re-check ref rows and repair stale ones.
   */
  private async followUp(image: ImageRecord, ops: readonly RowOp[]): Promise<void> {
    for (let i = 0; i < ops.length; i += TRANSACTION_ITEMS - 1) {
      const batch = ops.slice(i, i + TRANSACTION_ITEMS - 1);
      try {
        const written = await transactWrite(this.client, [
          {
            ConditionCheck: {
              TableName: this.table,
              Key: imageKey(image.id),
              ConditionExpression: 'version = :version',
              ExpressionAttributeValues: { ':version': image.version },
            },
          },
          ...batch.map((op) => this.rowItem(image, op)),
        ]);
        if (!written) return;
      } catch (error) {
        logger.warn('member listing rows not written; lists repair them', { image: image.id, error });
        return;
      }
    }
  }

  /** Rewrites the ref rows of `image` (and drops `stale`, a row it no longer has): a list's repair. */
  private async repairRefRows(image: ImageRecord, stale: readonly string[]): Promise<void> {
    const rows = desiredRows(image);
    const ops: RowOp[] = [];
    for (const [scope, kind] of rows) if (kind === 'ref') ops.push({ op: 'put-ref', scope });
    for (const scope of stale) if (!rows.has(scope)) ops.push({ op: 'delete', scope });
    await this.followUp(image, ops);
  }

  /** Current records by id, read consistently (ref rows are checked against them). */
  private async records(ids: readonly string[]): Promise<Map<string, ImageRecord>> {
    const found = new Map<string, ImageRecord>();
    for (let i = 0; i < ids.length; i += 100) {
      let keys: Record<string, unknown>[] | undefined = ids.slice(i, i + 100).map((id) => imageKey(id));
      while (keys && keys.length > 0) {
        const out: BatchGetCommandOutput = await this.client.send(
          new BatchGetCommand({ RequestItems: { [this.table]: { Keys: keys, ConsistentRead: true } } }),
        );
        for (const item of out.Responses?.[this.table] ?? []) {
          const image = fromItem(item);
          found.set(image.id, image);
        }
        keys = out.UnprocessedKeys?.[this.table]?.Keys;
      }
    }
    return found;
  }

  /**
   * A page of index items as list heads. Ref rows (member-rows.ts) are replaced by the current
   * record when it still lists the image in that partition at that position, and dropped (and
   * repaired) otherwise.
   */
  private async heads(items: Record<string, unknown>[], key: SortKey): Promise<Head[]> {
    const ord = ordAttribute(key);
    const refIds = items
      .filter((item) => item.ref === true)
      .map((item) => String(item.pk).slice('IMG#'.length));
    const current =
      refIds.length > 0 ? await this.records([...new Set(refIds)]) : new Map<string, ImageRecord>();
    const heads: Head[] = [];
    const repairs = new Map<string, { image: ImageRecord; stale: string[] }>();
    for (const item of items) {
      if (item.ref !== true) {
        heads.push({ ord: String(item[ord]), image: fromItem(item) });
        continue;
      }
      const image = current.get(String(item.pk).slice('IMG#'.length));
      if (!image) continue;
      const scope = String(item.scope);
      if (desiredRows(image).has(scope) && orderValue(image, key) === item[ord]) {
        heads.push({ ord: String(item[ord]), image });
        continue;
      }
      const repair = repairs.get(image.id) ?? { image, stale: [] };
      repair.stale.push(scope);
      repairs.set(image.id, repair);
    }
    for (const { image, stale } of repairs.values()) await this.repairRefRows(image, stale);
    return heads;
  }

  /**
   * One page: a k-way merge of per-scope index walks in the order of the first sort key. Runs of
   * equal first-key values are re-sorted in memory when further sort keys were asked for.
   */
  async list(spec: ImageListSpec): Promise<ImageRecord[]> {
    const first = spec.sort[0];
    if (!first || !(SORT_KEYS as readonly string[]).includes(first.key))
      throw new Error('list needs a sort key');
    const key = first.key as SortKey;
    const descending = first.dir === 'desc';
    // Glance's tiebreakers are baked into the order value; only extra explicit keys need run sorting.
    const implicit =
      key === 'id' ? ['id'] : key === 'created_at' ? ['created_at', 'id'] : [key, 'created_at', 'id'];
    const needsRunSort = !spec.sort.every((s, i) => s.key === implicit[i] && s.dir === first.dir);

    let bound: { op: '<' | '>' | '<=' | '>='; value: string } | undefined;
    if (spec.marker) {
      if (needsRunSort) {
        const run = runBounds(spec.marker, key);
        bound = descending ? { op: '<=', value: run.high } : { op: '>=', value: run.low };
      } else {
        bound = { op: descending ? '<' : '>', value: orderValue(spec.marker, key) };
      }
    }

    const walkers = spec.scopes.map((scope) => this.walk(scope, key, descending, bound, spec.limit));
    const heads: Array<Head | undefined> = await Promise.all(
      walkers.map((w) => w.next().then((r) => r.value)),
    );
    const direction = descending ? -1 : 1;
    const seen = new Set<string>();
    const page: ImageRecord[] = [];
    let run: ImageRecord[] = [];
    let runKey: string | undefined;
    let skipping = spec.marker !== undefined && needsRunSort;

    const flushRun = () => {
      if (run.length === 0) return;
      run.sort(spec.compare);
      for (const image of run) {
        if (skipping) {
          if (spec.marker && spec.compare(image, spec.marker) <= 0) continue;
          skipping = false;
        }
        if (page.length < spec.limit) page.push(image);
      }
      run = [];
    };

    while (page.length < spec.limit) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const head = heads[i];
        if (!head) continue;
        const current = best >= 0 ? heads[best] : undefined;
        if (!current || direction * compareOrd(head.ord, current.ord) < 0) best = i;
      }
      if (best < 0) break;
      const head = heads[best] as Head;
      heads[best] = (await walkers[best]?.next())?.value;
      // The same image is listed under several scopes (e.g. owner and public): keep it once.
      if (seen.has(head.image.id)) continue;
      seen.add(head.image.id);
      if (!spec.filter(head.image)) continue;
      if (!needsRunSort) {
        page.push(head.image);
        continue;
      }
      const valueKey = head.ord.slice(
        0,
        head.ord.indexOf('\u0001') >= 0 ? head.ord.indexOf('\u0001') : undefined,
      );
      if (runKey !== undefined && valueKey !== runKey) flushRun();
      runKey = valueKey;
      run.push(head.image);
    }
    flushRun();
    await Promise.all(walkers.map((w) => w.return(undefined)));
    return page.slice(0, spec.limit);
  }

  private async *walk(
    scope: string,
    key: SortKey,
    descending: boolean,
    bound: { op: string; value: string } | undefined,
    limit: number,
  ): AsyncGenerator<Head, undefined> {
    const ord = ordAttribute(key);
    let exclusiveStartKey: Record<string, unknown> | undefined;
    // Start with one page worth of rows; grow when filters throw rows away.
    let batch = Math.min(Math.max(limit + 1, 10), 1000);
    do {
      const input: QueryCommandInput = {
        TableName: this.table,
        IndexName: indexName(key),
        KeyConditionExpression: bound ? `#scope = :scope AND #ord ${bound.op} :bound` : '#scope = :scope',
        // What heads() reads, not the row's other seven order values (less for the table to send and the SDK to parse).
        ProjectionExpression: '#pk, #scope, #ord, #ref, #data',
        ExpressionAttributeNames: {
          '#pk': 'pk',
          '#scope': 'scope',
          '#ord': ord,
          '#ref': 'ref',
          '#data': 'data',
        },
        ExpressionAttributeValues: bound ? { ':scope': scope, ':bound': bound.value } : { ':scope': scope },
        ScanIndexForward: !descending,
        Limit: batch,
        ExclusiveStartKey: exclusiveStartKey,
      };
      const out = await this.client.send(new QueryCommand(input));
      yield* await this.heads(out.Items ?? [], key);
      exclusiveStartKey = out.LastEvaluatedKey;
      batch = Math.min(batch * 2, 1000);
    } while (exclusiveStartKey);
    return undefined;
  }
}
