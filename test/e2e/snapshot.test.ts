/**
 * Snapshots end to end: the real backend, the real host agent (child process) and REAL libvirt
 * (qemu:///system, TCG here) with the project's test guest. A recipe (user-data) writes a marker to
 * the guest's own disk; the instance is snapshotted Running (the guest paused only for the overlay
 * copy) and Shutoff; a new instance booted from each snapshot prints the marker the first one
 * wrote. The service verifies the sha512: the agent reports what it sent, the service compares it
 * with what it computed, and the downloaded image hashes to it.
 * Missing libvirt/qemu makes beforeAll throw: this test fails loudly rather than skip.
 */
import { createHash, randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { domainNameFor } from '../../agent/src/hypervisor/domain-xml.ts';
import {
  type AgentProcess,
  ensureLibvirt,
  ensureTestGuest,
  removeDomains,
  SYSTEM_URI,
  startAgent,
  tail,
  virsh,
} from '../helpers/agent-libvirt.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';

const HOST_ID = `e2e-snap-${randomUUID().slice(0, 8)}`;
const STAGE_TIMEOUT_MS = 180_000;

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
type Json = any;

/** The recipe: writes the marker to the guest's disk and syncs; the guest keeps running. */
const recipe = (marker: string) =>
  `#!/bin/sh\necho "${marker}" > /mnt/disk/hangar-marker.txt\nsync\necho "recipe wrote ${marker}"\n`;

describe('snapshots with a real host agent and libvirt', () => {
  let t: TestBackend;
  let dir: string;
  let dataDir: string;
  let agent: AgentProcess | undefined;
  let guestImage: string;
  const instanceIds: string[] = [];

  async function call(token: string, method: string, path: string, body?: unknown) {
    const response = await t.request(method, path, {
      token,
      headers: { accept: 'application/json' },
      ...(body === undefined ? {} : { body: body as object }),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : undefined) as Json };
  }
  const alice = (method: string, path: string, body?: unknown) => call(t.tokens.alice, method, path, body);
  const show = async (id: string): Promise<Json> => (await alice('GET', `/v1/instances/${id}`)).body;
  const consoleLog = (id: string) =>
    readFile(join(dataDir, 'instances', id, 'console.log'), 'utf8').catch(() => '');

  async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + STAGE_TIMEOUT_MS;
    for (;;) {
      const found = await probe();
      if (found !== undefined) return found;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}\nagent logs:\n${tail(agent?.logs ?? [], 40)}`);
      await sleep(250);
    }
  }
  /** The instance once it is `stage` with no job pending; its last_error fails the wait. */
  async function waitForStage(id: string, stage: string): Promise<Json> {
    return waitFor(`instance ${id} ${stage}`, async () => {
      const instance = await show(id);
      if (instance.stage === 'Error' || (instance.last_error && instance.pending_action === null))
        throw new Error(
          `instance ${id} is ${instance.stage}: ${instance.reason ?? instance.last_error}\n${tail(agent?.logs ?? [], 40)}`,
        );
      return instance.stage === stage && instance.pending_action === null ? instance : undefined;
    });
  }
  const waitForConsole = (id: string, pattern: RegExp) =>
    waitFor(`${pattern} on the console of ${id}`, async () => {
      const text = await consoleLog(id);
      return pattern.test(text) ? text : undefined;
    });

  async function boot(name: string, image: string, userData?: string): Promise<string> {
    const created = await alice('POST', '/v1/instances', {
      name,
      image,
      vcpus: 1,
      ram_mb: 256,
      disk_gb: 1,
      ...(userData ? { user_data: userData } : {}),
    });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    instanceIds.push(created.body.id);
    await waitForStage(created.body.id, 'Running');
    return created.body.id;
  }
  async function destroy(id: string): Promise<void> {
    expect((await alice('POST', `/v1/instances/${id}/actions/destroy`)).status).toBe(202);
    await waitFor(`instance ${id} destroyed`, async () =>
      (await show(id)).stage === 'Inexistent' ? true : undefined,
    );
  }

  /** Snapshot, wait for the image to be active and the job done; the service's checks hold. */
  async function snapshot(id: string, name: string, reference: string): Promise<Json> {
    const asked = await alice('POST', `/v1/instances/${id}/actions/snapshot`, { name, reference });
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    expect(asked.body.instance.pending_action).toBe('snapshot');
    const imageId: string = asked.body.image_id;
    const before = asked.body.instance.stage;
    await waitFor(`snapshot job of ${id}`, async () => {
      const instance = await show(id);
      if (instance.last_error) throw new Error(`snapshot failed: ${instance.last_error}`);
      return instance.pending_action === null ? instance : undefined;
    });
    expect((await show(id)).stage).toBe(before);
    const image = (await alice('GET', `/v2/images/${imageId}`)).body;
    expect(image).toMatchObject({
      status: 'active',
      disk_format: 'qcow2',
      owner: 'projA',
      image_type: 'snapshot',
      instance_uuid: id,
      base_image_ref: guestImage,
    });
    // The bytes the service serves hash to the sha512 it recorded (and checked against the agent's).
    const download = await t.request('GET', `/v2/images/${imageId}/file`, { token: t.tokens.alice });
    expect(download.status).toBe(200);
    const bytes = new Uint8Array(await download.arrayBuffer());
    expect(createHash('sha512').update(bytes).digest('hex')).toBe(image.os_hash_value);
    // A standalone qcow2: no backing file to follow on another host.
    expect(Buffer.from(bytes.subarray(0, 4)).toString('latin1')).toBe('QFI\xfb');
    expect(Number(Buffer.from(bytes.subarray(8, 16)).readBigUInt64BE())).toBe(0);
    const ref = (await alice('GET', `/v1/references/${reference}`)).body;
    expect(ref.image_id).toBe(imageId);
    const history = (await alice('GET', `/v1/references/${reference}/history`)).body.history;
    expect(history[0]).toMatchObject({ action: 'snapshot', to: imageId });
    return image;
  }

  beforeAll(async () => {
    await ensureLibvirt();
    const guest = await ensureTestGuest();
    t = await startTestBackend({ hosts: [HOST_ID] });
    const created = await alice('POST', '/v2/images', {
      name: 'hangar-test-guest',
      disk_format: 'qcow2',
      container_format: 'bare',
      architecture: 'x86_64',
      min_ram: 128,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    guestImage = created.body.id;
    const upload = await t.request('PUT', `/v2/images/${guestImage}/file`, {
      token: t.tokens.alice,
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(await readFile(guest)),
    });
    expect(upload.status).toBe(204);

    dir = await mkdtemp(join(tmpdir(), 'hangar-snap-e2e-'));
    await chmod(dir, 0o755);
    dataDir = join(dir, 'data');
    agent = await startAgent(
      {
        service_url: t.url,
        host_id: HOST_ID,
        token: t.hostTokens[HOST_ID],
        libvirt_uri: SYSTEM_URI,
        data_dir: dataDir,
        domain_type: 'auto',
        poll_interval_ms: 200,
        lease_seconds: 10,
        heartbeat_interval_ms: 1_000,
        boot_marker: 'HANGAR-GUEST-READY',
        boot_timeout_ms: 120_000,
        shutdown_timeout_ms: 60_000,
        shutdown_retry_interval_ms: 3_000,
        network: 'user',
        log_level: 'debug',
      },
      join(dir, 'agent.json'),
    );
    await agent.waitForLog((line) => line['message'] === 'agent ready', 120_000);
  }, 600_000);

  afterAll(async () => {
    await agent?.stop('SIGTERM');
    for (const id of instanceIds) await removeDomains(SYSTEM_URI, domainNameFor(id));
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it('snapshots a Running instance, pausing it briefly; an instance of the snapshot shows the change', async () => {
    // Arrange: the recipe writes the marker to the guest's disk
    const marker = `running-${randomUUID().slice(0, 8)}`;
    const first = await boot('snap source running', guestImage, recipe(marker));
    await waitForConsole(first, /HANGAR-RECIPE-EXIT 0/);
    expect(await consoleLog(first)).toContain('HANGAR-DISK-MARKER: none');

    // Act
    const image = await snapshot(first, 'running snapshot', 'guestsnap:running');

    // Assert: the guest was paused, then carried on (still Running, heartbeats continue)
    const paused = agent?.logs.find((line) => line['message'] === 'guest paused for the snapshot copy');
    expect(paused?.['paused_ms']).toEqual(expect.any(Number));
    const uploaded = agent?.logs.find((line) => line['message'] === 'snapshot uploaded');
    // The figure for the README: how long the guest stood still, and the rest of the job.
    console.log('snapshot of a Running instance:', JSON.stringify(uploaded));
    expect((await virsh(SYSTEM_URI, 'domstate', domainNameFor(first))).trim()).toBe('running');
    const beats = (await consoleLog(first)).match(/HANGAR-HEARTBEAT \d+/g)?.length ?? 0;
    await waitFor('heartbeats after the snapshot', async () =>
      ((await consoleLog(first)).match(/HANGAR-HEARTBEAT \d+/g)?.length ?? 0) > beats + 1 ? true : undefined,
    );

    // A new instance from the snapshot (by its reference) finds the marker on its disk.
    const second = await boot('from running snapshot', 'guestsnap:running');
    expect((await show(second)).image.id).toBe(image.id);
    await waitForConsole(second, new RegExp(`HANGAR-DISK-MARKER: ${marker}`));
    await destroy(second);
    await destroy(first);
  });

  it('snapshots a Shutoff instance without pausing anything; an instance of the snapshot shows the change', async () => {
    // Arrange: the recipe writes the marker; a graceful stop (ACPI) unmounts the disk and powers off
    const marker = `shutoff-${randomUUID().slice(0, 8)}`;
    const first = await boot('snap source shutoff', guestImage, recipe(marker));
    await waitForConsole(first, /HANGAR-RECIPE-EXIT 0/);
    expect((await alice('POST', `/v1/instances/${first}/actions/stop`)).status).toBe(202);
    await waitForStage(first, 'Shutoff');
    const pausesBefore =
      agent?.logs.filter((line) => line['message'] === 'guest paused for the snapshot copy').length ?? 0;

    // Act
    const image = await snapshot(first, 'shutoff snapshot', 'guestsnap:shutoff');

    // Assert
    const uploads = agent?.logs.filter((line) => line['message'] === 'snapshot uploaded') ?? [];
    expect(uploads.at(-1)).toMatchObject({ image_id: image.id, source_state: 'shutoff', paused_ms: null });
    expect(
      agent?.logs.filter((line) => line['message'] === 'guest paused for the snapshot copy').length,
    ).toBe(pausesBefore);
    const second = await boot('from shutoff snapshot', 'guestsnap:shutoff');
    await waitForConsole(second, new RegExp(`HANGAR-DISK-MARKER: ${marker}`));
    await destroy(second);
    await destroy(first);
  });
});
