/**
 * The scheduled retention sweep against the local stand-ins: once moves have hidden an old
 * version, the sweep (functions/triggers/retention-sweep.ts) deactivates it after its grace
 * period without anything moving again, and leaves every image a reference points to alone; the
 * embedded runner runs that sweep on its own timer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handler as sweepRetention } from '../../functions/triggers/retention-sweep.ts';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** The requests these tests make, against one backend. */
function client(t: () => TestBackend) {
  async function json(persona: Persona, method: string, path: string, body?: object) {
    const response = await t().request(method, path, {
      token: t().tokens[persona],
      body,
      headers: { accept: 'application/json' },
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  }
  /** An active image owned by alice (a zero-byte upload activates it). */
  async function activeImage(name: string): Promise<string> {
    const created = await json('alice', 'POST', '/v2/images', {
      name,
      disk_format: 'raw',
      container_format: 'bare',
    });
    expect(created.status).toBe(201);
    const upload = await t().request('PUT', `/v2/images/${created.body.id}/file`, {
      token: t().tokens.alice,
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(0),
    });
    expect(upload.status).toBe(204);
    return created.body.id;
  }
  const show = async (id: string) => (await json('alice', 'GET', `/v2/images/${id}`)).body;
  return { json, activeImage, show };
}

describe('retention sweep, run directly (the local timer off)', () => {
  let t: TestBackend;
  const { json, activeImage, show } = client(() => t);

  beforeAll(async () => {
    t = await startTestBackend({ env: { HANGAR_RETENTION_SWEEP_SECONDS: '0' } });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('deactivates a version hidden by a move once its grace period is over, and nothing a reference points to', async () => {
    // Prepare: svc:pinned keeps an old version; svc:prod moves from old to new, which hides old.
    const grace = 3;
    const [pinned, old, current] = [
      await activeImage('svc-pinned'),
      await activeImage('svc-old'),
      await activeImage('svc-new'),
    ];
    expect(
      (await json('alice', 'PUT', '/v1/names/svc/retention', { keep: 1, grace_seconds: grace })).status,
    ).toBe(200);
    await json('alice', 'POST', '/v1/references', { reference: 'svc:pinned', image_id: pinned });
    await json('alice', 'POST', '/v1/references', { reference: 'svc:prod', image_id: old });
    // History has second precision: the move must be a later second to make `current` the newest.
    await sleep(1100);
    expect((await json('alice', 'POST', '/v1/references/svc:prod/move', { image_id: current })).status).toBe(
      200,
    );
    const hidden = await show(old);
    expect(hidden).toMatchObject({ os_hidden: true, status: 'active' });

    // Act: a sweep within the grace period, then one after it, with no move in between.
    const early = await sweepRetention();
    await sleep(Date.parse(hidden.hangar_retired_at) + grace * 1000 + 200 - Date.now());
    const late = await sweepRetention();

    // Assess
    expect(early).toMatchObject({ names: 1, failed: [] });
    expect(early.deactivated).not.toContain(old);
    expect(late).toMatchObject({ names: 1, hidden: [], deactivated: [old], failed: [] });
    expect(await show(old)).toMatchObject({ status: 'deactivated', os_hidden: true });
    for (const id of [pinned, current]) {
      const untouched = await show(id);
      expect(untouched, id).toMatchObject({ status: 'active', os_hidden: false });
      expect(untouched, id).not.toHaveProperty('hangar_retired_at');
    }
    expect((await json('alice', 'GET', '/v1/references/svc:prod')).body.image.id).toBe(current);
  });
});

describe('retention sweep on the embedded runner’s timer', () => {
  let t: TestBackend;
  const { json, activeImage, show } = client(() => t);

  beforeAll(async () => {
    t = await startTestBackend({ env: { HANGAR_RETENTION_SWEEP_SECONDS: '1' } });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('deactivates a hidden version by itself, every HANGAR_RETENTION_SWEEP_SECONDS', async () => {
    // Prepare
    const [old, current] = [await activeImage('job-old'), await activeImage('job-new')];
    await json('alice', 'PUT', '/v1/names/job/retention', { keep: 1, grace_seconds: 1 });
    await json('alice', 'POST', '/v1/references', { reference: 'job:prod', image_id: old });
    await sleep(1100);
    await json('alice', 'POST', '/v1/references/job:prod/move', { image_id: current });
    expect((await show(old)).os_hidden).toBe(true);

    // Act: nothing but time.
    const deadline = Date.now() + 15_000;
    while ((await show(old)).status !== 'deactivated' && Date.now() < deadline) await sleep(250);

    // Assess
    expect((await show(old)).status).toBe('deactivated');
    expect(await show(current)).toMatchObject({ status: 'active', os_hidden: false });
  });
});
