/**
 * Upgrade and rollback of an instance over HTTP, against the real local backend. The happy paths
 * run the real agent's jobs (tests/helpers/memory-agent.ts: image cache, qemu-img overlays, the
 * upgrade and rollback handlers) over the in-memory hypervisor, whose guests print the first line
 * of their image: an image whose first line lacks the boot marker fails the boot check. The
 * refusals use a second host driven by hand over the jobs API, and each checks that nothing changed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCalls, createRawImage, putImageFile, type Reply, registerHost } from '../helpers/api.ts';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { type MemoryAgent, startMemoryAgent } from '../helpers/memory-agent.ts';

const AGENT_HOST = 'h-upgrade';
const MANUAL_HOST = 'h-upgrade-manual';
const MARKER = 'HANGAR-GUEST-READY';
const BOOT_CHECK = { marker: MARKER, timeout_seconds: 10 };

describe('instance upgrade and rollback', { timeout: 120_000 }, () => {
  let t: TestBackend;
  let agent: MemoryAgent;

  beforeAll(async () => {
    t = await startTestBackend({ hosts: [AGENT_HOST, MANUAL_HOST] });
    agent = await startMemoryAgent({
      serviceUrl: t.url,
      hostId: AGENT_HOST,
      token: t.hostTokens[AGENT_HOST] ?? '',
      registration: {
        vcpus: 8,
        ram_mb: 16384,
        disk_gb: 100,
        architecture: `arch-${AGENT_HOST}`,
        hypervisor_type: 'qemu',
        hypervisor_version: 9_000_000,
      },
    });
    // Room for one 2 GB disk and not for a second: the capacity refusal.
    const registered = await registerHost(t, MANUAL_HOST, {
      vcpus: 8,
      ram_mb: 16384,
      disk_gb: 3,
      architecture: `arch-${MANUAL_HOST}`,
    });
    expect(registered.status).toBe(200);
  }, 120_000);
  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
  });

  const { as, host } = apiCalls(() => t);

  /** An active raw image whose first line is what its guest prints at boot. */
  async function image(hostId: string, firstLine: string, persona: Persona = 'alice'): Promise<string> {
    const created = await createRawImage(t, persona, {
      name: firstLine.slice(0, 60),
      architecture: `arch-${hostId}`,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const bytes = Buffer.alloc(64 * 1024);
    bytes.write(`${firstLine}\n`);
    const upload = await putImageFile(t, t.tokens[persona], created.body.id, new Uint8Array(bytes));
    expect(upload.status).toBe(204);
    return created.body.id;
  }

  const show = async (id: string) => (await as('alice', 'GET', `/v1/instances/${id}`)).body;
  const usedDisk = async (hostId: string) =>
    (await as('admin', 'GET', `/v1/hosts/${hostId}`)).body.used.disk_gb as number;

  /** The instance once its pending job is over. */
  async function settled(id: string): Promise<Reply['body']> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const view = await show(id);
      if (view.pending_action === null) return view;
      if (Date.now() > deadline) throw new Error(`instance ${id} still has ${view.pending_action} pending`);
      await sleep(100);
    }
  }

  async function create(image: string, overrides: Record<string, unknown> = {}): Promise<string> {
    const created = await as('alice', 'POST', '/v1/instances', {
      name: 'web',
      image,
      vcpus: 1,
      ram_mb: 256,
      disk_gb: 1,
      ...overrides,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    return created.body.id;
  }

  async function act(id: string, action: string, body?: unknown): Promise<Reply> {
    return as('alice', 'POST', `/v1/instances/${id}/actions/${action}`, body);
  }

  /** Claims the manual host's next job, which must be `kind`, and completes or fails it. */
  async function runManualJob(kind: string, outcome: 'complete' | 'fail' = 'complete'): Promise<void> {
    const claimed = await host(MANUAL_HOST, 'POST', `/v1/hosts/${MANUAL_HOST}/jobs/claim`, {});
    expect(claimed.status).toBe(200);
    expect(claimed.body.job.kind).toBe(kind);
    const { id, lease_token } = claimed.body.job;
    const done = await host(
      MANUAL_HOST,
      'POST',
      `/v1/jobs/${id}/${outcome}`,
      outcome === 'complete' ? { lease_token } : { lease_token, reason: 'the disk would not boot' },
    );
    expect(done.status).toBe(204);
  }

  /** The refusal, and the instance and its host exactly as they were. */
  async function refused(id: string, action: string, body: unknown, status: number, message: RegExp) {
    const before = await show(id);
    const hostId = before.host_id as string;
    const used = await usedDisk(hostId);
    const reply = await act(id, action, body);
    expect(reply.status, JSON.stringify(reply.body)).toBe(status);
    expect(JSON.stringify(reply.body)).toMatch(message);
    expect(await show(id)).toEqual(before);
    expect(await usedDisk(hostId)).toBe(used);
  }

  it('upgrades to where the reference points now, keeps the previous disk, and rolls back by hand', async () => {
    // Prepare: web:stable -> v1, an instance following it
    const v1 = await image(AGENT_HOST, `${MARKER} content=v1`);
    const v2 = await image(AGENT_HOST, `${MARKER} content=v2`);
    const ref = await as('alice', 'POST', '/v1/references', { reference: 'web:stable', image_id: v1 });
    expect(ref.status).toBe(201);
    const id = await create('web:stable', { boot_check: BOOT_CHECK, user_data: '#cloud-config\n{}\n' });
    const built = await settled(id);
    expect(built).toMatchObject({
      stage: 'Running',
      image_id: v1,
      reference: 'web:stable',
      previous_image: null,
    });
    expect(built.console_log).toContain('content=v1');
    const usedBefore = await usedDisk(AGENT_HOST);
    const moved = await as('alice', 'POST', '/v1/references/web:stable/move', { image_id: v2, expect: v1 });
    expect(moved.status).toBe(200);

    // Act: upgrade without a body follows the reference
    const upgrade = await act(id, 'upgrade');
    expect(upgrade.status, JSON.stringify(upgrade.body)).toBe(202);
    expect(upgrade.body).toMatchObject({ pending_action: 'upgrade', upgrading_to: { id: v2 } });
    const upgraded = await settled(id);

    // Assess: the new disk booted (its guest printed v2), the old one is kept and counted
    expect(upgraded).toMatchObject({
      stage: 'Running',
      image_id: v2,
      previous_image: { id: v1 },
      upgrading_to: null,
      last_error: null,
      reference: 'web:stable',
      domain_uuid: built.domain_uuid,
    });
    expect(upgraded.console_log.trimEnd().split('\n').at(-1)).toBe(`${MARKER} content=v2`);
    expect(await usedDisk(AGENT_HOST)).toBe(usedBefore + 1);
    const paths = agent.files.paths(id);
    expect(await agent.files.exists(paths.previous)).toBe(true);
    expect(await agent.files.exists(paths.seed)).toBe(true);
    expect(agent.hypervisor.domains.size).toBeGreaterThanOrEqual(1);

    // Act: a manual rollback
    const rollback = await act(id, 'rollback');
    expect(rollback.status, JSON.stringify(rollback.body)).toBe(202);
    const rolledBack = await settled(id);

    // Assess: back on v1 (its guest prints v1 again), v2 is now the previous disk; still two disks
    expect(rolledBack).toMatchObject({ stage: 'Running', image_id: v1, previous_image: { id: v2 } });
    expect(rolledBack.console_log.trimEnd().split('\n').at(-1)).toBe(`${MARKER} content=v1`);
    expect(await usedDisk(AGENT_HOST)).toBe(usedBefore + 1);

    // And destroying it gives the host both disks back.
    expect((await act(id, 'destroy')).status).toBe(202);
    expect((await settled(id)).stage).toBe('Inexistent');
    expect(await usedDisk(AGENT_HOST)).toBe(usedBefore - 1);
  });

  it('rolls back by itself when the upgraded boot fails its boot check, saying why', async () => {
    // Prepare: an instance on v1 that was upgraded to v2 once (so it has a previous disk)
    const v1 = await image(AGENT_HOST, `${MARKER} content=v1`);
    const v2 = await image(AGENT_HOST, `${MARKER} content=v2`);
    const broken = await image(AGENT_HOST, 'kernel panic: no init found');
    const id = await create(v1, { boot_check: BOOT_CHECK });
    await settled(id);
    expect((await act(id, 'upgrade', { image: v2 })).status).toBe(202);
    const before = await settled(id);
    expect(before).toMatchObject({ image_id: v2, previous_image: { id: v1 } });
    const used = await usedDisk(AGENT_HOST);

    // Act
    const upgrade = await act(id, 'upgrade', { image: broken });
    expect(upgrade.status, JSON.stringify(upgrade.body)).toBe(202);
    const after = await settled(id);

    // Assess: still on v2, running again, its previous disk (v1) kept, the failed disk gone
    expect(after).toMatchObject({
      stage: 'Running',
      image_id: v2,
      previous_image: { id: v1 },
      upgrading_to: null,
    });
    expect(after.last_error).toMatch(
      new RegExp(
        `^upgrade failed: UpgradeRolledBackError: the boot on image ${broken} failed its boot check .*rolled back to the previous disk`,
      ),
    );
    expect(after.console_log.trimEnd().split('\n').at(-1)).toBe(`${MARKER} content=v2`);
    expect(await usedDisk(AGENT_HOST)).toBe(used);
    const paths = agent.files.paths(id);
    expect(await agent.files.exists(paths.rollback)).toBe(false);
    expect(await agent.files.exists(paths.upgrade)).toBe(false);
    expect((await agent.files.readRecord(id))?.image_id).toBe(v2);
    // And a manual rollback still returns to v1.
    expect((await act(id, 'rollback')).status).toBe(202);
    expect(await settled(id)).toMatchObject({ image_id: v1, previous_image: { id: v2 } });
  });

  it('refuses an upgrade with no reference and no image, an image the caller cannot see, one not active, or while asleep', async () => {
    // Prepare
    const v1 = await image(AGENT_HOST, `${MARKER} content=v1`);
    const bobs = await image(AGENT_HOST, `${MARKER} bob`, 'bob');
    const queued = await as('alice', 'POST', '/v2/images', {
      name: 'empty',
      disk_format: 'raw',
      container_format: 'bare',
      architecture: `arch-${AGENT_HOST}`,
    });
    const id = await create(v1);
    await settled(id);

    // Act & Assess
    await refused(id, 'upgrade', {}, 400, /follows no reference: name the image to upgrade to/);
    await refused(id, 'upgrade', { image: bobs }, 400, new RegExp(`No image found with ID ${bobs}`));
    await refused(id, 'upgrade', { image: 'nowhere:1' }, 400, /nowhere:1/);
    await refused(id, 'upgrade', { image: queued.body.id }, 409, /is queued; only active images/);
    await refused(id, 'upgrade', { image: v1 }, 409, /already runs image/);
    await refused(id, 'upgrade', { image: v1, force: true }, 400, /Invalid upgrade/);
    await refused(id, 'rollback', undefined, 409, /no previous disk to roll back to/);
    // Asleep: its saved RAM belongs to the current disk.
    const v2 = await image(AGENT_HOST, `${MARKER} content=v2`);
    expect((await act(id, 'sleep')).status).toBe(202);
    expect((await settled(id)).stage).toBe('Sleep');
    await refused(
      id,
      'upgrade',
      { image: v2 },
      409,
      /while it is Sleep \(upgrade needs Running or Shutoff\)/,
    );
  });

  it('refuses to upgrade a Building, Error or destroyed instance, or on a host with no room for the disk', async () => {
    // Prepare: instances on the manual host, whose jobs nobody runs unless the test does
    const base = await image(MANUAL_HOST, `${MARKER} m1`);
    const target = await image(MANUAL_HOST, `${MARKER} m2`);
    const building = await create(base);
    const upgrade = { image: target };

    // Act & Assess: Building (its build job is what stands in the way)
    await refused(building, 'upgrade', upgrade, 409, /has a build job pending/);
    await refused(building, 'rollback', undefined, 409, /has a build job pending/);

    // Error
    await runManualJob('build', 'fail');
    expect((await show(building)).stage).toBe('Error');
    await refused(
      building,
      'upgrade',
      upgrade,
      409,
      /while it is Error \(upgrade needs Running or Shutoff\)/,
    );

    // Inexistent
    expect((await act(building, 'destroy')).status).toBe(202);
    await runManualJob('destroy');
    expect((await show(building)).stage).toBe('Inexistent');
    await refused(building, 'upgrade', upgrade, 409, /while it is Inexistent/);

    // No room: a 2 GB disk on a 3 GB host has no room for a second
    const big = await create(base, { disk_gb: 2 });
    await runManualJob('build');
    expect((await show(big)).stage).toBe('Running');
    await refused(big, 'upgrade', upgrade, 409, /cannot take the upgrade: no room: 1 of 3 GB disk free/);
    expect((await act(big, 'destroy')).status).toBe(202);
    await runManualJob('destroy');
    expect(await usedDisk(MANUAL_HOST)).toBe(0);
  });
});
