import { describe, expect, it } from 'vitest';
import { BadRequestError, ConflictError } from '#core/kernel/errors';
import {
  assertExpected,
  type HistoryEntry,
  parseReference,
  planRetention,
  type ReferenceRecord,
  rollbackTarget,
} from '#core/references/references';

const ref = (image_id: string, version: number): ReferenceRecord => ({
  namespace: 'p',
  name: 'app',
  tag: 'prod',
  image_id,
  created_at: '2026-01-01T00:00:00Z',
  updated_at: '2026-01-01T00:00:00Z',
  updated_by: 'u@p',
  version,
});

const entry = (seq: number, to: string | null, at: string, tag = 'prod'): HistoryEntry => ({
  namespace: 'p',
  name: 'app',
  tag,
  seq,
  action: seq === 1 ? 'create' : 'move',
  from: null,
  to,
  by: 'u@p',
  at,
});

describe('parseReference', () => {
  it('splits name and tag, defaulting the tag to latest', () => {
    expect(parseReference('fedora:40')).toEqual({ name: 'fedora', tag: '40' });
    expect(parseReference('ubuntu:focal-desktop')).toEqual({ name: 'ubuntu', tag: 'focal-desktop' });
    expect(parseReference('alpine')).toEqual({ name: 'alpine', tag: 'latest' });
  });

  it('refuses names and tags that are not well formed', () => {
    for (const bad of ['Fedora:1', ':1', 'a..b:1', 'a:', 'a:.x', 'a:b c', 'a#b:1'])
      expect(() => parseReference(bad), bad).toThrow(BadRequestError);
  });
});

describe('assertExpected', () => {
  it('passes when the expectation matches or is absent, and conflicts otherwise', () => {
    expect(() => assertExpected(ref('x', 1), 'x')).not.toThrow();
    expect(() => assertExpected(ref('x', 1), undefined)).not.toThrow();
    expect(() => assertExpected(ref('x', 1), 'y')).toThrow(ConflictError);
  });
});

describe('rollbackTarget', () => {
  const history = [
    entry(1, 'a', '2026-01-01T00:00:01Z'),
    entry(2, 'b', '2026-01-01T00:00:02Z'),
    entry(3, 'c', '2026-01-01T00:00:03Z'),
  ];

  it('returns the image before the current one', () => {
    expect(rollbackTarget(ref('c', 3), history)).toBe('b');
  });

  it('accepts an explicit earlier image and refuses one never pointed to', () => {
    expect(rollbackTarget(ref('c', 3), history, 'a')).toBe('a');
    expect(() => rollbackTarget(ref('c', 3), history, 'z')).toThrow(BadRequestError);
    expect(() => rollbackTarget(ref('c', 3), history, 'c')).toThrow(ConflictError);
  });

  it('conflicts when there is nothing earlier', () => {
    expect(() => rollbackTarget(ref('a', 1), [entry(1, 'a', '2026-01-01T00:00:01Z')])).toThrow(ConflictError);
  });
});

describe('planRetention', () => {
  const history = [
    entry(1, 'v1', '2026-01-01T00:00:01Z'),
    entry(2, 'v2', '2026-01-01T00:00:02Z'),
    entry(3, 'v3', '2026-01-01T00:00:03Z'),
    entry(4, 'v4', '2026-01-01T00:00:04Z'),
  ];
  const base = {
    history,
    pointedTo: new Set(['v4']),
    inUse: new Set<string>(),
    hiddenAt: new Map<string, number>(),
    now: 1_000_000,
  };

  it('hides versions beyond the newest `keep`', () => {
    expect(planRetention({ ...base, policy: { keep: 2, grace_seconds: 60 } })).toEqual({
      hide: ['v2', 'v1'],
      deactivate: [],
      restore: [],
    });
  });

  it('never retires an image a reference points to or an instance runs from', () => {
    const plan = planRetention({
      ...base,
      policy: { keep: 1, grace_seconds: 60 },
      pointedTo: new Set(['v4', 'v2']),
      inUse: new Set(['v1']),
    });
    expect(plan).toEqual({ hide: ['v3'], deactivate: [], restore: [] });
  });

  it('orders versions made within the same second by their sequence', () => {
    const sameSecond = [entry(1, 'v1', '2026-01-01T00:00:01Z'), entry(2, 'v2', '2026-01-01T00:00:01Z')];
    const plan = planRetention({
      ...base,
      history: sameSecond,
      pointedTo: new Set(['v2']),
      policy: { keep: 1, grace_seconds: 60 },
    });
    expect(plan).toEqual({ hide: ['v1'], deactivate: [], restore: [] });
  });

  it('deactivates hidden versions only after the grace period', () => {
    const hiddenAt = new Map([
      ['v1', 1_000_000 - 61_000],
      ['v2', 1_000_000 - 59_000],
    ]);
    expect(planRetention({ ...base, policy: { keep: 2, grace_seconds: 60 }, hiddenAt })).toEqual({
      hide: [],
      deactivate: ['v1'],
      restore: [],
    });
  });

  it('restores a hidden version a reference points to again, or that is back within `keep`', () => {
    const hiddenAt = new Map([
      ['v1', 1_000_000 - 61_000],
      ['v2', 1_000_000 - 61_000],
      ['v3', 1_000_000 - 61_000],
    ]);
    // v4 is the newest; v2 is pointed to again (a rollback); v1 and v3 stay retired.
    expect(
      planRetention({
        ...base,
        pointedTo: new Set(['v4', 'v2']),
        policy: { keep: 1, grace_seconds: 60 },
        hiddenAt,
      }),
    ).toEqual({ hide: [], deactivate: ['v3', 'v1'], restore: ['v2'] });
    // A larger `keep` takes v3 back too.
    expect(planRetention({ ...base, policy: { keep: 2, grace_seconds: 60 }, hiddenAt }).restore).toEqual([
      'v3',
    ]);
  });
});
