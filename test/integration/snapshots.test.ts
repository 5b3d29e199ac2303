/**
 * Snapshots (POST /v1/instances/{id}/actions/snapshot) over HTTP against the real local backend,
 * with the test playing the host agent through the real hosts/jobs API: the image the service
 * makes (queued, provenance, the instance's project), the job and its upload grant (a host token
 * uploads that one image and nothing else), the service's own check of the digests, the
 * reference's CAS move recorded as `snapshot`, and every refusal with nothing changed.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { apiCalls, createRawImage, putImageFile, type Reply, registerHost } from '../helpers/api.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';

const HOST = 'h-snap';

describe('instance snapshots', () => {
  let t: TestBackend;
  let disk: Uint8Array;
  let baseImage: string;

  beforeAll(async () => {
    t = await startTestBackend({ hosts: [HOST, 'h-snap-other'] });
    // A real (tiny) qcow2: the upload's format inspection must find what disk_format says.
    const dir = mkdtempSync(join(tmpdir(), 'snap-it-'));
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'd.qcow2'), '16M']);
    disk = new Uint8Array(readFileSync(join(dir, 'd.qcow2')));
    rmSync(dir, { recursive: true, force: true });
    for (const id of [HOST, 'h-snap-other']) {
      const reply = await registerHost(t, id, {
        vcpus: 64,
        ram_mb: 65536,
        disk_gb: 1000,
        architecture: 'arch-snap',
      });
      expect(reply.status).toBe(200);
    }
    // h-snap-other is registered with another architecture: only h-snap takes these instances.
    await registerHost(t, 'h-snap-other', { vcpus: 1, ram_mb: 64, disk_gb: 1, architecture: 'arch-none' });
    const created = await createRawImage(t, 'alice', { name: 'snap-base', architecture: 'arch-snap' });
    baseImage = created.body.id;
    const upload = await putFile(t.tokens.alice, baseImage, new TextEncoder().encode('base disk'));
    expect(upload.status).toBe(204);
  });
  afterAll(async () => {
    await t?.stop();
  });

  const { as, host } = apiCalls(() => t);
  const putFile = (token: string, imageId: string, bytes: Uint8Array, grant?: string) =>
    putImageFile(t, token, imageId, bytes, grant);
  const digests = (bytes: Uint8Array) => ({
    size: bytes.length,
    checksum: createHash('md5').update(bytes).digest('hex'),
    os_hash_value: createHash('sha512').update(bytes).digest('hex'),
  });

  async function claim(): Promise<Reply> {
    return host(HOST, 'POST', `/v1/hosts/${HOST}/jobs/claim`, { lease_seconds: 60 });
  }
  /** Claims the next job, which must be `kind`, and completes (or fails) it. */
  async function runJob(kind: string, outcome: { fail?: string; result?: object } = {}): Promise<void> {
    const claimed = await claim();
    expect(claimed.status).toBe(200);
    expect(claimed.body.job.kind).toBe(kind);
    const { id, lease_token } = claimed.body.job;
    const done = outcome.fail
      ? await host(HOST, 'POST', `/v1/jobs/${id}/fail`, { lease_token, reason: outcome.fail })
      : await host(HOST, 'POST', `/v1/jobs/${id}/complete`, { lease_token, result: outcome.result ?? {} });
    expect(done.status, JSON.stringify(done.body)).toBe(204);
  }
  /** An instance of alice's, built (Running), then taken to `stage`. */
  async function instanceIn(stage: 'Running' | 'Shutoff' | 'Building' | 'Error' | 'Inexistent') {
    const created = await as('alice', 'POST', '/v1/instances', {
      name: `snap-${stage}`,
      image: baseImage,
      vcpus: 1,
      ram_mb: 128,
      disk_gb: 1,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const id: string = created.body.id;
    if (stage === 'Building') return id;
    if (stage === 'Error') {
      await runJob('build', { fail: 'no disk' });
      return id;
    }
    await runJob('build');
    if (stage === 'Shutoff') {
      expect((await as('alice', 'POST', `/v1/instances/${id}/actions/stop`)).status).toBe(202);
      await runJob('stop');
    }
    if (stage === 'Inexistent') {
      expect((await as('alice', 'POST', `/v1/instances/${id}/actions/destroy`)).status).toBe(202);
      await runJob('destroy');
    }
    return id;
  }
  const alicesImages = async () =>
    ((await as('alice', 'GET', '/v2/images?limit=1000')).body.images as Array<{ id: string }>).map(
      (i) => i.id,
    );

  it('snapshots a Shutoff instance: queued image with provenance, a job whose grant uploads that image only, the reference moved as `snapshot`', async () => {
    // Arrange
    const id = await instanceIn('Shutoff');
    const base = (await as('alice', 'GET', `/v2/images/${baseImage}`)).body;

    // Act
    const asked = await as('alice', 'POST', `/v1/instances/${id}/actions/snapshot`, {
      name: 'web snapshot',
      reference: 'websnap:1',
      properties: { purpose: 'test' },
    });

    // Assert: 202, the image queued in alice's project with Nova's provenance and the base's sha512
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    const imageId: string = asked.body.image_id;
    expect(asked.body.instance.stage).toBe('Shutoff');
    const queued = (await as('alice', 'GET', `/v2/images/${imageId}`)).body;
    expect(queued).toMatchObject({
      status: 'queued',
      owner: 'projA',
      name: 'web snapshot',
      disk_format: 'qcow2',
      image_type: 'snapshot',
      instance_uuid: id,
      base_image_ref: baseImage,
      hangar_base_sha512: base.os_hash_value,
      purpose: 'test',
    });
    // While the job runs the instance cannot be destroyed (or snapshotted again).
    const destroy = await as('alice', 'POST', `/v1/instances/${id}/actions/destroy`);
    expect(destroy.status).toBe(409);
    expect(destroy.body.message ?? JSON.stringify(destroy.body)).toMatch(/snapshot job pending/);
    expect(
      (await as('alice', 'POST', `/v1/instances/${id}/actions/snapshot`, { name: 'again' })).status,
    ).toBe(409);

    // The agent's side: the claim carries the image and the job-scoped grant
    const claimed = await claim();
    expect(claimed.status).toBe(200);
    const job = claimed.body.job;
    expect(job.kind).toBe('snapshot');
    expect(job.snapshot).toMatchObject({ image_id: imageId, upload: 'put' });
    const grant: string = job.snapshot.upload_grant;
    expect(grant.startsWith(`${job.id}.`)).toBe(true);

    // A host token alone writes no image; the grant writes no other image; another host cannot use it.
    expect((await putFile(t.hostTokens[HOST] ?? '', imageId, disk)).status).toBe(403);
    expect((await putFile(t.hostTokens[HOST] ?? '', baseImage, disk, grant)).status).toBe(403);
    expect((await putFile(t.hostTokens['h-snap-other'] ?? '', imageId, disk, grant)).status).toBe(403);
    expect((await putFile(t.hostTokens[HOST] ?? '', imageId, disk, `${job.id}.wrong`)).status).toBe(403);
    expect((await as('alice', 'GET', `/v2/images/${imageId}`)).body.status).toBe('queued');

    const uploaded = await putFile(t.hostTokens[HOST] ?? '', imageId, disk, grant);
    expect(uploaded.status).toBe(204);
    const done = await host(HOST, 'POST', `/v1/jobs/${job.id}/complete`, {
      lease_token: job.lease_token,
      result: { snapshot: { ...digests(disk), paused_ms: null } },
    });
    expect(done.status, JSON.stringify(done.body)).toBe(204);

    // Assert: active with the service's own digests, the instance as it was, the reference moved
    const active = (await as('alice', 'GET', `/v2/images/${imageId}`)).body;
    expect(active).toMatchObject({ status: 'active', ...digests(disk) });
    const after = (await as('alice', 'GET', `/v1/instances/${id}`)).body;
    expect(after).toMatchObject({ stage: 'Shutoff', last_error: null, pending_action: null });
    const ref = await as('alice', 'GET', '/v1/references/websnap:1');
    expect(ref.body.image_id).toBe(imageId);
    const history = await as('alice', 'GET', '/v1/references/websnap:1/history');
    expect(history.status).toBe(200);
    expect(history.body.history[0]).toMatchObject({ action: 'snapshot', to: imageId });
    // The finished job's grant is dead.
    expect((await putFile(t.hostTokens[HOST] ?? '', imageId, disk, grant)).status).toBe(403);
  });

  it('moves an existing reference by compare-and-swap from where it pointed when asked', async () => {
    // Arrange: websnap:2 points to the base image
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'websnap:2', image_id: baseImage })).status,
    ).toBe(201);
    const id = await instanceIn('Running');

    // Act
    const asked = await as('alice', 'POST', `/v1/instances/${id}/actions/snapshot`, {
      name: 'running snapshot',
      reference: 'websnap:2',
    });
    expect(asked.status).toBe(202);
    const claimed = (await claim()).body.job;
    expect(
      (await putFile(t.hostTokens[HOST] ?? '', asked.body.image_id, disk, claimed.snapshot.upload_grant))
        .status,
    ).toBe(204);
    await host(HOST, 'POST', `/v1/jobs/${claimed.id}/complete`, {
      lease_token: claimed.lease_token,
      result: { snapshot: { ...digests(disk), paused_ms: 12 } },
    });

    // Assert
    expect((await as('alice', 'GET', '/v1/references/websnap:2')).body.image_id).toBe(asked.body.image_id);
    expect((await as('alice', 'GET', `/v1/instances/${id}`)).body.stage).toBe('Running');
  });

  it('a failed snapshot leaves the instance as it was, the image deleted with the reason, the reference untouched', async () => {
    // Arrange
    const id = await instanceIn('Running');
    const images = await alicesImages();

    // Act: the agent fails the job
    const asked = await as('alice', 'POST', `/v1/instances/${id}/actions/snapshot`, {
      name: 'doomed',
      reference: 'websnap:3',
    });
    expect(asked.status).toBe(202);
    await runJob('snapshot', { fail: 'qemu-img convert failed: disk full' });

    // Assert
    expect((await as('alice', 'GET', `/v2/images/${asked.body.image_id}`)).status).toBe(404);
    const after = (await as('alice', 'GET', `/v1/instances/${id}`)).body;
    expect(after.stage).toBe('Running');
    expect(after.pending_action).toBeNull();
    expect(after.last_error).toMatch(/snapshot failed: qemu-img convert failed: disk full/);
    expect((await as('alice', 'GET', '/v1/references/websnap:3')).status).toBe(404);
    expect(await alicesImages()).toEqual(images);
  });

  it('refuses a completion whose digests do not match what the service stored: the job fails and the image goes', async () => {
    // Arrange
    const id = await instanceIn('Shutoff');
    const asked = await as('alice', 'POST', `/v1/instances/${id}/actions/snapshot`, { name: 'tampered' });
    const job = (await claim()).body.job;
    expect(
      (await putFile(t.hostTokens[HOST] ?? '', asked.body.image_id, disk, job.snapshot.upload_grant)).status,
    ).toBe(204);

    // Act: the agent claims it sent other bytes
    const done = await host(HOST, 'POST', `/v1/jobs/${job.id}/complete`, {
      lease_token: job.lease_token,
      result: { snapshot: { ...digests(new Uint8Array([1, 2, 3])), paused_ms: null } },
    });

    // Assert
    expect(done.status).toBe(409);
    expect(done.body.message ?? JSON.stringify(done.body)).toMatch(/sha512 mismatch/);
    expect((await as('alice', 'GET', `/v2/images/${asked.body.image_id}`)).status).toBe(404);
    const after = (await as('alice', 'GET', `/v1/instances/${id}`)).body;
    expect(after).toMatchObject({ stage: 'Shutoff', pending_action: null });
    expect(after.last_error).toMatch(/the service refused the snapshot: sha512 mismatch/);
  });

  it.each([
    ['Building', /while it is Building \(snapshot needs Running, Sleep, Shutoff\)/],
    ['Error', /while it is Error/],
    ['Inexistent', /while it is Inexistent/],
  ] as const)('refuses to snapshot an instance that is %s (409), making nothing', async (stage, message) => {
    // Arrange
    const id = await instanceIn(stage);
    // The Building instance's build is still pending: run it afterwards, pass or fail, for the next test's claims.
    onTestFinished(async () => {
      if (stage === 'Building') await runJob('build');
    });
    const before = (await as('alice', 'GET', `/v1/instances/${id}`)).body;
    const images = await alicesImages();

    // Act
    const reply = await as('alice', 'POST', `/v1/instances/${id}/actions/snapshot`, {
      name: `snap of ${stage}`,
      reference: `refused-${stage.toLowerCase()}:1`,
    });

    // Assert
    expect(reply.status).toBe(409);
    expect(reply.body.message ?? JSON.stringify(reply.body)).toMatch(message);
    expect(await alicesImages()).toEqual(images);
    const after = (await as('alice', 'GET', `/v1/instances/${id}`)).body;
    expect(after).toEqual(before);
    expect(after.pending_action).toEqual(before.pending_action);
    expect((await as('alice', 'GET', `/v1/references/refused-${stage.toLowerCase()}:1`)).status).toBe(404);
  });

  it('refuses bad requests (400) and callers who may not (403/404), making nothing', async () => {
    // Arrange
    const id = await instanceIn('Running');
    const images = await alicesImages();
    const path = `/v1/instances/${id}/actions/snapshot`;

    // Act + Assert
    expect((await as('alice', 'POST', path, {})).status).toBe(400);
    expect((await as('alice', 'POST', path, { name: 'x', colour: 'red' })).status).toBe(400);
    const provenance = await as('alice', 'POST', path, { name: 'x', properties: { image_type: 'image' } });
    expect(provenance.status).toBe(400);
    expect(provenance.body.message ?? JSON.stringify(provenance.body)).toMatch(/set by the service/);
    expect((await as('alice', 'POST', path, { name: 'x', reference: 'Bad Name!' })).status).toBe(400);
    // bob does not see alice's instance; dave (reader) sees it but may not change it; hosts manage none.
    expect((await as('bob', 'POST', path, { name: 'x' })).status).toBe(404);
    expect((await as('dave', 'POST', path, { name: 'x' })).status).toBe(403);
    expect((await host(HOST, 'POST', path, { name: 'x' })).status).toBe(403);
    expect(await alicesImages()).toEqual(images);
    expect((await as('alice', 'GET', `/v1/instances/${id}`)).body.pending_action).toBeNull();
  });
});
