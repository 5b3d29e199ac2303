/** The `claims` auth mode's mapping from authorizer claims to a caller (core/kernel/claims.ts). */
import { describe, expect, it } from 'vitest';
import { parseRoles, principalFromClaims } from '#core/kernel/claims';

const names = { project: 'project', roles: 'roles', user: 'sub' };

describe('parseRoles', () => {
  it.each([
    [
      ['admin', 'member'],
      ['admin', 'member'],
    ],
    ['admin,member', ['admin', 'member']],
    ['admin member', ['admin', 'member']],
    [' admin , member ,, ', ['admin', 'member']],
    // API Gateway's rendering of a JWT array claim.
    ['[admin member]', ['admin', 'member']],
    ['["admin","member"]', ['admin', 'member']],
    ['member member', ['member']],
    ['', []],
    [undefined, []],
    [42, []],
    [['admin', 7, ''], ['admin']],
  ])('%j -> %j', (value, roles) => {
    expect(parseRoles(value)).toEqual(roles);
  });
});

describe('principalFromClaims', () => {
  it('maps project, user and roles, admin from the admin role', () => {
    expect(principalFromClaims({ project: 'projA', sub: 'alice', roles: '[member reader]' }, names)).toEqual({
      project: 'projA',
      user: 'alice',
      roles: ['member', 'reader'],
      isAdmin: false,
    });
    expect(principalFromClaims({ project: 'p', roles: ['admin'] }, names)).toMatchObject({
      isAdmin: true,
      user: '',
    });
  });

  it('reads the configured claim names (e.g. a Lambda authorizer context)', () => {
    const custom = { project: 'custom:tenant', roles: 'custom:groups', user: 'user' };
    expect(
      principalFromClaims({ 'custom:tenant': 'projB', 'custom:groups': 'member,admin', user: 'bob' }, custom),
    ).toEqual({ project: 'projB', user: 'bob', roles: ['member', 'admin'], isAdmin: true });
  });

  it('refuses claims that name no project', () => {
    expect(principalFromClaims(undefined, names)).toBeNull();
    expect(principalFromClaims({ sub: 'alice', roles: 'admin' }, names)).toBeNull();
    expect(principalFromClaims({ project: '  ', roles: 'admin' }, names)).toBeNull();
    expect(principalFromClaims({ project: ['projA'] }, names)).toBeNull();
  });
});
