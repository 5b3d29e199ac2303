/**
 * The partitions a list reads (core: listScopes) and the partitions an image's listing rows are
 * written under (adapters: scopesOf, memberScopesOf) come from the same builders: each viewer's
 * list reads a partition the image is written in.
 */
import { describe, expect, it } from 'vitest';
import { SCOPE_ALL, SORT_KEYS, scopesOf } from '#adapters/dynamo/keys';
import { memberScopesOf } from '#adapters/dynamo/member-rows';
import { listScopes } from '#core/images/access';
import { SORT_KEYS as CORE_SORT_KEYS } from '#core/images/list-query';
import { admin, alice, bob, makeImage } from '../core/fixtures.ts';

const written = (image: ReturnType<typeof makeImage>) => [...scopesOf(image), ...memberScopesOf(image)];

describe('listing scopes', () => {
  it("the sort keys backed by indexes are the list query's own", () => {
    expect(SORT_KEYS).toBe(CORE_SORT_KEYS);
  });

  it.each([
    ['its owner', makeImage(), listScopes(alice, undefined, undefined)],
    ['an admin', makeImage(), listScopes(admin, undefined, undefined)],
    ['an admin, by owner', makeImage(), listScopes(admin, undefined, 'projA')],
    ['anyone, public', makeImage({ visibility: 'public' }), listScopes(bob, 'public', undefined)],
    ['anyone, community', makeImage({ visibility: 'community' }), listScopes(bob, 'community', undefined)],
    [
      'an accepted member',
      makeImage({ visibility: 'shared', member_statuses: [['projB', 'accepted']] }),
      listScopes(bob, 'shared', undefined),
    ],
    [
      'a pending member asking for pending',
      makeImage({ visibility: 'shared', member_statuses: [['projB', 'pending']] }),
      listScopes(bob, 'shared', undefined, 'pending'),
    ],
  ])('an image %s may see is written in a partition its list reads', (_who, image, read) => {
    expect(read.some((scope) => written(image).includes(scope))).toBe(true);
  });

  it("every image but a deleted one is in the admins' partition", () => {
    expect(scopesOf(makeImage())).toContain(SCOPE_ALL);
    expect(scopesOf(makeImage({ status: 'deleted' }))).toEqual([]);
  });
});
