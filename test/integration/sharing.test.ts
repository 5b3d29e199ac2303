/**
 * Visibility, image members and roles through the HTTP API (tokens mode): a producer (alice,
 * projA), a consumer (bob, projB), a stranger (carol, projC) and an admin. Every refusal is
 * checked for its status code and for having changed nothing.
 */
import { PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceConfig } from '#platform/config';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { expectError, type ImageList, ImagesApi, type ImageView, peek } from '../helpers/images.ts';

let t: TestBackend;
let api: ImagesApi;

interface MemberView {
  member_id: string;
  image_id: string;
  status: string;
  created_at: string;
  updated_at: string;
  schema: string;
}

function members(persona: Persona, id: string): Promise<Response> {
  return t.request('GET', `/v2/images/${id}/members`, { token: t.tokens[persona] });
}

function member(persona: Persona, id: string, memberId: string): Promise<Response> {
  return t.request('GET', `/v2/images/${id}/members/${memberId}`, { token: t.tokens[persona] });
}

function addMember(persona: Persona, id: string, body: unknown): Promise<Response> {
  return t.request('POST', `/v2/images/${id}/members`, {
    token: t.tokens[persona],
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
}

function setStatus(persona: Persona, id: string, memberId: string, body: unknown): Promise<Response> {
  return t.request('PUT', `/v2/images/${id}/members/${memberId}`, {
    token: t.tokens[persona],
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
}

function removeMember(persona: Persona, id: string, memberId: string): Promise<Response> {
  return t.request('DELETE', `/v2/images/${id}/members/${memberId}`, { token: t.tokens[persona] });
}

async function ok<T>(response: Response, status = 200): Promise<T> {
  expect(response.status, await peek(response)).toBe(status);
  return (await response.json()) as T;
}

/** The member list as the owner sees it: [member_id, status] pairs. */
async function memberTable(id: string): Promise<Array<[string, string]>> {
  const body = await ok<{ members: MemberView[] }>(await members('admin', id));
  return body.members.map((m) => [m.member_id, m.status]);
}

/** Ids in a persona's list for `query`, following `next` links. */
async function listed(persona: Persona, query = ''): Promise<string[]> {
  const ids: string[] = [];
  let path: string | undefined = `/v2/images?limit=200${query ? `&${query}` : ''}`;
  while (path) {
    const response: Response = await t.request('GET', path, { token: t.tokens[persona] });
    const page = await ok<ImageList>(response);
    ids.push(...page.images.map((image) => image.id));
    path = page.images.length > 0 ? page.next : undefined;
  }
  return ids;
}

/** Image ids in one member partition of the listing index (what "shared with me" reads). */
async function indexPartition(scope: string): Promise<string[]> {
  return (await indexRows(scope)).map((item) => String(item.pk).slice('IMG#'.length)).sort();
}

async function indexRows(scope: string): Promise<Record<string, unknown>[]> {
  const out = await t.backend.clients.dynamo.send(
    new QueryCommand({
      TableName: serviceConfig().tableName,
      IndexName: 'by_created_at',
      KeyConditionExpression: '#scope = :scope',
      ExpressionAttributeNames: { '#scope': 'scope' },
      ExpressionAttributeValues: { ':scope': scope },
    }),
  );
  return out.Items ?? [];
}

beforeAll(async () => {
  t = await startTestBackend();
  api = new ImagesApi(t);
});

afterAll(async () => {
  await t?.stop();
});

describe('visibility', () => {
  const img = {} as Record<'private' | 'shared' | 'community' | 'public', ImageView>;

  beforeAll(async () => {
    img.private = await api.create('alice', { name: 'vis-private', visibility: 'private', tags: ['vis'] });
    img.shared = await api.create('alice', { name: 'vis-shared', tags: ['vis'] });
    img.community = await api.create('alice', {
      name: 'vis-community',
      visibility: 'community',
      tags: ['vis'],
    });
    img.public = await api.create('admin', { name: 'vis-public', visibility: 'public', tags: ['vis'] });
  });

  it('creates images as shared by default', () => {
    expect(img.shared.visibility).toBe('shared');
  });

  it('shows public and community images to everyone, shared and private ones only to the owner and admins', async () => {
    for (const persona of ['alice', 'admin'] as const)
      for (const image of Object.values(img)) expect((await api.show(persona, image.id)).id).toBe(image.id);
    for (const persona of ['bob', 'carol'] as const) {
      expect((await api.show(persona, img.public.id)).id).toBe(img.public.id);
      expect((await api.show(persona, img.community.id)).id).toBe(img.community.id);
      for (const hidden of [img.private, img.shared]) {
        const response = await t.request('GET', `/v2/images/${hidden.id}`, { token: t.tokens[persona] });
        // 404, not 403: nothing tells another project that the image exists.
        await expectError(response, 404, `No image found with ID ${hidden.id}`);
      }
    }
  });

  it("refuses every write to another project's invisible image with 404, and to a visible one with 403", async () => {
    for (const hidden of [img.private, img.shared]) {
      await expectError(
        await api.patch('bob', hidden.id, [{ op: 'replace', path: '/name', value: 'x' }]),
        404,
      );
      await expectError(await t.request('DELETE', `/v2/images/${hidden.id}`, { token: t.tokens.bob }), 404);
      await expectError(
        await t.request('PUT', `/v2/images/${hidden.id}/tags/x`, { token: t.tokens.bob }),
        404,
      );
      await expectError(await api.upload('bob', hidden.id, Buffer.from('data')), 404);
      await expectError(await api.download('bob', hidden.id), 404);
      await expectError(await members('bob', hidden.id), 404);
      await api.expectUnchanged(hidden);
    }
    for (const visible of [img.community, img.public]) {
      await expectError(
        await api.patch('bob', visible.id, [{ op: 'replace', path: '/name', value: 'x' }]),
        403,
      );
      await expectError(await t.request('DELETE', `/v2/images/${visible.id}`, { token: t.tokens.bob }), 403);
      await api.expectUnchanged(visible);
    }
  });

  it('lists by visibility as Glance does', async () => {
    const names = async (persona: Persona, query: string) => {
      const response = await t.request('GET', `/v2/images?tag=vis&sort=name:asc${query}`, {
        token: t.tokens[persona],
      });
      return (await ok<ImageList>(response)).images.map((image) => image.name);
    };
    // Default: own images (community ones too) and public ones; other projects' community images only on request.
    expect(await names('alice', '')).toEqual(['vis-community', 'vis-private', 'vis-public', 'vis-shared']);
    expect(await names('bob', '')).toEqual(['vis-public']);
    expect(await names('bob', '&visibility=community')).toEqual(['vis-community']);
    expect(await names('bob', '&visibility=all')).toEqual(['vis-community', 'vis-public']);
    expect(await names('bob', '&visibility=public')).toEqual(['vis-public']);
    expect(await names('bob', '&visibility=private')).toEqual([]);
    expect(await names('bob', '&visibility=shared')).toEqual([]);
    expect(await names('alice', '&visibility=private')).toEqual(['vis-private']);
    expect(await names('alice', '&visibility=shared')).toEqual(['vis-shared']);
    expect(await names('alice', '&visibility=all')).toEqual([
      'vis-community',
      'vis-private',
      'vis-public',
      'vis-shared',
    ]);
    expect(await names('admin', '&visibility=private')).toEqual(['vis-private']);
    expect(await names('admin', '&visibility=all')).toEqual([
      'vis-community',
      'vis-private',
      'vis-public',
      'vis-shared',
    ]);
    for (const bad of ['bogus', 'PUBLIC', ''])
      await expectError(
        await t.request('GET', `/v2/images?visibility=${bad}`, { token: t.tokens.alice }),
        400,
        `Invalid visibility value: ${bad}`,
      );
  });

  it('lets only admins make an image public, and refuses the rest without a change', async () => {
    const response = await api.patch('alice', img.private.id, [
      { op: 'replace', path: '/visibility', value: 'public' },
    ]);
    await expectError(response, 403, 'You are not authorized to complete publicize_image action.');
    await api.expectUnchanged(img.private);
    const before = await listed('bob');
    await expectError(
      await t.request('POST', '/v2/images', {
        token: t.tokens.alice,
        body: { name: 'nope', visibility: 'public' },
      }),
      403,
    );
    expect(await listed('bob')).toEqual(before);
    // Community, shared and private are the owner's to choose.
    for (const visibility of ['community', 'shared', 'private'])
      expect(
        (
          await ok<ImageView>(
            await api.patch('alice', img.private.id, [
              { op: 'replace', path: '/visibility', value: visibility },
            ]),
          )
        ).visibility,
      ).toBe(visibility);
    const made = await ok<ImageView>(
      await api.patch('admin', img.private.id, [{ op: 'replace', path: '/visibility', value: 'public' }]),
    );
    expect(made.visibility).toBe('public');
    expect(await listed('carol')).toContain(img.private.id);
    await ok(
      await api.patch('admin', img.private.id, [{ op: 'replace', path: '/visibility', value: 'private' }]),
    );
    expect(await listed('carol')).not.toContain(img.private.id);
  });

  it('lets an admin act on any image and set its owner; nobody else may', async () => {
    const image = await api.create('alice', { name: 'owned', visibility: 'private' });
    await expectError(
      await api.patch('alice', image.id, [{ op: 'replace', path: '/owner', value: 'projB' }]),
      403,
    );
    await api.expectUnchanged(image);
    const renamed = await ok<ImageView>(
      await api.patch('admin', image.id, [{ op: 'replace', path: '/name', value: 'by-admin' }]),
    );
    expect(renamed.name).toBe('by-admin');
    const moved = await ok<ImageView>(
      await api.patch('admin', image.id, [{ op: 'replace', path: '/owner', value: 'projB' }]),
    );
    expect(moved.owner).toBe('projB');
    // The new owner writes it; the old one no longer even sees it.
    expect(
      (
        await ok<ImageView>(
          await api.patch('bob', image.id, [{ op: 'replace', path: '/name', value: 'bobs' }]),
        )
      ).name,
    ).toBe('bobs');
    await expectError(await t.request('GET', `/v2/images/${image.id}`, { token: t.tokens.alice }), 404);
    expect(await listed('bob')).toContain(image.id);
    expect(await listed('alice')).not.toContain(image.id);
  });
});

describe('image members', () => {
  let shared: ImageView;
  const data = Buffer.from('shared image bytes, bootable by members whatever their status');

  beforeAll(async () => {
    shared = await api.createActive('alice', data, { name: 'to-share' });
  });

  it('refuses members on images that are not shared (403) and changes nothing', async () => {
    const privateImage = await api.create('alice', { name: 'priv', visibility: 'private' });
    const community = await api.create('alice', { name: 'comm', visibility: 'community' });
    const publicImage = await api.create('admin', { name: 'pub', visibility: 'public' });
    for (const [persona, image] of [
      ['alice', privateImage],
      ['alice', community],
      ['admin', publicImage],
    ] as const) {
      await expectError(
        await addMember(persona, image.id, { member: 'projB' }),
        403,
        `Not allowed to create members for image ${image.id}.`,
      );
      await expectError(
        await members(persona, image.id),
        403,
        `Not allowed to list members for image ${image.id}: Only shared images have members.`,
      );
      await api.expectUnchanged(await api.show('admin', image.id));
    }
    expect(await indexPartition('member#projB#pending')).toEqual([]);
  });

  it('adds a member as pending (200), and refuses duplicates (409) and bad bodies (400)', async () => {
    const added = await ok<MemberView>(await addMember('alice', shared.id, { member: 'projB' }));
    expect(added).toEqual({
      member_id: 'projB',
      image_id: shared.id,
      status: 'pending',
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      updated_at: added.created_at,
      schema: '/v2/schemas/member',
    });
    await expectError(
      await addMember('alice', shared.id, { member: 'projB' }),
      409,
      `Member projB is duplicated for image ${shared.id}`,
    );
    await expectError(
      await addMember('alice', shared.id, { foo: 'projB' }),
      400,
      'Member to be added not specified',
    );
    await expectError(await addMember('alice', shared.id, { member: '' }), 400, "Member can't be empty");
    await expectError(
      await addMember('alice', shared.id, '{"member": '),
      400,
      'Malformed JSON in request body.',
    );
    await ok(await addMember('alice', shared.id, { member: 'projD' }));
    expect(await memberTable(shared.id)).toEqual([
      ['projB', 'pending'],
      ['projD', 'pending'],
    ]);
    // Membership is not image metadata: the image itself is unchanged.
    expect(await api.show('alice', shared.id)).toEqual(shared);
  });

  it('shows the owner every member and a consumer only itself', async () => {
    const owner = await ok<{ members: MemberView[]; schema: string }>(await members('alice', shared.id));
    expect(owner.schema).toBe('/v2/schemas/members');
    expect(owner.members.map((m) => m.member_id)).toEqual(['projB', 'projD']);
    const consumer = await ok<{ members: MemberView[] }>(await members('bob', shared.id));
    expect(consumer.members.map((m) => m.member_id)).toEqual(['projB']);
    expect((await ok<MemberView>(await member('bob', shared.id, 'projB'))).status).toBe('pending');
    expect((await ok<MemberView>(await member('alice', shared.id, 'projD'))).status).toBe('pending');
    await expectError(
      await member('bob', shared.id, 'projD'),
      404,
      `projD not found in the member list of the image ${shared.id}.`,
    );
    await expectError(
      await member('alice', shared.id, 'projZ'),
      404,
      `projZ not found in the member list of the image ${shared.id}.`,
    );
  });

  it('gives a non-member 404 everywhere, and changes nothing', async () => {
    await expectError(await t.request('GET', `/v2/images/${shared.id}`, { token: t.tokens.carol }), 404);
    await expectError(await members('carol', shared.id), 404);
    await expectError(await member('carol', shared.id, 'projB'), 404);
    await expectError(await member('carol', shared.id, 'projC'), 404);
    await expectError(await addMember('carol', shared.id, { member: 'projC' }), 404);
    await expectError(await setStatus('carol', shared.id, 'projB', { status: 'accepted' }), 404);
    await expectError(await setStatus('carol', shared.id, 'projC', { status: 'accepted' }), 404);
    await expectError(await removeMember('carol', shared.id, 'projB'), 404);
    for (const status of ['pending', 'accepted', 'rejected', 'all'])
      expect(await listed('carol', `member_status=${status}&visibility=shared`)).not.toContain(shared.id);
    expect(await memberTable(shared.id)).toEqual([
      ['projB', 'pending'],
      ['projD', 'pending'],
    ]);
  });

  it('lets a pending member read and download the image but not list it by default', async () => {
    expect((await api.show('bob', shared.id)).id).toBe(shared.id);
    const download = await api.download('bob', shared.id);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer())).toEqual(data);
    expect(await listed('bob')).not.toContain(shared.id);
    expect(await listed('bob', 'visibility=shared')).not.toContain(shared.id);
    expect(await listed('bob', 'member_status=pending')).toContain(shared.id);
    expect(await listed('bob', 'visibility=shared&member_status=pending')).toContain(shared.id);
    expect(await listed('bob', 'visibility=shared&member_status=all')).toContain(shared.id);
    expect(await listed('bob', 'visibility=shared&member_status=accepted')).not.toContain(shared.id);
    expect(await listed('bob', 'visibility=shared&member_status=rejected')).not.toContain(shared.id);
    await expectError(
      await t.request('GET', '/v2/images?member_status=bogus', { token: t.tokens.bob }),
      400,
      'Invalid status: bogus',
    );
  });

  it("keeps the producer from changing a member's status, and the consumer from adding or removing itself", async () => {
    await expectError(
      await setStatus('alice', shared.id, 'projB', { status: 'accepted' }),
      403,
      `Not allowed to update members for image ${shared.id}.`,
    );
    await expectError(
      await addMember('bob', shared.id, { member: 'projB' }),
      403,
      `Not allowed to create members for image ${shared.id}.`,
    );
    await expectError(await addMember('bob', shared.id, { member: 'projC' }), 403);
    await expectError(
      await removeMember('bob', shared.id, 'projB'),
      403,
      `Not allowed to delete members for image ${shared.id}.`,
    );
    await expectError(await removeMember('bob', shared.id, 'projD'), 404);
    await expectError(await setStatus('bob', shared.id, 'projD', { status: 'accepted' }), 404);
    await expectError(
      await setStatus('bob', shared.id, 'projB', { state: 'accepted' }),
      400,
      'Status not specified',
    );
    await expectError(
      await setStatus('bob', shared.id, 'projB', { status: 'bogus' }),
      400,
      'Incorrect request: Status must be "pending", "accepted" or "rejected".',
    );
    expect(await memberTable(shared.id)).toEqual([
      ['projB', 'pending'],
      ['projD', 'pending'],
    ]);
  });

  it('keeps members read-only on the image itself', async () => {
    await expectError(
      await api.patch('bob', shared.id, [{ op: 'replace', path: '/name', value: 'mine' }]),
      403,
    );
    await expectError(await t.request('DELETE', `/v2/images/${shared.id}`, { token: t.tokens.bob }), 403);
    await expectError(await t.request('PUT', `/v2/images/${shared.id}/tags/x`, { token: t.tokens.bob }), 403);
    await expectError(
      await t.request('POST', `/v2/images/${shared.id}/actions/deactivate`, { token: t.tokens.bob }),
      403,
    );
    await api.expectUnchanged(shared);
  });

  it('lists an accepted image for the consumer, and hides it again when rejected or pending', async () => {
    const accepted = await ok<MemberView>(await setStatus('bob', shared.id, 'projB', { status: 'accepted' }));
    expect(accepted.status).toBe('accepted');
    expect(await listed('bob')).toContain(shared.id);
    expect(await listed('bob', 'visibility=shared')).toContain(shared.id);
    expect(await listed('bob', 'visibility=all')).toContain(shared.id);
    expect(await listed('bob', 'member_status=pending')).not.toContain(shared.id);
    // Read from the consumer's own index partition, one per status.
    expect(await indexPartition('member#projB#accepted')).toContain(shared.id);
    expect(await indexPartition('member#projB#pending')).not.toContain(shared.id);

    expect(
      (await ok<MemberView>(await setStatus('bob', shared.id, 'projB', { status: 'rejected' }))).status,
    ).toBe('rejected');
    expect(await listed('bob')).not.toContain(shared.id);
    expect(await listed('bob', 'visibility=shared&member_status=rejected')).toContain(shared.id);
    expect((await api.show('bob', shared.id)).id).toBe(shared.id);
    expect((await api.download('bob', shared.id)).status).toBe(200);
    expect(await indexPartition('member#projB#accepted')).not.toContain(shared.id);

    expect(
      (await ok<MemberView>(await setStatus('bob', shared.id, 'projB', { status: 'pending' }))).status,
    ).toBe('pending');
    expect(await listed('bob', 'member_status=pending')).toContain(shared.id);
    expect(await listed('bob', 'member_status=rejected')).not.toContain(shared.id);
    // The owner sees the consumer's answer; the producer's other member is untouched.
    expect(await memberTable(shared.id)).toEqual([
      ['projB', 'pending'],
      ['projD', 'pending'],
    ]);
    await ok(await setStatus('bob', shared.id, 'projB', { status: 'accepted' }));
  });

  it('shows the listed copy with the latest metadata after the owner changes the image', async () => {
    await ok(
      await api.patch('alice', shared.id, [{ op: 'replace', path: '/name', value: 'to-share-renamed' }]),
    );
    const page = await ok<ImageList>(
      await t.request('GET', '/v2/images?visibility=shared', { token: t.tokens.bob }),
    );
    expect(page.images.find((image) => image.id === shared.id)?.name).toBe('to-share-renamed');
  });

  it('lets an admin act for anyone: add, answer and remove members', async () => {
    await ok(await addMember('admin', shared.id, { member: 'projE' }));
    expect(
      (await ok<MemberView>(await setStatus('admin', shared.id, 'projE', { status: 'accepted' }))).status,
    ).toBe('accepted');
    expect(await indexPartition('member#projE#accepted')).toContain(shared.id);
    expect((await removeMember('admin', shared.id, 'projE')).status).toBe(204);
    expect(await indexPartition('member#projE#accepted')).not.toContain(shared.id);
  });

  it('removes a member (204) and the image from its list and reach; again is 404', async () => {
    await ok(await addMember('alice', shared.id, { member: 'projC' }));
    await ok(await setStatus('carol', shared.id, 'projC', { status: 'accepted' }));
    expect(await listed('carol')).toContain(shared.id);
    const removed = await removeMember('alice', shared.id, 'projC');
    expect(removed.status, await peek(removed)).toBe(204);
    await expectError(
      await removeMember('alice', shared.id, 'projC'),
      404,
      `projC not found in the member list of the image ${shared.id}.`,
    );
    expect(await listed('carol')).not.toContain(shared.id);
    await expectError(await t.request('GET', `/v2/images/${shared.id}`, { token: t.tokens.carol }), 404);
    expect(await indexPartition('member#projC#accepted')).not.toContain(shared.id);
    expect(await memberTable(shared.id)).toEqual([
      ['projB', 'accepted'],
      ['projD', 'pending'],
    ]);
  });

  it('cuts members off while the image is private and lets them back when it is shared again (as Glance)', async () => {
    await ok(await api.patch('alice', shared.id, [{ op: 'replace', path: '/visibility', value: 'private' }]));
    await expectError(await t.request('GET', `/v2/images/${shared.id}`, { token: t.tokens.bob }), 404);
    await expectError(await api.download('bob', shared.id), 404);
    expect(await listed('bob', 'visibility=all&member_status=all')).not.toContain(shared.id);
    expect(await indexPartition('member#projB#accepted')).not.toContain(shared.id);
    await expectError(
      await members('alice', shared.id),
      403,
      `Not allowed to list members for image ${shared.id}: Only shared images have members.`,
    );
    await expectError(await addMember('alice', shared.id, { member: 'projC' }), 403);
    await expectError(await removeMember('alice', shared.id, 'projB'), 403);
    await expectError(await setStatus('bob', shared.id, 'projB', { status: 'rejected' }), 404);

    await ok(await api.patch('alice', shared.id, [{ op: 'replace', path: '/visibility', value: 'shared' }]));
    expect((await api.show('bob', shared.id)).id).toBe(shared.id);
    expect(await listed('bob')).toContain(shared.id);
    expect(await memberTable(shared.id)).toEqual([
      ['projB', 'accepted'],
      ['projD', 'pending'],
    ]);
  });

  it('keeps the index right when image updates and member changes race', async () => {
    const statuses = ['rejected', 'accepted', 'pending', 'accepted'] as const;
    await Promise.all(
      statuses.flatMap((status, i) => [
        api
          .patch('alice', shared.id, [{ op: 'replace', path: '/name', value: `race-${i}` }])
          .then((r) => expect(r.status).toBe(200)),
        setStatus('bob', shared.id, 'projB', { status }).then((r) => expect(r.status).toBe(200)),
        addMember('alice', shared.id, { member: `race-${i}` }).then((r) => expect(r.status).toBe(200)),
      ]),
    );
    const final = await api.show('alice', shared.id);
    const status = (await ok<MemberView>(await member('bob', shared.id, 'projB'))).status;
    for (const s of ['pending', 'accepted', 'rejected'])
      expect((await indexPartition(`member#projB#${s}`)).includes(shared.id), s).toBe(s === status);
    const page = await ok<ImageList>(
      await t.request('GET', `/v2/images?visibility=shared&member_status=${status}`, { token: t.tokens.bob }),
    );
    expect(page.images.find((image) => image.id === shared.id)).toEqual(final);
    expect((await memberTable(shared.id)).map(([id]) => id)).toEqual(
      expect.arrayContaining(['projB', 'projD', 'race-0', 'race-1', 'race-2', 'race-3']),
    );
  });

  it('forgets members when the image is deleted', async () => {
    const image = await api.create('alice', { name: 'short-lived' });
    await ok(await addMember('alice', image.id, { member: 'projB' }));
    await ok(await setStatus('bob', image.id, 'projB', { status: 'accepted' }));
    expect(await listed('bob')).toContain(image.id);
    const deleted = await t.request('DELETE', `/v2/images/${image.id}`, { token: t.tokens.alice });
    expect(deleted.status).toBe(204);
    expect(await listed('bob')).not.toContain(image.id);
    expect(await indexPartition('member#projB#accepted')).not.toContain(image.id);
    await expectError(await members('alice', image.id), 404);
    await expectError(await member('bob', image.id, 'projB'), 404);
  });
});

describe('member quota and images with many members', () => {
  let image: ImageView;
  /** bob joins as member number 100: past the members whose listing rows carry the record. */
  const others = (from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => `proj-${from + i}`);

  beforeAll(async () => {
    image = await api.create('alice', { name: 'popular' });
    // One after the other: concurrent adds to one image would only retry each other.
    const add = async (ids: string[]) => {
      for (const id of ids) await ok(await addMember('alice', image.id, { member: id }));
    };
    await add(others(0, 99));
    await ok(await addMember('alice', image.id, { member: 'projB' }));
    await add(others(99, 127));
  });

  it('allows 128 members and refuses the 129th with 413, changing nothing', async () => {
    expect(await memberTable(image.id)).toHaveLength(128);
    await expectError(
      await addMember('alice', image.id, { member: 'one-too-many' }),
      413,
      `Image member limit exceeded for image ${image.id}: The limit has been exceeded on the number of allowed image members for this image. Attempted: 129, Maximum: 128:`,
    );
    // Over quota beats duplicate, as in Glance.
    await expectError(await addMember('alice', image.id, { member: 'projB' }), 413);
    const table = await memberTable(image.id);
    expect(table).toHaveLength(128);
    expect(table.map(([id]) => id)).not.toContain('one-too-many');
    await expectError(await member('alice', image.id, 'one-too-many'), 404);
  });

  it('lists the image for a late member, follows renames, and hides it when private', async () => {
    // Past the first 64 members the rows only point at the record (member-rows.ts): both kinds are covered.
    const rowOf = async (scope: string) =>
      (await indexRows(scope)).find((row) => row.pk === `IMG#${image.id}`);
    expect((await rowOf('member#proj-0#pending'))?.data).toEqual(expect.any(String));
    expect((await rowOf('member#projB#pending'))?.ref).toBe(true);
    expect((await rowOf('member#projB#pending'))?.data).toBeUndefined();
    expect(await listed('bob', 'member_status=pending')).toContain(image.id);
    await ok(await setStatus('bob', image.id, 'projB', { status: 'accepted' }));
    expect(await listed('bob')).toContain(image.id);
    await ok(
      await api.patch('alice', image.id, [{ op: 'replace', path: '/name', value: 'popular-renamed' }]),
    );
    const page = await ok<ImageList>(
      await t.request('GET', '/v2/images?visibility=shared', { token: t.tokens.bob }),
    );
    expect(page.images.find((i) => i.id === image.id)?.name).toBe('popular-renamed');

    await ok(await api.patch('alice', image.id, [{ op: 'replace', path: '/visibility', value: 'private' }]));
    expect(await listed('bob', 'visibility=all&member_status=all')).not.toContain(image.id);
    expect(await indexPartition('member#projB#accepted')).not.toContain(image.id);
    await ok(await api.patch('alice', image.id, [{ op: 'replace', path: '/visibility', value: 'shared' }]));
    expect(await listed('bob')).toContain(image.id);
  });

  it('never trusts a pointer row: a forged or stale one is dropped, then repaired', async () => {
    const table = serviceConfig().tableName;
    const row = (await indexRows('member#projB#accepted')).find((item) => item.pk === `IMG#${image.id}`);
    expect(row?.ref).toBe(true);
    // A row the record does not back (as a lost follow-up write could leave): carol is no member.
    await t.backend.clients.dynamo.send(
      new PutCommand({
        TableName: table,
        Item: { ...row, sk: 'SCOPE#member#projC#accepted', scope: 'member#projC#accepted' },
      }),
    );
    expect(await listed('carol')).not.toContain(image.id);
    await expectError(await t.request('GET', `/v2/images/${image.id}`, { token: t.tokens.carol }), 404);
    expect(await indexPartition('member#projC#accepted')).not.toContain(image.id);
    // A row at an old position: dropped from that page, rewritten from the record for the next.
    await t.backend.clients.dynamo.send(
      new PutCommand({ TableName: table, Item: { ...row, ord_created_at: '0' } }),
    );
    expect(await listed('bob')).not.toContain(image.id);
    expect(await listed('bob')).toContain(image.id);
  });

  it('keeps every member listed when earlier members leave', async () => {
    for (const id of others(0, 40)) expect((await removeMember('alice', image.id, id)).status).toBe(204);
    expect(await memberTable(image.id)).toHaveLength(88);
    expect(await listed('bob')).toContain(image.id);
    expect(await indexPartition('member#projB#accepted')).toContain(image.id);
    await ok(await setStatus('bob', image.id, 'projB', { status: 'rejected' }));
    expect(await listed('bob')).not.toContain(image.id);
    expect(await indexPartition('member#projB#rejected')).toContain(image.id);
    expect(await indexPartition('member#projB#accepted')).not.toContain(image.id);
  });
});
