/**
 * Every DynamoDB key Hangar writes is built here, so the single-table layout can be read in one place.
 *
 *   pk=IMG#<id>       sk=META              the image record (tombstone once deleted)
 *                                          while leased, also in by_kind (LEASE_KIND below)
 *   pk=IMG#<id>       sk=SCOPE#<scope>     one listing row per visibility scope, indexed by the
 *                                          by_<sort key> GSIs (partition `scope`, order `ord_<key>`)
 *
 * Listing rows carry a full copy of the image so a page is one Query per scope, no follow-up reads.
 */
import { memberScope, ownerScope, SCOPE_ALL, SCOPE_COMMUNITY, SCOPE_PUBLIC } from '#core/images/access';
import type { ImageRecord } from '#core/images/image';
import { type ImageSortKey, SORT_KEYS } from '#core/images/list-query';

/**
 * DynamoDB refuses a partition key over 2048 bytes or a sort key over 1024 (ValidationException).
 * No stored item has such a key, so a lookup checks first and finds nothing.
 */
export function keyFits(key: { pk: string; sk?: string }): boolean {
  return Buffer.byteLength(key.pk) <= 2048 && (key.sk === undefined || Buffer.byteLength(key.sk) <= 1024);
}

export const imageKey = (id: string) => ({ pk: `IMG#${id}`, sk: 'META' });
export const scopeRowKey = (id: string, scope: string) => ({ pk: `IMG#${id}`, sk: `SCOPE#${scope}` });

// The scopes (index partitions) and the sort keys are the list query's own (core/images/access.ts,
// core/images/list-query.ts): re-exported, never written again here.
export { memberScope, ownerScope, SCOPE_ALL, SORT_KEYS };

/** A key a list can be ordered by, each backed by a GSI named by_<key>. */
export type SortKey = ImageSortKey;

export const indexName = (key: SortKey) => `by_${key}`;
export const ordAttribute = (key: SortKey) => `ord_${key}`;

// Separates the parts of an order value; lower than any character a name realistically holds,
// so "a" orders before "ab" exactly as it would alone.
const SEP = '\u0001';

/** The sortable encoding of one value: null lowest, numbers zero-padded, strings as-is. */
export function encodeSortValue(image: ImageRecord, key: SortKey): string {
  const value = image[key];
  if (value === null || value === undefined) return '0';
  if (typeof value === 'number') return `1${String(value).padStart(20, '0')}`;
  return `1${value}`;
}

/**
 * The order value of an image in the by_<key> index: the key's value, then Glance's implicit
 * tiebreakers created_at and id, so one index walk gives Glance's full order for single-key sorts.
 */
export function orderValue(image: ImageRecord, key: SortKey): string {
  if (key === 'id') return image.id;
  if (key === 'created_at') return `${image.created_at}${SEP}${image.id}`;
  return `${encodeSortValue(image, key)}${SEP}${image.created_at}${SEP}${image.id}`;
}

/** The bounds of all order values that share `image`'s value of `key` (a run of equal keys). */
export function runBounds(image: ImageRecord, key: SortKey): { low: string; high: string } {
  if (key === 'id') return { low: image.id, high: image.id };
  const prefix = key === 'created_at' ? image.created_at : encodeSortValue(image, key);
  return { low: `${prefix}${SEP}`, high: `${prefix}${SEP}\uffff` };
}

/**
 * An image record holding a lease (an upload, stage or import in flight) is also in by_kind under
 * one partition ordered by expiry: kind_pk=LEASE#all, kind_sk=<expires_at>#<id>. Sparse: records
 * without a lease carry neither attribute, so the sweep's Query reads only leased images.
 */
export const LEASE_KIND = 'LEASE#all';
export function leaseListKeys(
  image: ImageRecord,
): { kind_pk: string; kind_sk: string } | Record<string, never> {
  return image.lease ? { kind_pk: LEASE_KIND, kind_sk: `${image.lease.expires_at}#${image.id}` } : {};
}

/** The scopes an image is listed under (member scopes arrive with image sharing). */
export function scopesOf(image: ImageRecord, memberScopes: readonly string[] = []): string[] {
  if (image.status === 'deleted') return [];
  const scopes = [SCOPE_ALL];
  if (image.owner) scopes.push(ownerScope(image.owner));
  if (image.visibility === 'public') scopes.push(SCOPE_PUBLIC);
  if (image.visibility === 'community') scopes.push(SCOPE_COMMUNITY);
  if (image.visibility === 'shared') scopes.push(...memberScopes);
  return scopes;
}

