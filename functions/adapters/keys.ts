/**
 * Every DynamoDB key Hangar writes is built here, so the single-table layout can be read in one place.
 *
 *   pk=IMG#<id>       sk=META              the image record (tombstone once deleted)
 *   pk=IMG#<id>       sk=SCOPE#<scope>     one listing row per visibility scope, indexed by the
 *                                          by_<sort key> GSIs (partition `scope`, order `ord_<key>`)
 *
 * Listing rows carry a full copy of the image so a page is one Query per scope, no follow-up reads.
 */
import type { ImageRecord } from '#core/image';

export const imageKey = (id: string) => ({ pk: `IMG#${id}`, sk: 'META' });
export const scopeRowKey = (id: string, scope: string) => ({ pk: `IMG#${id}`, sk: `SCOPE#${scope}` });

export const SCOPE_ALL = 'all';
export const ownerScope = (project: string) => `owner#${project}`;
export const memberScope = (project: string, status: string) => `member#${project}#${status}`;

/** Keys a list can be ordered by, each backed by a GSI named by_<key>. */
export const SORT_KEYS = [
  'name',
  'status',
  'container_format',
  'disk_format',
  'size',
  'id',
  'created_at',
  'updated_at',
] as const;
export type SortKey = (typeof SORT_KEYS)[number];

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

/** The scopes an image is listed under (member scopes arrive with image sharing). */
export function scopesOf(image: ImageRecord, memberScopes: readonly string[] = []): string[] {
  if (image.status === 'deleted') return [];
  const scopes = [SCOPE_ALL];
  if (image.owner) scopes.push(ownerScope(image.owner));
  if (image.visibility === 'public') scopes.push('public');
  if (image.visibility === 'community') scopes.push('community');
  if (image.visibility === 'shared') scopes.push(...memberScopes);
  return scopes;
}
