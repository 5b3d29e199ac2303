/**
 * Publishing behind a test gate (POST /v1/references/{ref}/publish) against the real local
 * backend: the publish state machine runs in the local Step Functions runner, its boot gate waits
 * on a task token, and a host (driven here over the hosts/jobs API, as the agent would) answers
 * it by finishing the gate instance's build. The e2e test does the same with a real agent and VM.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCalls, createRawImage, putImageFile, type Reply, registerHost } from '../helpers/api.ts';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { imageObjects, writeImageObject } from '../helpers/images.ts';

const HOST = 'h-gate';
const ARCH = 'arch-publish-gate';

describe('publishing a reference behind a gate', () => {
  let t: TestBackend;

  beforeAll(async () => {
    t = await startTestBackend({ hosts: [HOST] });
    const registered = await registerHost(t, HOST, {
      vcpus: 8,
      ram_mb: 16384,
      disk_gb: 200,
      architecture: ARCH,
    });
    expect(registered.status, JSON.stringify(registered.body)).toBe(200);
  });
  afterAll(async () => {
    await t?.stop();
  });

  const { as, host: hostOf } = apiCalls(() => t);
  const host = (method: string, path: string, body?: unknown) => hostOf(HOST, method, path, body);

  /** An active raw image of `persona`'s whose instances can only be placed on the gate host. */
  async function activeImage(persona: Persona, bytes: string): Promise<string> {
    const created = await createRawImage(t, persona, { name: 'candidate', architecture: ARCH });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const upload = await putImageFile(t, t.tokens[persona], created.body.id, new TextEncoder().encode(bytes));
    expect(upload.status).toBe(204);
    return created.body.id;
  }

  async function settled(persona: Persona, taskId: string): Promise<Reply['body']> {
    for (let i = 0; i < 300; i++) {
      const task = await as(persona, 'GET', `/v1/publications/${taskId}`);
      expect(task.status).toBe(200);
      if (task.body.status === 'success' || task.body.status === 'failure') return task.body;
      await sleep(100);
    }
    throw new Error(`task ${taskId} did not finish`);
  }

  /** The gate host's next job, claimed (polls: the gate creates it asynchronously). */
  async function claimNext(): Promise<{
    id: string;
    kind: string;
    lease_token: string;
    instance: Reply['body'];
  }> {
    for (let i = 0; i < 300; i++) {
      const claimed = await host('POST', `/v1/hosts/${HOST}/jobs/claim`, { lease_seconds: 60 });
      expect([200, 204]).toContain(claimed.status);
      if (claimed.status === 200 && claimed.body?.job) return claimed.body.job;
      await sleep(100);
    }
    throw new Error('no job for the gate host');
  }

  /** The gate instance's destroy job must be next in the queue; the host carries it out. */
  async function completeDestroy(instanceId: string): Promise<void> {
    const destroy = await claimNext();
    expect(destroy).toMatchObject({ kind: 'destroy', instance: { id: instanceId } });
    const done = await host('POST', `/v1/jobs/${destroy.id}/complete`, {
      lease_token: destroy.lease_token,
      result: {},
    });
    expect(done.status).toBe(204);
  }

  async function reference(persona: Persona, ref: string): Promise<string | undefined> {
    const shown = await as(persona, 'GET', `/v1/references/${ref}`);
    return shown.status === 200 ? shown.body.image_id : undefined;
  }

  it('publishes without a boot gate after re-verifying the data, and records it in the history', async () => {
    const first = await activeImage('alice', 'build one');
    const second = await activeImage('alice', 'build two');
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'app:stable', image_id: first })).status,
    ).toBe(201);

    const started = await as('alice', 'POST', '/v1/references/app:stable/publish', { image_id: second });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    expect(started.body).toMatchObject({ type: 'publish', status: 'pending' });
    const task = await settled('alice', started.body.id);

    expect(task.status, task.message).toBe('success');
    expect(task.result).toMatchObject({ image_id: second, previous_image_id: first, boot_checked: false });
    // Another project cannot read the publication; the admin-only tasks API stays admin-only.
    expect((await as('bob', 'GET', `/v1/publications/${started.body.id}`)).status).toBe(404);
    expect((await as('admin', 'GET', `/v2/tasks/${started.body.id}`)).body.type).toBe('publish');
    expect(await reference('alice', 'app:stable')).toBe(second);
    const history = await as('alice', 'GET', '/v1/references/app:stable/history');
    expect(history.body.history[0]).toMatchObject({ action: 'publish', from: first, to: second });
  });

  it('creates the reference when it did not exist, and refuses bad requests up front', async () => {
    const image = await activeImage('alice', 'fresh');
    const bad = await as('alice', 'POST', '/v1/references/app:fresh/publish', { image_id: image, extra: 1 });
    expect(bad.status).toBe(400);
    const marker = await as('alice', 'POST', '/v1/references/app:fresh/publish', {
      image_id: image,
      boot: { marker: '' },
    });
    expect(marker.status).toBe(400);
    const badName = await as('alice', 'POST', '/v1/references/App:x/publish', { image_id: image });
    expect(badName.status).toBe(400);
    // bob cannot see alice's private image: no publishing it, and no leaking that it exists.
    const hidden = await activeImage('alice', 'hidden');
    const foreign = await as('bob', 'POST', '/v1/references/app:fresh/publish', { image_id: hidden });
    expect(foreign.status).toBe(404);
    const stale = await as('alice', 'POST', '/v1/references/app:fresh/publish', {
      image_id: image,
      expect: hidden,
    });
    expect(stale.status).toBe(409);

    const started = await as('alice', 'POST', '/v1/references/app:fresh/publish', { image_id: image });
    expect(started.status).toBe(202);
    const task = await settled('alice', started.body.id);
    expect(task.status, task.message).toBe('success');
    expect(await reference('alice', 'app:fresh')).toBe(image);
  });

  it('refuses a candidate whose stored bytes no longer match its checksums, leaving the reference', async () => {
    const good = await activeImage('alice', 'good bytes');
    const tampered = await activeImage('alice', 'original bytes');
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'app:safe', image_id: good })).status,
    ).toBe(201);
    // Someone with access to the store rewrites the blob behind the service's back.
    const [key] = await imageObjects(`images/${tampered}/`);
    expect(key).toBeDefined();
    await writeImageObject(key as string, Buffer.from('evil bytes!!!!'));

    const started = await as('alice', 'POST', '/v1/references/app:safe/publish', { image_id: tampered });
    expect(started.status).toBe(202);
    const task = await settled('alice', started.body.id);

    expect(task.status).toBe('failure');
    expect(task.message).toMatch(/no longer matches its recorded checksum|holds \d+ bytes/);
    expect(task.message).toMatch(/app:safe was left where it was/);
    expect(await reference('alice', 'app:safe')).toBe(good);
  });

  it('fails when the reference moved meanwhile (compare-and-swap), leaving the newer move', async () => {
    const first = await activeImage('alice', 'race one');
    const theirs = await activeImage('alice', 'race theirs');
    const mine = await activeImage('alice', 'race mine');
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'app:race', image_id: first })).status,
    ).toBe(201);
    // The publish is pinned to `first`; a boot gate keeps it waiting while someone else moves the tag.
    const started = await as('alice', 'POST', '/v1/references/app:race/publish', {
      image_id: mine,
      boot: { marker: 'READY', timeout_seconds: 60 },
    });
    expect(started.status).toBe(202);
    const job = await claimNext();
    const moved = await as('alice', 'POST', '/v1/references/app:race/move', {
      image_id: theirs,
      expect: first,
    });
    expect(moved.status).toBe(200);
    const done = await host('POST', `/v1/jobs/${job.id}/complete`, {
      lease_token: job.lease_token,
      result: {},
    });
    expect(done.status).toBe(204);
    const task = await settled('alice', started.body.id);

    expect(task.status).toBe('failure');
    expect(task.message).toMatch(/moved by someone else|someone else moved it/);
    expect(await reference('alice', 'app:race')).toBe(theirs);
    await completeDestroy(started.body.id);
  });

  it('boots the candidate through a host before moving, and destroys the gate instance', async () => {
    const first = await activeImage('alice', 'boot one');
    const candidate = await activeImage('alice', 'boot two');
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'os:40', image_id: first })).status,
    ).toBe(201);

    const started = await as('alice', 'POST', '/v1/references/os:40/publish', {
      image_id: candidate,
      boot: { marker: 'HANGAR-GUEST-READY', timeout_seconds: 120, ram_mb: 128 },
    });
    expect(started.status).toBe(202);
    const job = await claimNext();

    // The build job carries the gate's boot check, which the agent waits for.
    expect(job.kind).toBe('build');
    expect(job.instance).toMatchObject({
      id: started.body.id,
      ram_mb: 128,
      boot_check: { marker: 'HANGAR-GUEST-READY', timeout_seconds: 120 },
      image: { id: candidate },
    });
    // While the gate waits, the reference has not moved.
    await sleep(300);
    expect((await as('alice', 'GET', `/v1/publications/${started.body.id}`)).body.status).toBe('processing');
    expect(await reference('alice', 'os:40')).toBe(first);

    const done = await host('POST', `/v1/jobs/${job.id}/complete`, {
      lease_token: job.lease_token,
      result: { console_log: 'booting\nHANGAR-GUEST-READY\n' },
    });
    expect(done.status).toBe(204);
    const task = await settled('alice', started.body.id);

    expect(task.status, task.message).toBe('success');
    expect(task.result).toMatchObject({ image_id: candidate, previous_image_id: first, boot_checked: true });
    expect(await reference('alice', 'os:40')).toBe(candidate);
    await completeDestroy(started.body.id);
    expect((await as('alice', 'GET', `/v1/instances/${started.body.id}`)).body.stage).toBe('Inexistent');
  });

  it('does not publish a candidate that fails to boot, and says why', async () => {
    const first = await activeImage('alice', 'stable one');
    const broken = await activeImage('alice', 'does not boot');
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'os:41', image_id: first })).status,
    ).toBe(201);

    const started = await as('alice', 'POST', '/v1/references/os:41/publish', {
      image_id: broken,
      boot: { marker: 'HANGAR-GUEST-READY', timeout_seconds: 30 },
    });
    expect(started.status).toBe(202);
    const job = await claimNext();
    const failed = await host('POST', `/v1/jobs/${job.id}/fail`, {
      lease_token: job.lease_token,
      reason: 'no /HANGAR-GUEST-READY/ on the console within 30000 ms',
    });
    expect(failed.status).toBe(204);
    const task = await settled('alice', started.body.id);

    expect(task.status).toBe('failure');
    expect(task.message).toMatch(/did not boot: .*HANGAR-GUEST-READY/);
    expect(await reference('alice', 'os:41')).toBe(first);
    // The failed gate instance (stage Error) is destroyed too.
    await completeDestroy(started.body.id);
  });

  it('fails the publish when no host can boot the candidate', async () => {
    const first = await activeImage('alice', 'nowhere one');
    const created = await as('alice', 'POST', '/v2/images', {
      name: 'needs-arm',
      disk_format: 'raw',
      container_format: 'bare',
      architecture: 'aarch64-nowhere',
    });
    await t.request('PUT', `/v2/images/${created.body.id}/file`, {
      token: t.tokens.alice,
      headers: { 'content-type': 'application/octet-stream' },
      body: new TextEncoder().encode('arm bytes'),
    });
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'os:arm', image_id: first })).status,
    ).toBe(201);

    const started = await as('alice', 'POST', '/v1/references/os:arm/publish', {
      image_id: created.body.id,
      boot: { marker: 'READY' },
    });
    const task = await settled('alice', started.body.id);

    expect(task.status).toBe('failure');
    expect(task.message).toMatch(/No host can take it/);
    expect(await reference('alice', 'os:arm')).toBe(first);
  });
});