// Tasks (imports, exports) and S3 event markers:
//   pk=TASK#<id>                 sk=META                         the task; in the by_kind GSI under
//                                                                kind_pk=TASK#all, kind_sk=<created_at>#<id>
//   pk=IMG#<image id>            sk=TASK#<created_at>#<task id>  pointer: the image's tasks, in order
//   pk=S3EVENT#<bucket>/<key>#<version>#<sequencer>#<etag>  sk=META  one S3 event's claim (idempotency)
// Finished tasks, their pointers and event markers carry `expiration` (the table's TTL attribute).
export const taskKey = (id: string) => ({ pk: `TASK#${id}`, sk: 'META' });
export const TASK_KIND_ALL = 'TASK#all';
export const taskKindSort = (createdAt: string, id: string) => `${createdAt}#${id}`;
export const imageTaskKey = (imageId: string, createdAt: string, taskId: string) => ({
  pk: `IMG#${imageId}`,
  sk: `TASK#${createdAt}#${taskId}`,
});
export const IMAGE_TASK_PREFIX = 'TASK#';
export const eventMarkerKey = (eventId: string) => ({ pk: `S3EVENT#${eventId}`, sk: 'META' });

// name:tag references (see reference-repository.ts):
//   pk=REF#<namespace>#<name>  sk=TAG#<tag>         a reference; by_kind: kind_pk=REFS#<namespace>,
//                                                   kind_sk=<name>:<tag>
//   pk=REF#<namespace>#<name>  sk=HIST#<tag>#<seq>  one history entry
//   pk=REF#<namespace>#<name>  sk=POLICY            the name's retention policy; by_kind:
//                                                   kind_pk=RETENTION#all, kind_sk=<namespace>#<name>
export const referencePartition = (namespace: string, name: string) => `REF#${namespace}#${name}`;
export const referenceKey = (namespace: string, name: string, tag: string) => ({
  pk: referencePartition(namespace, name),
  sk: `TAG#${tag}`,
});
/** Tags sort after the name and a ':' so one name's tags are a begins_with range. */
export const referenceListKeys = (namespace: string, name: string, tag: string) => ({
  kind_pk: `REFS#${namespace}`,
  kind_sk: `${name}:${tag}`,
});
export const referenceHistoryKey = (namespace: string, name: string, tag: string, seq: number) => ({
  pk: referencePartition(namespace, name),
  sk: `HIST#${tag}#${String(seq).padStart(10, '0')}`,
});
export const referencePolicyKey = (namespace: string, name: string) => ({
  pk: referencePartition(namespace, name),
  sk: 'POLICY',
});
/**
 * Every retention policy is also in by_kind under one partition, so the scheduled sweep lists
 * them with a Query instead of a Scan: kind_pk=RETENTION#all, kind_sk=<namespace>#<name>.
 */
export const RETENTION_POLICY_KIND = 'RETENTION#all';
export const retentionPolicyListKeys = (namespace: string, name: string) => ({
  kind_pk: RETENTION_POLICY_KIND,
  kind_sk: `${namespace}#${name}`,
});

// Image members (see member-rows.ts for their listing rows):
//   pk=IMG#<id>   sk=MEMBER#<project>   one member of the image: status, created_at, updated_at
// Images shared with a project are listed from its member scopes (memberScope above), one
// partition per member status, so "shared with me" reads the consumer's partition, never a scan.
export const MEMBER_PREFIX = 'MEMBER#';
export const memberKey = (imageId: string, member: string) => ({
  pk: `IMG#${imageId}`,
  sk: `${MEMBER_PREFIX}${member}`,
});

