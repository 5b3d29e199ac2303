/**
 * name:tag references through the HTTP API: creation and validation, resolution across projects,
 * compare-and-swap moves under concurrency, history and rollback, and retention that never
 * touches an image a reference points to.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';

describe('name:tag references', () => {
  let t: TestBackend;

  beforeAll(async () => {
    t = await startTestBackend();
  });
  afterAll(async () => {
    await t?.stop();
  });

  async function json(persona: Persona, method: string, path: string, body?: object) {
    const response = await t.request(method, path, {
      token: t.tokens[persona],
      body,
      headers: { accept: 'application/json' },
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  }

  /** An active image owned by `persona` (a zero-byte upload activates it). */
  async function activeImage(persona: Persona, name: string, visibility = 'shared'): Promise<string> {
    const created = await json(persona, 'POST', '/v2/images', {
      name,
      disk_format: 'raw',
      container_format: 'bare',
      visibility,
    });
    expect(created.status).toBe(201);
    const upload = await t.request('PUT', `/v2/images/${created.body.id}/file`, {
      token: t.tokens[persona],
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(0),
    });
    expect(upload.status).toBe(204);
    return created.body.id;
  }

  it('creates a reference, resolves it, and refuses bad names and duplicates', async () => {
    const image = await activeImage('alice', 'fedora-40-a');
    const made = await json('alice', 'POST', '/v1/references', { reference: 'fedora:40', image_id: image });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({
      reference: 'fedora:40',
      namespace: 'projA',
      image_id: image,
      version: 1,
    });

    const resolved = await json('alice', 'GET', '/v1/references/fedora:40');
    expect(resolved.status).toBe(200);
    expect(resolved.body.image.id).toBe(image);

    expect(
      (await json('alice', 'POST', '/v1/references', { reference: 'fedora:40', image_id: image })).status,
    ).toBe(409);
    for (const bad of ['Fedora:40', 'fedora:', 'fe dora:1', 'fedora:-x', `x:${'t'.repeat(129)}`]) {
      const refused = await json('alice', 'POST', '/v1/references', { reference: bad, image_id: image });
      expect(refused.status, bad).toBe(400);
      expect(refused.body.message).toMatch(/Invalid reference/);
    }
    const queued = await json('alice', 'POST', '/v2/images', {
      name: 'not-yet',
      disk_format: 'raw',
      container_format: 'bare',
    });
    expect(
      (await json('alice', 'POST', '/v1/references', { reference: 'fedora:q', image_id: queued.body.id }))
        .status,
    ).toBe(409);
    // The list filter resolves too.
    const listed = await json('alice', 'GET', '/v2/images?reference=fedora:40');
    expect(listed.body.images.map((i: { id: string }) => i.id)).toEqual([image]);
  });

  it('resolves per project: another project sees neither the reference nor the image', async () => {
    const image = await activeImage('alice', 'private-thing', 'private');
    expect(
      (await json('alice', 'POST', '/v1/references', { reference: 'thing:1', image_id: image })).status,
    ).toBe(201);
    expect((await json('bob', 'GET', '/v1/references/thing:1')).status).toBe(404);
    expect((await json('bob', 'GET', '/v2/images?reference=thing:1')).body.images).toEqual([]);
    // bob may not point his own reference at alice's private image either.
    expect(
      (await json('bob', 'POST', '/v1/references', { reference: 'thing:1', image_id: image })).status,
    ).toBe(404);
    // Nor move hers.
    expect((await json('bob', 'POST', '/v1/references/thing:1/move', { image_id: image })).status).toBe(404);
    expect(
      (await json('bob', 'POST', '/v1/references/thing:1/move?namespace=projA', { image_id: image })).status,
    ).toBe(403);
  });

  it('public references resolve for every project, after its own', async () => {
    const pub = await activeImage('admin', 'ubuntu-public', 'public');
    expect(
      (
        await json('alice', 'POST', '/v1/references', {
          reference: 'ubuntu:focal',
          image_id: pub,
          namespace: 'public',
        })
      ).status,
    ).toBe(403);
    const made = await json('admin', 'POST', '/v1/references', {
      reference: 'ubuntu:focal',
      image_id: pub,
      namespace: 'public',
    });
    expect(made.status).toBe(201);
    const forBob = await json('bob', 'GET', '/v1/references/ubuntu:focal');
    expect(forBob.status).toBe(200);
    expect(forBob.body).toMatchObject({ namespace: 'public', image_id: pub });
    // A project's own reference of the same name wins over the public one.
    const own = await activeImage('bob', 'ubuntu-bob');
    expect(
      (await json('bob', 'POST', '/v1/references', { reference: 'ubuntu:focal', image_id: own })).status,
    ).toBe(201);
    expect((await json('bob', 'GET', '/v1/references/ubuntu:focal')).body.image_id).toBe(own);
    expect((await json('carol', 'GET', '/v1/references/ubuntu:focal')).body.image_id).toBe(pub);
    // A private image cannot back a public reference.
    const priv = await activeImage('admin', 'secret', 'private');
    expect(
      (
        await json('admin', 'POST', '/v1/references', {
          reference: 'secret:1',
          image_id: priv,
          namespace: 'public',
        })
      ).status,
    ).toBe(409);
  });

  it('moves are compare-and-swap: of concurrent moves exactly one wins', async () => {
    const [base, ...candidates] = await Promise.all(
      ['base', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6'].map((n) => activeImage('alice', `app-${n}`)),
    );
    expect(
      (await json('alice', 'POST', '/v1/references', { reference: 'app:stable', image_id: base })).status,
    ).toBe(201);
    const results = await Promise.all(
      candidates.map((id) =>
        json('alice', 'POST', '/v1/references/app:stable/move', { image_id: id, expect: base }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(candidates.length - 1);
    const winner = results.find((r) => r.status === 200)?.body.image_id;
    expect((await json('alice', 'GET', '/v1/references/app:stable')).body.image_id).toBe(winner);
    const history = await json('alice', 'GET', '/v1/references/app:stable/history');
    expect(history.body.history).toHaveLength(2);
    expect(history.body.history[0]).toMatchObject({
      action: 'move',
      from: base,
      to: winner,
      by: 'alice@projA',
    });

    // A stale expectation is refused and changes nothing.
    const stale = await json('alice', 'POST', '/v1/references/app:stable/move', {
      image_id: base,
      expect: base,
    });
    expect(stale.status).toBe(409);
    expect((await json('alice', 'GET', '/v1/references/app:stable')).body.image_id).toBe(winner);
  });

  it('rolls back to the previous image, or to a named earlier one, and records it', async () => {
    const [v1, v2, v3] = await Promise.all(['v1', 'v2', 'v3'].map((n) => activeImage('alice', `svc-${n}`)));
    await json('alice', 'POST', '/v1/references', { reference: 'svc:prod', image_id: v1 });
    await json('alice', 'POST', '/v1/references/svc:prod/move', { image_id: v2 });
    await json('alice', 'POST', '/v1/references/svc:prod/move', { image_id: v3 });

    const back = await json('alice', 'POST', '/v1/references/svc:prod/rollback', {});
    expect(back.status).toBe(200);
    expect(back.body.image_id).toBe(v2);
    const toFirst = await json('alice', 'POST', '/v1/references/svc:prod/rollback', { to: v1 });
    expect(toFirst.body.image_id).toBe(v1);
    const stranger = await activeImage('alice', 'svc-unrelated');
    expect((await json('alice', 'POST', '/v1/references/svc:prod/rollback', { to: stranger })).status).toBe(
      400,
    );

    const history = (await json('alice', 'GET', '/v1/references/svc:prod/history')).body.history;
    expect(history.map((e: { action: string }) => e.action)).toEqual([
      'rollback',
      'rollback',
      'move',
      'move',
      'create',
    ]);
    expect(history[0]).toMatchObject({ from: v2, to: v1 });
  });

  it('retention hides older versions, then deactivates them after the grace period, never a referenced one', async () => {
    const ids: string[] = [];
    for (const n of [1, 2, 3, 4]) ids.push(await activeImage('alice', `db-${n}`));
    const [d1, d2, d3, d4] = ids as [string, string, string, string];
    expect((await json('alice', 'PUT', '/v1/names/db/retention', { keep: 1, grace_seconds: 0 })).status).toBe(
      200,
    );
    await json('alice', 'POST', '/v1/references', { reference: 'db:old', image_id: d1 });
    await json('alice', 'POST', '/v1/references', { reference: 'db:latest', image_id: d2 });
    // Distinct timestamps order the versions (history is kept at second precision).
    await new Promise((r) => setTimeout(r, 1100));
    await json('alice', 'POST', '/v1/references/db:latest/move', { image_id: d3 });
    await new Promise((r) => setTimeout(r, 1100));
    await json('alice', 'POST', '/v1/references/db:latest/move', { image_id: d4 });

    const show = async (id: string) => (await json('alice', 'GET', `/v2/images/${id}`)).body;
    // d1 is still pointed to by db:old: untouched. d2 and d3 are older than the newest one: hidden.
    expect((await show(d1)).os_hidden).toBe(false);
    expect((await show(d4)).os_hidden).toBe(false);
    expect((await show(d2)).os_hidden).toBe(true);
    expect((await show(d3)).os_hidden).toBe(true);
    expect((await show(d2)).hangar_retired_at).toBeTypeOf('string');

    const applied = await json('alice', 'POST', '/v1/names/db/retention/apply', {});
    expect(applied.status).toBe(200);
    expect(applied.body.deactivated.sort()).toEqual([d2, d3].sort());
    expect((await show(d2)).status).toBe('deactivated');
    expect((await show(d1)).status).toBe('active');
    expect((await show(d4)).status).toBe('active');
  });

  it('un-hides a retired version a reference is rolled back or moved to again, and clears its mark', async () => {
    const [a, b, c] = [
      await activeImage('alice', 'ret-a'),
      await activeImage('alice', 'ret-b'),
      await activeImage('alice', 'ret-c'),
    ];
    expect(
      (await json('alice', 'PUT', '/v1/names/ret/retention', { keep: 1, grace_seconds: 3600 })).status,
    ).toBe(200);
    await json('alice', 'POST', '/v1/references', { reference: 'ret:latest', image_id: a });
    await new Promise((r) => setTimeout(r, 1100));
    await json('alice', 'POST', '/v1/references/ret:latest/move', { image_id: b });
    await new Promise((r) => setTimeout(r, 1100));
    await json('alice', 'POST', '/v1/references/ret:latest/move', { image_id: c });
    const show = async (id: string) => (await json('alice', 'GET', `/v2/images/${id}`)).body;
    expect((await show(a)).os_hidden).toBe(true);
    expect((await show(b)).os_hidden).toBe(true);
    expect((await show(b)).hangar_retired_at).toBeTypeOf('string');

    // Rolled back to b: the reference serves b, so b is visible and no longer counts as retired.
    expect((await json('alice', 'POST', '/v1/references/ret:latest/rollback', {})).body.image_id).toBe(b);
    expect(await show(b)).toMatchObject({ os_hidden: false, status: 'active' });
    expect((await show(b)).hangar_retired_at).toBeUndefined();
    const resolved = await json('alice', 'GET', '/v1/references/ret:latest');
    expect(resolved.body.image).toMatchObject({ id: b, os_hidden: false });

    // Moved on to a (hidden earlier): a comes back; b, pointed to by nothing now, is retired again.
    await json('alice', 'POST', '/v1/references/ret:latest/move', { image_id: a });
    expect((await show(a)).os_hidden).toBe(false);
    expect((await show(a)).hangar_retired_at).toBeUndefined();
    expect((await show(b)).os_hidden).toBe(true);
    const applied = await json('alice', 'POST', '/v1/names/ret/retention/apply', {});
    expect(applied.body).toMatchObject({ hidden: [], deactivated: [], restored: [] });

    // A larger `keep` takes retired versions back as well.
    await json('alice', 'PUT', '/v1/names/ret/retention', { keep: 3, grace_seconds: 3600 });
    const widened = await json('alice', 'POST', '/v1/names/ret/retention/apply', {});
    expect(widened.body.restored).toEqual([b]);
    expect((await show(b)).os_hidden).toBe(false);
    expect((await show(b)).hangar_retired_at).toBeUndefined();
  });

  it('deletes a reference but keeps its history', async () => {
    const image = await activeImage('alice', 'gone-1');
    await json('alice', 'POST', '/v1/references', { reference: 'gone:1', image_id: image });
    expect((await json('alice', 'DELETE', '/v1/references/gone:1')).status).toBe(204);
    expect((await json('alice', 'GET', '/v1/references/gone:1')).status).toBe(404);
    const history = await json('alice', 'GET', '/v1/references/gone:1/history');
    expect(history.body.history.map((e: { action: string }) => e.action)).toEqual(['delete', 'create']);
    // Re-creating continues the sequence rather than clashing with old history rows.
    expect(
      (await json('alice', 'POST', '/v1/references', { reference: 'gone:1', image_id: image })).status,
    ).toBe(201);
  });
});
