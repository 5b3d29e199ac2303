/** Member rules (image-members.ts) and the access policy they rest on (image-access.ts). */
import { describe, expect, it } from 'vitest';
import { canRead, canWrite, listScopes, matchesVisibility, writable } from '#core/images/access';
import type { ImageRecord } from '#core/images/image';
import { StaleWriteError } from '#core/kernel/errors';
import { makePrincipal } from '#core/kernel/principal';
import {
  MembersService,
  parseNewMember,
  parseStatusBody,
  renderMember,
  validateStatus,
} from '#core/sharing/members';
import type { ImageMember, MembershipRepository, MemberWrite } from '#core/sharing/ports';
import { admin, alice, bob, errorOf, LATER, makeImage, NOW } from './fixtures.ts';

const carol = makePrincipal('projC', 'carol', ['member']);

/** An in-memory repository with the real one's version check. */
class MemoryMembers implements MembershipRepository {
  images = new Map<string, ImageRecord>();
  members = new Map<string, ImageMember>();
  writes = 0;
  /** Lets a test change the record behind the service's back once, before the next write. */
  interfere: (() => void) | undefined;

  async get(id: string) {
    return this.images.get(id) ?? null;
  }

  async updateMembership(previous: ImageRecord, next: ImageRecord, member: MemberWrite) {
    this.interfere?.();
    this.interfere = undefined;
    if (this.images.get(next.id)?.version !== previous.version) throw new StaleWriteError('stale');
    this.writes++;
    this.images.set(next.id, next);
    if ('put' in member) this.members.set(`${member.put.image_id}/${member.put.member_id}`, member.put);
    else this.members.delete(`${next.id}/${member.delete}`);
  }

  async getMember(imageId: string, memberId: string) {
    return this.members.get(`${imageId}/${memberId}`) ?? null;
  }

  async listMembers(imageId: string) {
    return [...this.members.values()].filter((m) => m.image_id === imageId);
  }
}

function setup(overrides: Partial<ImageRecord> = {}, quota = 128) {
  const repo = new MemoryMembers();
  const image = makeImage({ visibility: 'shared', ...overrides });
  repo.images.set(image.id, image);
  let clock = NOW;
  const service = new MembersService(repo, { members: quota }, () => clock);
  return { repo, image, service, id: image.id, tick: () => (clock = LATER) };
}

async function kindOf(promise: Promise<unknown>): Promise<{ kind: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { kind: string; message: string };
    return { kind: e.kind, message: e.message };
  }
  throw new Error('expected a refusal');
}

describe('request bodies', () => {
  it('parses {"member": ...} as Glance does', () => {
    expect(parseNewMember({ member: 'projB' })).toBe('projB');
    expect(errorOf(() => parseNewMember({ foo: 'x' }))).toEqual({
      kind: 'bad_request',
      message: 'Member to be added not specified',
    });
    expect(errorOf(() => parseNewMember(['projB'])).message).toBe('Member to be added not specified');
    expect(errorOf(() => parseNewMember(null)).message).toBe('Member to be added not specified');
    expect(errorOf(() => parseNewMember({ member: '' })).message).toBe("Member can't be empty");
    expect(errorOf(() => parseNewMember({ member: 5 })).kind).toBe('bad_request');
    expect(errorOf(() => parseNewMember({ member: 'x'.repeat(256) })).kind).toBe('bad_request');
    expect(parseNewMember({ member: 'x'.repeat(255) })).toHaveLength(255);
  });

  it('needs a status, and only pending, accepted or rejected', () => {
    expect(parseStatusBody({ status: 'whatever' })).toBe('whatever');
    expect(errorOf(() => parseStatusBody({}))).toEqual({
      kind: 'bad_request',
      message: 'Status not specified',
    });
    for (const status of ['pending', 'accepted', 'rejected']) expect(validateStatus(status)).toBe(status);
    for (const status of ['bogus', 'ACCEPTED', 1, null])
      expect(errorOf(() => validateStatus(status)).message).toBe(
        'Incorrect request: Status must be "pending", "accepted" or "rejected".',
      );
  });

  it('renders a member as Glance does', () => {
    expect(
      renderMember({ image_id: 'i', member_id: 'm', status: 'pending', created_at: 'c', updated_at: 'u' }),
    ).toEqual({
      member_id: 'm',
      image_id: 'i',
      status: 'pending',
      created_at: 'c',
      updated_at: 'u',
      schema: '/v2/schemas/member',
    });
  });
});

