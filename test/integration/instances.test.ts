/**
 * The instances API and the host agents' hosts/jobs API over HTTP, against the real local
 * backend: registration, placement and its refusals, the work queue (claim, lease expiry,
 * heartbeat, complete, fail), the stage machine, reconciliation, authorization, and the two
 * concurrency guarantees: a job goes to exactly one claimer, and a host is never overcommitted.
 *
 * Every test registers its own hosts with an architecture of its own and boots images that ask
 * for it, so placement in one test never sees another test's hosts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCalls, createRawImage, putImageFile, type Reply, registerHost } from '../helpers/api.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';

const HOSTS = [
  'h-reg',
  'h-other',
  'h-life',
  'h-place',
  'h-place-old',
  'h-lease',
  'h-race',
  'h-cap',
  'h-obs',
  'h-use',
];
const SHA512 = /^[0-9a-f]{128}$/;

describe('instances and hosts API', () => {
  let t: TestBackend;

  beforeAll(async () => {
    t = await startTestBackend({ hosts: HOSTS });
  });
  afterAll(async () => {
    await t?.stop();
  });

  const { as, host } = apiCalls(() => t);

  async function register(id: string, overrides: Record<string, unknown> = {}): Promise<Reply> {
    const reply = await registerHost(t, id, {
      vcpus: 8,
      ram_mb: 16384,
      disk_gb: 200,
      architecture: `arch-${id}`,
      ...overrides,
    });
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    return reply;
  }

  /** An active private image of alice's with the given Glance properties (a few bytes of data). */
  async function activeImage(properties: Record<string, unknown>): Promise<string> {
    // raw: the format inspector refuses bytes that do not look like the declared qcow2.
    const created = await createRawImage(t, 'alice', { name: 'guest', ...properties });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const upload = await putImageFile(
      t,
      t.tokens.alice,
      created.body.id,
      new TextEncoder().encode('not really a disk'),
    );
    expect(upload.status).toBe(204);
    return created.body.id;
  }

  const newInstance = (image: string, overrides: Record<string, unknown> = {}) =>
    as('alice', 'POST', '/v1/instances', {
      name: 'web 1',
      image,
      vcpus: 1,
      ram_mb: 256,
      disk_gb: 1,
      ...overrides,
    });

  async function claim(hostId: string, leaseSeconds = 60): Promise<Reply> {
    return host(hostId, 'POST', `/v1/hosts/${hostId}/jobs/claim`, { lease_seconds: leaseSeconds });
  }

  /** Claims the host's next job, which must be `kind`, and completes it. */
  async function runJob(hostId: string, kind: string, result: object = {}): Promise<void> {
    const claimed = await claim(hostId);
    expect(claimed.status).toBe(200);
    expect(claimed.body.job.kind).toBe(kind);
    const done = await host(hostId, 'POST', `/v1/jobs/${claimed.body.job.id}/complete`, {
      lease_token: claimed.body.job.lease_token,
      result,
    });
    expect(done.status).toBe(204);
  }

  const show = async (id: string) => (await as('alice', 'GET', `/v1/instances/${id}`)).body;

  it('registers a host, refreshes its capacity, takes heartbeats and shows it to admins', async () => {
    // Act
    const first = await register('h-reg');
    const again = await register('h-reg', { vcpus: 16 });
    const beat = await host('h-reg', 'POST', '/v1/hosts/h-reg/heartbeat');
    const unregistered = await host('h-other', 'POST', '/v1/hosts/h-other/heartbeat');
    const listed = await as('admin', 'GET', '/v1/hosts');

    // Assess
    expect(first.body).toMatchObject({
      id: 'h-reg',
      vcpus: 8,
      ram_mb: 16384,
      disk_gb: 200,
      architecture: 'arch-h-reg',
      hypervisor_type: 'qemu',
      hypervisor_version: 9_000_000,
      used: { vcpus: 0, ram_mb: 0, disk_gb: 0 },
    });
    expect(again.body).toMatchObject({ vcpus: 16, registered_at: first.body.registered_at });
    expect(beat.status).toBe(204);
    expect(unregistered.status).toBe(404);
    expect(listed.status).toBe(200);
    expect(listed.body.hosts.map((h: { id: string }) => h.id)).toContain('h-reg');
    expect((await as('alice', 'GET', '/v1/hosts')).status).toBe(403);
  });

  it('keeps hosts and projects apart: 403 for a host acting for another, or a project token on host endpoints', async () => {
    // Prepare
    await register('h-other');
    const image = await activeImage({ architecture: 'arch-h-other' });
    const created = await newInstance(image);
    expect(created.status).toBe(202);
    const claimed = await claim('h-other');
    const job = claimed.body.job;

    // Act + Assess: a host token for another host
    expect((await host('h-reg', 'PUT', '/v1/hosts/h-other', { vcpus: 1 })).status).toBe(403);
    expect((await host('h-reg', 'POST', '/v1/hosts/h-other/jobs/claim', {})).status).toBe(403);
    expect((await host('h-reg', 'GET', '/v1/hosts/h-other/instances')).status).toBe(403);
    expect(
      (await host('h-reg', 'POST', `/v1/jobs/${job.id}/complete`, { lease_token: job.lease_token })).status,
    ).toBe(403);
    // a project token (even an admin's) on host endpoints
    expect((await as('alice', 'POST', '/v1/hosts/h-other/jobs/claim', {})).status).toBe(403);
    expect((await as('admin', 'POST', '/v1/hosts/h-other/heartbeat')).status).toBe(403);
    expect(
      (await as('alice', 'POST', `/v1/jobs/${job.id}/heartbeat`, { lease_token: job.lease_token })).status,
    ).toBe(403);
    // a host token on project endpoints
    expect((await host('h-other', 'POST', '/v1/instances', { name: 'x' })).status).toBe(403);
    expect((await host('h-other', 'GET', '/v1/instances')).status).toBe(403);
    // another project does not see the instance
    expect((await as('bob', 'GET', `/v1/instances/${created.body.id}`)).status).toBe(404);
    expect((await as('bob', 'POST', `/v1/instances/${created.body.id}/actions/stop`)).status).toBe(404);
    expect((await as('admin', 'GET', `/v1/instances/${created.body.id}`)).status).toBe(200);
  });

  it('creates an instance, hands its build to the host with the image to verify, and runs the life cycle', async () => {
    // Prepare
    await register('h-life');
    const image = await activeImage({ architecture: 'x86_64-h-life', min_ram: 128, min_disk: 1 });
    await register('h-life', { architecture: 'x86_64-h-life' });

    // Act: create
    const created = await newInstance(image, { user_data: '#cloud-config\n{}\n' });

    // Assess
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const id = created.body.id;
    expect(created.body).toMatchObject({
      name: 'web 1',
      hostname: 'web-1',
      project_id: 'projA',
      image_id: image,
      host_id: 'h-life',
      stage: 'Building',
      pending_action: 'build',
      has_user_data: true,
    });
    expect(created.body.user_data).toBeUndefined();
    expect(
      (await as('alice', 'GET', '/v1/instances')).body.instances.map((i: { id: string }) => i.id),
    ).toContain(id);
    expect((await as('bob', 'GET', '/v1/instances')).body.instances).toEqual([]);
    expect((await as('admin', 'GET', '/v1/hosts/h-life')).body.used).toEqual({
      vcpus: 1,
      ram_mb: 256,
      disk_gb: 1,
    });
    expect((await host('h-life', 'GET', '/v1/hosts/h-life/instances')).body.instances).toEqual([
      expect.objectContaining({ id, stage: 'Building', pending_action: 'build' }),
    ]);

    // Act: the agent claims the build
    const claimed = await claim('h-life', 30);

    // Assess
    expect(claimed.status).toBe(200);
    const job = claimed.body.job;
    expect(job).toMatchObject({
      kind: 'build',
      attempt: 1,
      instance: {
        id,
        name: 'web 1',
        hostname: 'web-1',
        vcpus: 1,
        ram_mb: 256,
        disk_gb: 1,
        user_data: '#cloud-config\n{}\n',
        image: { id: image, disk_format: 'raw', size: 17, os_hash_algo: 'sha512' },
      },
    });
    expect(job.instance.image.os_hash_value).toMatch(SHA512);
    expect(Date.parse(job.lease_expires_at) - Date.now()).toBeGreaterThan(25_000);
    expect((await claim('h-life')).status).toBe(204);
    // The host may download the image (any image: host role), though it is alice's and private.
    const download = await t.request('GET', `/v2/images/${image}/file`, { token: t.hostTokens['h-life'] });
    expect(download.status).toBe(200);
    expect(await download.text()).toBe('not really a disk');

    // Act: complete, twice (a retried request)
    const result = { console_log: `HANGAR-GUEST-BOOTED\ninstance-id: ${id}\n`, domain_uuid: id };
    const done = await host('h-life', 'POST', `/v1/jobs/${job.id}/complete`, {
      lease_token: job.lease_token,
      result,
    });
    const running = await show(id);
    const repeat = await host('h-life', 'POST', `/v1/jobs/${job.id}/complete`, {
      lease_token: job.lease_token,
      result,
    });

    // Assess: applied once; the repeat changed nothing
    expect(done.status).toBe(204);
    expect(repeat.status).toBe(204);
    expect(running).toMatchObject({ stage: 'Running', pending_action: null, domain_uuid: id });
    expect(running.console_log).toContain(`instance-id: ${id}`);
    expect(await show(id)).toEqual(running);
    expect(
      (await host('h-life', 'POST', `/v1/jobs/${job.id}/fail`, { lease_token: job.lease_token, reason: 'x' }))
        .status,
    ).toBe(409);

    // Act + Assess: the stage machine, each action a job, each stage once the job is done
    const act = (action: string) => as('alice', 'POST', `/v1/instances/${id}/actions/${action}`);
    expect((await act('wake')).status).toBe(409);
    const sleeping = await act('sleep');
    expect(sleeping.status).toBe(202);
    expect(sleeping.body).toMatchObject({ stage: 'Running', pending_action: 'sleep' });
    expect((await act('stop')).status).toBe(409); // a job is pending
    await runJob('h-life', 'sleep');
    expect(await show(id)).toMatchObject({ stage: 'Sleep', pending_action: null });
    expect((await act('sleep')).status).toBe(409);
    expect((await act('start')).status).toBe(409);
    expect((await act('wake')).status).toBe(202);
    await runJob('h-life', 'wake');
    expect((await show(id)).stage).toBe('Running');
    expect((await act('stop')).status).toBe(202);
    await runJob('h-life', 'stop');
    expect((await show(id)).stage).toBe('Shutoff');
    expect((await act('sleep')).status).toBe(409);
    expect((await act('reboot')).status).toBe(409);
    expect((await act('start')).status).toBe(202);
    await runJob('h-life', 'start');
    expect((await act('reboot')).status).toBe(202);
    await runJob('h-life', 'reboot');
    expect((await show(id)).stage).toBe('Running');
    expect((await act('explode')).status).toBe(404);

    // a failed action keeps the stage and says why
    expect((await act('stop')).status).toBe(202);
    const stop = (await claim('h-life')).body.job;
    expect(
      (
        await host('h-life', 'POST', `/v1/jobs/${stop.id}/fail`, {
          lease_token: stop.lease_token,
          reason: 'ACPI ignored',
        })
      ).status,
    ).toBe(204);
    expect(await show(id)).toMatchObject({
      stage: 'Running',
      pending_action: null,
      last_error: 'stop failed: ACPI ignored',
    });

    // destroy: Inexistent, off the host, capacity back
    expect((await act('destroy')).status).toBe(202);
    await runJob('h-life', 'destroy');
    expect(await show(id)).toMatchObject({ stage: 'Inexistent', pending_action: null });
    expect((await show(id)).destroyed_at).toEqual(expect.any(String));
    expect((await act('start')).status).toBe(409);
    expect((await act('destroy')).status).toBe(409);
    expect((await host('h-life', 'GET', '/v1/hosts/h-life/instances')).body.instances).toEqual([]);
    expect((await as('admin', 'GET', '/v1/hosts/h-life')).body.used).toEqual({
      vcpus: 0,
      ram_mb: 0,
      disk_gb: 0,
    });
  });

  it('refuses what no host can take, with the reason', async () => {
    // Prepare
    await register('h-place', {
      architecture: 'x86_64',
      hypervisor_version: 9_000_000,
      vcpus: 2,
      ram_mb: 1024,
    });
    await register('h-place-old', {
      architecture: 'x86_64',
      hypervisor_version: 6_002_000,
      vcpus: 2,
      ram_mb: 1024,
    });
    const big = await activeImage({ architecture: 'amd64', min_ram: 2048, min_disk: 10 });
    const arm = await activeImage({ architecture: 'aarch64' });
    const newer = await activeImage({ architecture: 'x86_64', hypervisor_version_requires: '>=10.0' });
    const older = await activeImage({ architecture: 'x86_64', hypervisor_version_requires: '>=6.1,<7' });
    const kvm = await activeImage({ architecture: 'x86_64', hypervisor_type: 'kvm' });
    const bad = await activeImage({ architecture: 'x86_64', hypervisor_version_requires: 'soon' });
    const queued = (
      await as('alice', 'POST', '/v2/images', { disk_format: 'qcow2', container_format: 'bare' })
    ).body.id;
    const bobs = (await as('bob', 'POST', '/v2/images', { disk_format: 'qcow2', container_format: 'bare' }))
      .body.id;

    // Act
    const ram = await newInstance(big, { ram_mb: 1024, disk_gb: 20 });
    const disk = await newInstance(big, { ram_mb: 4096, disk_gb: 5 });
    const arch = await newInstance(arm);
    const version = await newInstance(newer);
    const type = await newInstance(kvm);
    const malformed = await newInstance(bad);
    const room = await newInstance(older, { vcpus: 3 });
    const notActive = await newInstance(queued);
    const invisible = await newInstance(bobs);
    const invalid = await as('alice', 'POST', '/v1/instances', {
      name: 'x',
      image: older,
      vcpus: 0,
      ram_mb: 256,
      disk_gb: 1,
    });
    const extra = await newInstance(older, { flavor: 'm1.small' });
    const fits = await newInstance(older);

    // Assess
    expect(ram.status).toBe(400);
    expect(ram.body.message).toMatch(/needs at least 2048 MB of RAM \(min_ram\); 1024 MB were asked for/);
    expect(disk.status).toBe(400);
    expect(disk.body.message).toMatch(/at least 10 GB \(min_disk\); 5 GB/);
    expect(arch.status).toBe(409);
    expect(arch.body.message).toMatch(
      /^No host can take it: .*host h-place: architecture x86_64, the image needs aarch64/,
    );
    expect(version.status).toBe(409);
    expect(version.body.message).toContain(
      "host h-place: hypervisor version 9.0.0 does not satisfy the image's hypervisor_version_requires '>=10.0'",
    );
    expect(version.body.message).toContain('host h-place-old: hypervisor version 6.2.0 does not satisfy');
    expect(type.status).toBe(409);
    expect(type.body.message).toContain('host h-place: hypervisor qemu, the image needs kvm');
    expect(malformed.status).toBe(400);
    expect(malformed.body.message).toMatch(
      /hypervisor_version_requires 'soon', which is not a version predicate/,
    );
    expect(room.status).toBe(409);
    expect(room.body.message).toContain('host h-place-old: no room: 2 of 2 vCPUs free');
    expect(notActive.status).toBe(409);
    expect(notActive.body.message).toMatch(/is queued; only active images/);
    expect(invisible.status).toBe(400);
    expect(invalid.status).toBe(400);
    expect(invalid.body.message).toMatch(/vcpus/);
    expect(extra.status).toBe(400);
    // Only the 6.2 host satisfies >=6.1,<7.
    expect(fits.status, JSON.stringify(fits.body)).toBe(202);
    expect(fits.body.host_id).toBe('h-place-old');
  });

  it('boots from a name:tag reference', async () => {
    // Prepare
    await register('h-place', {
      architecture: 'x86_64',
      hypervisor_version: 9_000_000,
      vcpus: 2,
      ram_mb: 1024,
    });
    const image = await activeImage({ architecture: 'x86_64', hypervisor_type: 'qemu' });
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'guest:stable', image_id: image })).status,
    ).toBe(201);

    // Act
    const created = await newInstance('guest:stable');
    const missing = await newInstance('guest:nope');

    // Assess
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    expect(created.body.image).toMatchObject({ id: image, requested_as: 'guest:stable' });
    expect(missing.status).toBe(400);
  });

  it('keeps retention off an image an instance runs from, until the instance is destroyed', async () => {
    // Prepare: app:prod -> v1, keep one version, an instance built from v1
    await register('h-use');
    const v1 = await activeImage({ architecture: 'arch-h-use' });
    const v2 = await activeImage({ architecture: 'arch-h-use' });
    expect(
      (await as('alice', 'PUT', '/v1/names/app/retention', { keep: 1, grace_seconds: 3600 })).status,
    ).toBe(200);
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'app:prod', image_id: v1 })).status,
    ).toBe(201);
    const created = await newInstance('app:prod');
    await runJob('h-use', 'build');

    // Act: moving the tag would retire v1, but an instance runs from it
    const moved = await as('alice', 'POST', '/v1/references/app:prod/move', { image_id: v2 });

    // Assess
    expect(moved.status).toBe(200);
    expect((await as('alice', 'GET', `/v2/images/${v1}`)).body.os_hidden).toBe(false);

    // Act: once the instance is destroyed, retention hides v1
    expect((await as('alice', 'POST', `/v1/instances/${created.body.id}/actions/destroy`)).status).toBe(202);
    await runJob('h-use', 'destroy');
    const applied = await as('alice', 'POST', '/v1/names/app/retention/apply');

    // Assess
    expect(applied.body.hidden).toEqual([v1]);
    expect((await as('alice', 'GET', `/v2/images/${v1}`)).body.os_hidden).toBe(true);
  });

  it('leases jobs: heartbeats extend them, an expired lease makes the job claimable again with a new token', async () => {
    // Prepare
    await register('h-lease');
    const image = await activeImage({ architecture: 'arch-h-lease' });
    const created = await newInstance(image);
    const first = (await claim('h-lease', 1)).body.job;

    // Act: heartbeat while held, then let it expire
    const renewed = await host('h-lease', 'POST', `/v1/jobs/${first.id}/heartbeat`, {
      lease_token: first.lease_token,
    });
    expect((await claim('h-lease', 1)).status).toBe(204);
    await sleep(1_300);
    const second = await claim('h-lease', 30);

    // Assess
    expect(renewed.status).toBe(200);
    expect(Date.parse(renewed.body.lease_expires_at)).toBeGreaterThan(
      Date.parse(first.lease_expires_at) - 1_000,
    );
    expect(second.status).toBe(200);
    expect(second.body.job).toMatchObject({ id: first.id, attempt: 2, kind: 'build' });
    expect(second.body.job.lease_token).not.toBe(first.lease_token);
    const old = { lease_token: first.lease_token };
    expect((await host('h-lease', 'POST', `/v1/jobs/${first.id}/heartbeat`, old)).status).toBe(409);
    expect(
      (await host('h-lease', 'POST', `/v1/jobs/${first.id}/complete`, { ...old, result: {} })).status,
    ).toBe(409);
    expect(
      (await host('h-lease', 'POST', `/v1/jobs/${first.id}/fail`, { ...old, reason: 'late' })).status,
    ).toBe(409);
    expect((await show(created.body.id)).stage).toBe('Building');
    const current = { lease_token: second.body.job.lease_token };
    expect((await host('h-lease', 'POST', `/v1/jobs/${first.id}/heartbeat`, current)).status).toBe(200);
    expect((await host('h-lease', 'POST', '/v1/jobs/no-such-job/heartbeat', current)).status).toBe(404);

    // a failed build: Error with the reason, and only destroy is left
    expect(
      (
        await host('h-lease', 'POST', `/v1/jobs/${first.id}/fail`, {
          ...current,
          reason: 'ImageChecksumError: mismatch',
        })
      ).status,
    ).toBe(204);
    expect(await show(created.body.id)).toMatchObject({
      stage: 'Error',
      reason: 'build failed: ImageChecksumError: mismatch',
      pending_action: null,
    });
    expect((await as('alice', 'POST', `/v1/instances/${created.body.id}/actions/start`)).status).toBe(409);
    expect((await as('alice', 'POST', `/v1/instances/${created.body.id}/actions/destroy`)).status).toBe(202);
  });

  it('gives a job up once its lease expired five times, failing its instance', async () => {
    // Prepare
    await register('h-lease');
    const image = await activeImage({ architecture: 'arch-h-lease' });
    // The destroy left by the previous test goes first.
    await runJob('h-lease', 'destroy');
    const created = await newInstance(image);

    // Act
    for (let attempt = 1; attempt <= 5; attempt++) {
      const claimed = await claim('h-lease', 1);
      expect(claimed.body.job.attempt).toBe(attempt);
      await sleep(1_100);
    }
    const after = await claim('h-lease', 1);

    // Assess
    expect(after.status).toBe(204);
    expect(await show(created.body.id)).toMatchObject({
      stage: 'Error',
      reason: expect.stringMatching(/^build failed: gave up after 5 attempts/),
    });
  });

  it('hands a job to exactly one of many concurrent claimers', async () => {
    // Prepare
    await register('h-race');
    const image = await activeImage({ architecture: 'arch-h-race' });
    expect((await newInstance(image)).status).toBe(202);

    // Act
    const replies = await Promise.all(Array.from({ length: 8 }, () => claim('h-race')));

    // Assess
    expect(replies.filter((r) => r.status === 200)).toHaveLength(1);
    expect(replies.filter((r) => r.status === 204)).toHaveLength(7);
  });

  it('never overcommits a host under concurrent creates', async () => {
    // Prepare
    await register('h-cap', { vcpus: 4, ram_mb: 100_000, disk_gb: 1000 });
    const image = await activeImage({ architecture: 'arch-h-cap' });

    // Act
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) => newInstance(image, { name: `c${i}` })),
    );

    // Assess
    const statuses = replies.map((r) => r.status).sort();
    expect(statuses, JSON.stringify(replies.filter((r) => r.status !== 202 && r.status !== 409))).toEqual([
      ...Array(4).fill(202),
      ...Array(6).fill(409),
    ]);
    for (const refused of replies.filter((r) => r.status === 409))
      expect(refused.body.message).toContain('host h-cap: no room: 0 of 4 vCPUs free');
    expect((await as('admin', 'GET', '/v1/hosts/h-cap')).body.used).toEqual({
      vcpus: 4,
      ram_mb: 1024,
      disk_gb: 4,
    });
    expect((await host('h-cap', 'GET', '/v1/hosts/h-cap/instances')).body.instances).toHaveLength(4);
  });

  it('repairs its view from what the host observes', async () => {
    // Prepare: three running instances
    await register('h-obs', { vcpus: 4 });
    const image = await activeImage({ architecture: 'arch-h-obs' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await newInstance(image)).body.id);
      await runJob('h-obs', 'build');
    }
    const [gone, stopped, saved] = ids as [string, string, string];
    const observe = (id: string, state: string, reason?: string) =>
      host('h-obs', 'POST', `/v1/hosts/h-obs/instances/${id}/observed`, {
        state,
        ...(reason ? { reason } : {}),
      });

    // Act + Assess
    expect((await observe(gone, 'missing', 'no libvirt domain')).status).toBe(204);
    expect(await show(gone)).toMatchObject({
      stage: 'Error',
      reason: 'domain missing on host h-obs (no libvirt domain)',
      observed: { state: 'missing' },
    });
    await observe(stopped, 'shutoff');
    expect((await show(stopped)).stage).toBe('Shutoff');
    await observe(stopped, 'running');
    expect((await show(stopped)).stage).toBe('Running');
    await observe(saved, 'saved');
    expect((await show(saved)).stage).toBe('Sleep');
    // With a job pending, the job decides.
    expect((await as('alice', 'POST', `/v1/instances/${saved}/actions/wake`)).status).toBe(202);
    await observe(saved, 'shutoff');
    expect(await show(saved)).toMatchObject({ stage: 'Sleep', pending_action: 'wake' });
    expect(
      (await host('h-obs', 'POST', '/v1/hosts/h-obs/instances/unknown/observed', { state: 'running' }))
        .status,
    ).toBe(404);
    expect(
      (await host('h-obs', 'POST', `/v1/hosts/h-obs/instances/${gone}/observed`, { state: 'exploded' }))
        .status,
    ).toBe(400);
  });
});
