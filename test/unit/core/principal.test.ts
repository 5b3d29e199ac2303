import { describe, expect, it } from 'vitest';
import {
  canReadProject,
  canWriteProject,
  hasMemberRole,
  hasReaderRole,
  isHostAgent,
  makePrincipal,
} from '#core/kernel/principal';

describe('roles (Glance secure-RBAC defaults)', () => {
  const reader = makePrincipal('projA', 'dave', ['reader']);
  const member = makePrincipal('projA', 'alice', ['member']);
  const admin = makePrincipal('admin', 'root', ['admin']);
  const nobody = makePrincipal('projA', 'oscar', ['observer']);
  const host = makePrincipal('hosts', 'h1', ['host']);

  it('lets a reader read its project and write nothing', () => {
    expect(canReadProject(reader, 'projA')).toBe(true);
    expect(canWriteProject(reader, 'projA')).toBe(false);
    expect(canReadProject(reader, 'projB')).toBe(false);
  });

  it('lets a member read and write its own project only', () => {
    expect(canReadProject(member, 'projA')).toBe(true);
    expect(canWriteProject(member, 'projA')).toBe(true);
    expect(canWriteProject(member, 'projB')).toBe(false);
    expect(canWriteProject(member, null)).toBe(false);
  });

  it('applies Keystone implied roles: admin is member and reader, member is reader', () => {
    expect([hasReaderRole(admin), hasMemberRole(admin)]).toEqual([true, true]);
    expect([hasReaderRole(member), hasMemberRole(member)]).toEqual([true, true]);
    expect([hasReaderRole(reader), hasMemberRole(reader)]).toEqual([true, false]);
    expect(canWriteProject(admin, 'projB')).toBe(true);
    expect(canWriteProject(admin, null)).toBe(true);
  });

  it('gives a token with no recognised role nothing, even in its own project', () => {
    expect(hasReaderRole(nobody)).toBe(false);
    expect(canReadProject(nobody, 'projA')).toBe(false);
    expect(canWriteProject(nobody, 'projA')).toBe(false);
  });

  it('compares role names without regard to case, as oslo.policy does', () => {
    expect(makePrincipal('p', 'u', ['Admin']).isAdmin).toBe(true);
    expect(canWriteProject(makePrincipal('p', 'u', ['Member']), 'p')).toBe(true);
  });

  it('keeps host agents out of projects: they follow their own rules', () => {
    expect(isHostAgent(host)).toBe(true);
    expect(hasReaderRole(host)).toBe(false);
    expect(canWriteProject(host, 'hosts')).toBe(false);
  });
});