describe('access policy', () => {
  const shared = makeImage({ visibility: 'shared', member_statuses: [['projB', 'rejected']] });

  it('lets members of a shared image read it whatever their status, never write it', () => {
    for (const status of ['pending', 'accepted', 'rejected'] as const) {
      const image = makeImage({ visibility: 'shared', member_statuses: [['projB', status]] });
      expect(canRead(image, bob)).toBe(true);
      expect(canWrite(image, bob)).toBe(false);
      expect(errorOf(() => writable(image, image.id, bob)).kind).toBe('forbidden');
    }
    expect(canRead(shared, carol)).toBe(false);
    expect(errorOf(() => writable(shared, shared.id, carol)).kind).toBe('not_found');
  });

  it('ignores the member list of a private image', () => {
    const image = makeImage({ visibility: 'private', member_statuses: [['projB', 'accepted']] });
    expect(canRead(image, bob)).toBe(false);
    expect(matchesVisibility(image, bob, undefined, 'all')).toBe(false);
  });

  it('gives the owner and admins read and write, others read of public and community only', () => {
    for (const visibility of ['private', 'shared', 'community', 'public'] as const) {
      const image = makeImage({ visibility });
      expect(canRead(image, alice) && canWrite(image, alice)).toBe(true);
      expect(canRead(image, admin) && canWrite(image, admin)).toBe(true);
      expect(canRead(image, bob)).toBe(visibility === 'public' || visibility === 'community');
      expect(canWrite(image, bob)).toBe(false);
    }
    expect(canRead(makeImage({ status: 'deleted' }), admin)).toBe(false);
  });

  it("reads the consumer's member partitions for the asked member status", () => {
    expect(listScopes(bob, undefined, undefined)).toEqual(['owner#projB', 'public', 'member#projB#accepted']);
    expect(listScopes(bob, 'shared', undefined, 'pending')).toEqual(['owner#projB', 'member#projB#pending']);
    expect(listScopes(bob, 'all', undefined, 'all')).toEqual([
      'owner#projB',
      'public',
      'community',
      'member#projB#pending',
      'member#projB#accepted',
      'member#projB#rejected',
    ]);
    expect(listScopes(bob, 'private', undefined, 'all')).toEqual(['owner#projB']);
    expect(listScopes(admin, 'shared', undefined, 'pending')).toEqual(['all']);
  });

  it('lists shared images by member status, default accepted', () => {
    const image = (status: 'pending' | 'accepted' | 'rejected') =>
      makeImage({ visibility: 'shared', member_statuses: [['projB', status]] });
    expect(matchesVisibility(image('accepted'), bob, undefined)).toBe(true);
    expect(matchesVisibility(image('pending'), bob, undefined)).toBe(false);
    expect(matchesVisibility(image('rejected'), bob, 'shared')).toBe(false);
    expect(matchesVisibility(image('rejected'), bob, 'shared', 'rejected')).toBe(true);
    expect(matchesVisibility(image('pending'), bob, 'shared', 'all')).toBe(true);
    expect(matchesVisibility(image('accepted'), bob, 'private')).toBe(false);
    expect(matchesVisibility(image('accepted'), carol, undefined, 'all')).toBe(false);
    // The owner's own shared images are listed whatever member_status says.
    expect(matchesVisibility(image('pending'), alice, 'shared', 'rejected')).toBe(true);
  });
});

