/**
 * Listing rows for image members, and how a write keeps them right within DynamoDB's limits.
 *
 * Each member of a shared image gets a row in its own partition `member#<project>#<status>`, so
 * "shared with me" is an index walk of the consumer's partition. Rows are rewritten whenever the
 * image changes, but a TransactWriteItems holds at most 100 items (and 4 MB), and an image may
 * have 128 members (Glance's image_member_quota). Splitting one write over several transactions
 * would leave rows that disagree with the record, so rows come in two kinds:
 *
 * - `full` rows carry a copy of the record, like the owner/public rows. The first members (in the
 *   order they were added, up to MAX_INLINE_MEMBER_ROWS and what fits in the size budget) get
 *   full rows, and every write of the record rewrites them in its own transaction: they are never
 *   stale, and a list uses them as they are. Nearly every image has far fewer members than that.
 * - `ref` rows (the remaining members) carry only the order values. They are written after the
 *   main transaction, in follow-up transactions that each re-check the record's version, and a
 *   list never trusts them: it reads the current record (one BatchGet per index page) and keeps the
 *   row only if that record still lists the image in the row's partition at the row's position.
 *
 * So a list never shows an image through a row the record no longer backs. The cost: after a
 * write, an image may be missing from a ref-row member's list until the follow-up lands (or, if
 * the writer died in between, until the next write or a list that finds the stale row repairs it).
 *
 * The full/ref split depends on the record alone (inlineMemberCount), so each write knows which
 * rows the previous write left trusted: a member whose row goes from full to ref (the record grew
 * too large) gets its ref row in the main transaction, never a stale full row left behind.
 *
 * A membership write (only member_statuses changed) leaves the other full rows as they are: their
 * copies differ from the record only in other members' statuses, which no reader of those rows
 * looks at (a member partition is read by that member, owner and `all` rows by the owner and
 * admins). So adding a member to a widely shared image writes three items, not seventy.
 */
import type { ImageRecord } from '#core/images/image';
import { memberScope, orderValue, SORT_KEYS, scopesOf } from './keys.ts';

/** Full member rows per image; with the image's own rows this stays well inside 100 items. */
export const MAX_INLINE_MEMBER_ROWS = 64;
/** DynamoDB's per-transaction item limit. */
export const TRANSACTION_ITEMS = 100;
/** Of DynamoDB's 4 MB per transaction, what the full rows may take (keys and conditions aside). */
const TRANSACTION_BYTES = 3.5 * 1024 * 1024;
/** A row's keys and eight order values next to the record's JSON, generously. */
const ROW_OVERHEAD_BYTES = 4 * 1024;
/** The record and its all/owner/public-or-community rows: full copies in every write. */
const BASE_FULL_COPIES = 4;

export type RowKind = 'full' | 'ref';

/** How many members (the first ones added) get full rows: a function of the record alone. */
export function inlineMemberCount(image: ImageRecord): number {
  const members = image.member_statuses?.length ?? 0;
  if (members === 0 || image.visibility !== 'shared' || image.status === 'deleted') return 0;
  const rowBytes = Buffer.byteLength(JSON.stringify(image), 'utf8') + ROW_OVERHEAD_BYTES;
  const fitting = Math.max(0, Math.floor(TRANSACTION_BYTES / rowBytes) - BASE_FULL_COPIES);
  return Math.min(members, MAX_INLINE_MEMBER_ROWS, fitting);
}

/** The member partitions of an image (empty unless it is shared). */
export function memberScopesOf(image: ImageRecord): string[] {
  if (image.visibility !== 'shared') return [];
  return (image.member_statuses ?? []).map(([member, status]) => memberScope(member, status));
}

/** Every listing row the image should have: scope → kind. */
export function desiredRows(image: ImageRecord): Map<string, RowKind> {
  const rows = new Map<string, RowKind>();
  for (const scope of scopesOf(image)) rows.set(scope, 'full');
  if (image.status === 'deleted') return rows;
  const inline = inlineMemberCount(image);
  memberScopesOf(image).forEach((scope, i) => {
    rows.set(scope, i < inline ? 'full' : 'ref');
  });
  return rows;
}

export interface RowOp {
  op: 'put-full' | 'put-ref' | 'delete';
  scope: string;
}

export interface RowPlan {
  /** In the record's own transaction. */
  now: RowOp[];
  /** In follow-up transactions, each conditioned on the record still being at the new version. */
  later: RowOp[];
}

function sortValuesChanged(previous: ImageRecord, next: ImageRecord): boolean {
  return SORT_KEYS.some((key) => orderValue(previous, key) !== orderValue(next, key));
}

/** Whether only the member list (and the version) differs between the two records. */
function onlyMembersChanged(previous: ImageRecord, next: ImageRecord): boolean {
  const strip = ({ member_statuses: _members, version: _version, ...rest }: ImageRecord) =>
    JSON.stringify(rest);
  return strip(previous) === strip(next);
}

/**
 * The row writes that take the index from `previous` to `next`. `capacity` is how many row
 * operations the main transaction may hold; what must be in it (full rows, removals of full rows,
 * full rows turning into ref rows) always is, and new or removed ref rows fill what is left.
 */
export function planRowWrites(previous: ImageRecord | null, next: ImageRecord, capacity: number): RowPlan {
  const before = previous ? desiredRows(previous) : new Map<string, RowKind>();
  const after = desiredRows(next);
  const moved = previous === null || sortValuesChanged(previous, next);
  const membersOnly = previous !== null && onlyMembersChanged(previous, next);
  const now: RowOp[] = [];
  const optional: RowOp[] = [];
  const later: RowOp[] = [];
  for (const [scope, kind] of after) {
    if (kind === 'full') {
      if (!(membersOnly && before.get(scope) === 'full')) now.push({ op: 'put-full', scope });
    } else if (before.get(scope) === 'full') now.push({ op: 'put-ref', scope });
    else if (!before.has(scope)) optional.push({ op: 'put-ref', scope });
    // An existing ref row only holds order values: rewrite it only when they changed.
    else if (moved) later.push({ op: 'put-ref', scope });
  }
  for (const [scope, kind] of before) {
    if (after.has(scope)) continue;
    if (kind === 'full') now.push({ op: 'delete', scope });
    else optional.push({ op: 'delete', scope });
  }
  const room = Math.max(0, capacity - now.length);
  return { now: [...now, ...optional.slice(0, room)], later: [...optional.slice(room), ...later] };
}