// Instances, hosts and the per-host work queue (see instance-repository.ts, job-repository.ts, host-repository.ts):
//   pk=INST#<id>       sk=META          the instance (`version`); by_kind: kind_pk=INSTP#<project>,
//                                       kind_sk=<created_at>#<id> (a project's instances)
//   pk=INST#<id>       sk=LIST          listing row for admins: kind_pk=INST#all, same kind_sk
//   pk=HOST#<id>       sk=META          the host: capacity and use (used_*); by_kind: kind_pk=HOST#all
//   pk=HOST#<id>       sk=INST#<inst>   pointer: an instance placed on the host, until destroyed
//   pk=IMGUSE#<image>  sk=INST#<inst>   pointer: an instance built from the image, until destroyed
//   pk=JOB#<id>        sk=META          a job (`version`, `status`, `lease_expires_ms`); while open it is
//                                       in by_kind under kind_pk=HOSTQ#<host>, kind_sk=<enqueued_at>#<id>
// Destroyed instances and finished jobs carry `expiration` (the table's TTL attribute).
export const instanceKey = (id: string) => ({ pk: `INST#${id}`, sk: 'META' });
export const instanceListRowKey = (id: string) => ({ pk: `INST#${id}`, sk: 'LIST' });
export const INSTANCE_KIND_ALL = 'INST#all';
export const instanceProjectKind = (project: string) => `INSTP#${project}`;
export const instanceKindSort = (createdAt: string, id: string) => `${createdAt}#${id}`;
export const hostKey = (id: string) => ({ pk: `HOST#${id}`, sk: 'META' });
export const HOST_KIND_ALL = 'HOST#all';
export const HOST_INSTANCE_PREFIX = 'INST#';
export const hostInstanceKey = (hostId: string, instanceId: string) => ({
  pk: `HOST#${hostId}`,
  sk: `${HOST_INSTANCE_PREFIX}${instanceId}`,
});
export const imageUseKey = (imageId: string, instanceId: string) => ({
  pk: `IMGUSE#${imageId}`,
  sk: `INST#${instanceId}`,
});
export const jobKey = (id: string) => ({ pk: `JOB#${id}`, sk: 'META' });
export const hostQueueKind = (hostId: string) => `HOSTQ#${hostId}`;
export const hostQueueSort = (enqueuedAt: string, jobId: string) => `${enqueuedAt}#${jobId}`;

// Builds (see build-repository.ts):
//   pk=BUILD#<id>      sk=META          the build (`version`); by_kind: kind_pk=BUILDT#<namespace>#<name>:<tag>,
//                                       kind_sk=<created_at>#<id> (a target's builds, a Query)
export const buildKey = (id: string) => ({ pk: `BUILD#${id}`, sk: 'META' });
export const buildTargetKind = (namespace: string, target: string) => `BUILDT#${namespace}#${target}`;
export const buildKindSort = (createdAt: string, id: string) => `${createdAt}#${id}`;

// Metadata definitions (see metadef-repository.ts):
//   pk=MDNS#<namespace>   sk=META            a namespace, its resource type associations inside;
//                                            by_kind: kind_pk=MDNS#all, kind_sk=<namespace>
//   pk=MDNSC#<ns id>      sk=OBJ#<name>      an object      (ns id: the namespace's immutable id,
//   pk=MDNSC#<ns id>      sk=PROP#<name>     a property      so a rename moves only its record)
//   pk=MDNSC#<ns id>      sk=TAG#<name>      a tag (name lower-cased: tag names are case-insensitive)
//   pk=MDRT#<name>        sk=META            a resource type; by_kind: kind_pk=MDRT#all, kind_sk=<name>
//   pk=MDSEED             sk=<seed version>  the seed catalogue was written
export const metadefNamespaceKey = (name: string) => ({ pk: `MDNS#${name}`, sk: 'META' });
export const METADEF_NAMESPACE_KIND = 'MDNS#all';
export const metadefNamespaceListKeys = (name: string) => ({
  kind_pk: METADEF_NAMESPACE_KIND,
  kind_sk: name,
});
export const metadefChildPartition = (namespaceId: string) => `MDNSC#${namespaceId}`;
export const METADEF_CHILD_PREFIX = { object: 'OBJ#', property: 'PROP#', tag: 'TAG#' } as const;
export const metadefChildKey = (
  namespaceId: string,
  kind: keyof typeof METADEF_CHILD_PREFIX,
  name: string,
) => ({
  pk: metadefChildPartition(namespaceId),
  sk: `${METADEF_CHILD_PREFIX[kind]}${kind === 'tag' ? name.toLowerCase() : name}`,
});
export const metadefResourceTypeKey = (name: string) => ({ pk: `MDRT#${name}`, sk: 'META' });
export const METADEF_RESOURCE_TYPE_KIND = 'MDRT#all';
export const metadefResourceTypeListKeys = (name: string) => ({
  kind_pk: METADEF_RESOURCE_TYPE_KIND,
  kind_sk: name,
});
export const metadefSeedKey = (version: string) => ({ pk: 'MDSEED', sk: version });