describe('MembersService', () => {
  it('adds a pending member, keeping the order members were added in', async () => {
    const { service, repo, id } = setup();
    const added = await service.add(alice, id, { member: 'projB' });
    expect(added).toEqual({
      image_id: id,
      member_id: 'projB',
      status: 'pending',
      created_at: '2026-11-22T02:11:29Z',
      updated_at: '2026-11-22T02:11:29Z',
    });
    await service.add(alice, id, { member: 'projD' });
    await service.add(admin, id, { member: 'projA2' });
    expect(repo.images.get(id)?.member_statuses).toEqual([
      ['projB', 'pending'],
      ['projD', 'pending'],
      ['projA2', 'pending'],
    ]);
    expect((await service.list(alice, id)).map((m) => m.member_id)).toEqual(['projB', 'projD', 'projA2']);
    // Membership is not metadata: only the version moves.
    const { member_statuses: _m, version, ...rest } = repo.images.get(id) as ImageRecord;
    const { version: before, ...original } = makeImage({ visibility: 'shared' });
    expect(rest).toEqual(original);
    expect(version).toBe(before + 3);
  });

  it('refuses adds by non-owners, to non-shared images, duplicates and past the quota', async () => {
    const { service, repo, id } = setup({ member_statuses: [['projB', 'pending']] }, 2);
    const refused = `Not allowed to create members for image ${id}.`;
    expect(await kindOf(service.add(bob, id, { member: 'projB' }))).toEqual({
      kind: 'forbidden',
      message: refused,
    });
    expect(await kindOf(service.add(bob, id, { member: 'projC' }))).toEqual({
      kind: 'forbidden',
      message: refused,
    });
    expect((await kindOf(service.add(carol, id, { member: 'projC' }))).kind).toBe('not_found');
    expect(await kindOf(service.add(alice, id, { member: 'projB' }))).toEqual({
      kind: 'conflict',
      message: `Member projB is duplicated for image ${id}`,
    });
    await service.add(alice, id, { member: 'projC' });
    expect(await kindOf(service.add(alice, id, { member: 'projD' }))).toEqual({
      kind: 'too_large',
      message: `Image member limit exceeded for image ${id}: The limit has been exceeded on the number of allowed image members for this image. Attempted: 3, Maximum: 2:`,
    });
    expect(repo.writes).toBe(1);
    for (const visibility of ['private', 'public', 'community'] as const) {
      const other = setup({ visibility });
      expect(await kindOf(other.service.add(alice, other.id, { member: 'projB' }))).toEqual({
        kind: 'forbidden',
        message: `Not allowed to create members for image ${other.id}.`,
      });
      expect(other.repo.writes).toBe(0);
    }
  });

  it('checks the body before the image', async () => {
    const { service } = setup();
    expect((await kindOf(service.add(alice, 'missing', {}))).kind).toBe('bad_request');
    expect((await kindOf(service.add(alice, 'missing', { member: 'projB' }))).kind).toBe('not_found');
  });

  it('shows the owner every member, a consumer only itself, and anyone else nothing', async () => {
    const { service, id } = setup();
    await service.add(alice, id, { member: 'projB' });
    await service.add(alice, id, { member: 'projD' });
    expect((await service.list(bob, id)).map((m) => m.member_id)).toEqual(['projB']);
    expect((await service.list(admin, id)).map((m) => m.member_id)).toEqual(['projB', 'projD']);
    expect((await service.show(bob, id, 'projB')).status).toBe('pending');
    expect(await kindOf(service.show(bob, id, 'projD'))).toEqual({
      kind: 'not_found',
      message: `projD not found in the member list of the image ${id}.`,
    });
    expect((await kindOf(service.list(carol, id))).kind).toBe('not_found');
    expect((await kindOf(service.show(carol, id, 'projB'))).kind).toBe('not_found');
  });

  it('lets only the consumer (or an admin) change its status, to any status and back', async () => {
    const { service, repo, id, tick } = setup();
    await service.add(alice, id, { member: 'projB' });
    const writes = repo.writes;
    expect(await kindOf(service.updateStatus(alice, id, 'projB', { status: 'accepted' }))).toEqual({
      kind: 'forbidden',
      message: `Not allowed to update members for image ${id}.`,
    });
    // Permission is checked before the value (a producer's bad value is still 403).
    expect((await kindOf(service.updateStatus(alice, id, 'projB', { status: 'bogus' }))).kind).toBe(
      'forbidden',
    );
    expect((await kindOf(service.updateStatus(bob, id, 'projB', { status: 'bogus' }))).kind).toBe(
      'bad_request',
    );
    expect((await kindOf(service.updateStatus(bob, id, 'projB', {}))).kind).toBe('bad_request');
    expect((await kindOf(service.updateStatus(carol, id, 'projB', { status: 'accepted' }))).kind).toBe(
      'not_found',
    );
    expect(repo.writes).toBe(writes);
    tick();
    for (const status of ['accepted', 'rejected', 'pending', 'accepted'] as const) {
      const updated = await service.updateStatus(bob, id, 'projB', { status });
      expect(updated.status).toBe(status);
      expect(updated.created_at).toBe('2026-11-22T02:11:29Z');
      expect(updated.updated_at).toBe('2026-11-22T03:00:00Z');
      expect(repo.images.get(id)?.member_statuses).toEqual([['projB', status]]);
    }
    expect((await service.updateStatus(admin, id, 'projB', { status: 'rejected' })).status).toBe('rejected');
  });

  it('lets only producers remove members; a consumer cannot remove itself', async () => {
    const { service, repo, id } = setup();
    await service.add(alice, id, { member: 'projB' });
    await service.add(alice, id, { member: 'projD' });
    expect(await kindOf(service.remove(bob, id, 'projB'))).toEqual({
      kind: 'forbidden',
      message: `Not allowed to delete members for image ${id}.`,
    });
    expect((await kindOf(service.remove(bob, id, 'projD'))).kind).toBe('not_found');
    await service.remove(alice, id, 'projB');
    expect(repo.images.get(id)?.member_statuses).toEqual([['projD', 'pending']]);
    expect(await kindOf(service.remove(alice, id, 'projB'))).toEqual({
      kind: 'not_found',
      message: `projB not found in the member list of the image ${id}.`,
    });
    await service.remove(admin, id, 'projD');
    expect(repo.images.get(id)?.member_statuses).toBeUndefined();
    expect(await repo.listMembers(id)).toEqual([]);
  });

  it('keeps the member list of an image made private, but refuses to touch it', async () => {
    const { service, repo, id } = setup({ member_statuses: [['projB', 'accepted']], visibility: 'private' });
    repo.members.set(`${id}/projB`, {
      image_id: id,
      member_id: 'projB',
      status: 'accepted',
      created_at: 'c',
      updated_at: 'u',
    });
    expect(await kindOf(service.list(alice, id))).toEqual({
      kind: 'forbidden',
      message: `Not allowed to list members for image ${id}: Only shared images have members.`,
    });
    expect((await kindOf(service.remove(alice, id, 'projB'))).kind).toBe('forbidden');
    expect((await kindOf(service.show(alice, id, 'projB'))).kind).toBe('not_found');
    expect((await kindOf(service.updateStatus(bob, id, 'projB', { status: 'rejected' }))).kind).toBe(
      'not_found',
    );
    expect(repo.writes).toBe(0);
  });

  it('re-reads and re-applies when another write got in first', async () => {
    const { service, repo, id } = setup();
    repo.interfere = () => {
      const current = repo.images.get(id) as ImageRecord;
      repo.images.set(id, { ...current, name: 'renamed meanwhile', version: current.version + 1 });
    };
    await service.add(alice, id, { member: 'projB' });
    expect(repo.images.get(id)).toMatchObject({
      name: 'renamed meanwhile',
      member_statuses: [['projB', 'pending']],
    });
  });
});
