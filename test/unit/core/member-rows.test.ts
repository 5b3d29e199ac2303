/**
 * How image writes keep member listing rows within DynamoDB's transaction limits
 * (adapters/dynamo/member-rows.ts): which rows are trusted copies, which are pointers, and which writes
 * go into the record's own transaction.
 */
import { describe, expect, it } from 'vitest';
import {
  desiredRows,
  inlineMemberCount,
  MAX_INLINE_MEMBER_ROWS,
  planRowWrites,
  type RowOp,
  TRANSACTION_ITEMS,
} from '#adapters/dynamo/member-rows';
import type { ImageRecord, MemberStatus } from '#core/images/image';
import { makeImage } from './fixtures.ts';

const CAPACITY = TRANSACTION_ITEMS - 2;

function withMembers(
  count: number,
  overrides: Partial<ImageRecord> = {},
  status: MemberStatus = 'pending',
): ImageRecord {
  return makeImage({
    visibility: 'shared',
    member_statuses: Array.from({ length: count }, (_, i): [string, MemberStatus] => [`p${i}`, status]),
    ...overrides,
  });
}

const ops = (list: RowOp[], op: RowOp['op']) => list.filter((o) => o.op === op).map((o) => o.scope);

describe('desiredRows', () => {
  it('gives the first members full rows and the rest pointer rows', () => {
    const rows = desiredRows(withMembers(128));
    expect(rows.get('all')).toBe('full');
    expect(rows.get('owner#projA')).toBe('full');
    expect(rows.get('member#p0#pending')).toBe('full');
    expect(rows.get(`member#p${MAX_INLINE_MEMBER_ROWS - 1}#pending`)).toBe('full');
    expect(rows.get(`member#p${MAX_INLINE_MEMBER_ROWS}#pending`)).toBe('ref');
    expect(rows.get('member#p127#pending')).toBe('ref');
    expect(rows.size).toBe(130);
  });

  it('has no member rows unless the image is shared, and no rows at all once deleted', () => {
    expect([...desiredRows(withMembers(3, { visibility: 'private' })).keys()]).toEqual([
      'all',
      'owner#projA',
    ]);
    expect([...desiredRows(withMembers(3, { visibility: 'public' })).keys()]).toEqual([
      'all',
      'owner#projA',
      'public',
    ]);
    expect(desiredRows(withMembers(3, { status: 'deleted' })).size).toBe(0);
  });

  it('keeps fewer full rows when the record is large (4 MB per transaction)', () => {
    const big = withMembers(128, { properties: { blob: 'x'.repeat(300_000) } });
    expect(inlineMemberCount(big)).toBeLessThan(10);
    expect(inlineMemberCount(withMembers(10))).toBe(10);
  });
});

describe('planRowWrites', () => {
  it('writes a new image in one transaction', () => {
    const plan = planRowWrites(null, makeImage({ visibility: 'shared' }), CAPACITY);
    expect(ops(plan.now, 'put-full')).toEqual(['all', 'owner#projA']);
    expect(plan.later).toEqual([]);
  });

  it('writes only the new member row when a member is added', () => {
    const before = withMembers(5);
    const after = withMembers(6);
    const plan = planRowWrites(before, { ...after, version: before.version + 1 }, CAPACITY);
    expect(plan.now).toEqual([{ op: 'put-full', scope: 'member#p5#pending' }]);
    expect(plan.later).toEqual([]);
  });

  it('moves a status change from one partition to the other atomically', () => {
    const before = withMembers(100);
    const statuses = (before.member_statuses ?? []).map(([m, s]): [string, MemberStatus] => [
      m,
      m === 'p80' ? 'accepted' : s,
    ]);
    const plan = planRowWrites(before, { ...before, member_statuses: statuses }, CAPACITY);
    expect(plan.now).toEqual([
      { op: 'put-ref', scope: 'member#p80#accepted' },
      { op: 'delete', scope: 'member#p80#pending' },
    ]);
    expect(plan.later).toEqual([]);
  });

  it('rewrites every full row with a metadata change, and pointer rows afterwards when the order moved', () => {
    const before = withMembers(128);
    const renamed = { ...before, name: 'other', updated_at: '2026-11-23T00:00:00Z' };
    const plan = planRowWrites(before, renamed, CAPACITY);
    expect(ops(plan.now, 'put-full')).toHaveLength(2 + MAX_INLINE_MEMBER_ROWS);
    expect(ops(plan.later, 'put-ref')).toHaveLength(128 - MAX_INLINE_MEMBER_ROWS);
    expect(plan.now.length).toBeLessThanOrEqual(CAPACITY);
    // Pointer rows hold only order values: a change that leaves them alone does not touch them.
    const tagged = planRowWrites(before, { ...before, tags: ['new'] }, CAPACITY);
    expect(tagged.later).toEqual([]);
  });

  it('deletes every full member row in the transaction when the image leaves `shared`', () => {
    const before = withMembers(128);
    const plan = planRowWrites(before, { ...before, visibility: 'private' }, CAPACITY);
    const fullRows = Array.from({ length: MAX_INLINE_MEMBER_ROWS }, (_, i) => `member#p${i}#pending`);
    expect(ops(plan.now, 'delete')).toEqual(expect.arrayContaining(fullRows));
    expect(plan.now.length).toBeLessThanOrEqual(CAPACITY);
    expect([...ops(plan.now, 'delete'), ...ops(plan.later, 'delete')]).toHaveLength(128);
  });

  it('puts as many new pointer rows in the transaction as fit when the image becomes shared again', () => {
    const before = withMembers(128, { visibility: 'private' });
    const plan = planRowWrites(before, { ...before, visibility: 'shared' }, CAPACITY);
    expect(plan.now).toHaveLength(CAPACITY);
    expect(plan.now.length + plan.later.length).toBe(2 + 128);
  });

  it('turns full rows into pointer rows inside the transaction when the record outgrows them', () => {
    const before = withMembers(64);
    const grown = { ...before, properties: { blob: 'x'.repeat(300_000) } };
    const plan = planRowWrites(before, grown, CAPACITY);
    const demoted = ops(plan.now, 'put-ref');
    expect(demoted.length).toBe(64 - inlineMemberCount(grown));
    expect(plan.later.filter((o) => demoted.includes(o.scope))).toEqual([]);
  });

  it('promotes the next member to a full row when an earlier one leaves', () => {
    const before = withMembers(100);
    const after = { ...before, member_statuses: (before.member_statuses ?? []).slice(1) };
    const plan = planRowWrites(before, after, CAPACITY);
    expect(plan.now).toEqual([
      { op: 'put-full', scope: `member#p${MAX_INLINE_MEMBER_ROWS}#pending` },
      { op: 'delete', scope: 'member#p0#pending' },
    ]);
  });
});
