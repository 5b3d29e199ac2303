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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { domainNameFor } from '../../agent/src/hypervisor/domain-xml.ts';
import { SYSTEM_URI, tail, virsh } from '../helpers/agent-libvirt.ts';
import { startVmHarness, type VmHarness } from '../helpers/vm-e2e.ts';

const HOST_ID = `e2e-snap-${randomUUID().slice(0, 8)}`;
const STAGE_TIMEOUT_MS = 180_000;

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
type Json = any;

/** The recipe: writes the marker to the guest's disk and syncs; the guest keeps running. */
const recipe = (marker: string) =>
  `#!/bin/sh\necho "${marker}" > /mnt/disk/hangar-marker.txt\nsync\necho "recipe wrote ${marker}"\n`;

describe('snapshots with a real host agent and libvirt', () => {
  let vm: VmHarness;
  let guestImage: string;
  const instanceIds: string[] = [];

  const alice = (method: string, path: string, body?: unknown) => vm.call(method, path, body);
  const show = async (id: string): Promise<Json> => (await alice('GET', `/v1/instances/${id}`)).body;
  const consoleLog = (id: string) => vm.consoleLog(id);
  const waitFor = <T>(what: string, probe: () => Promise<T | undefined>) =>
    vm.waitFor(what, probe, STAGE_TIMEOUT_MS);
  /** The instance once it is `stage` with no job pending; its last_error fails the wait. */
  async function waitForStage(id: string, stage: string): Promise<Json> {
    return waitFor(`instance ${id} ${stage}`, async () => {
      const instance = await show(id);
      if (instance.stage === 'Error' || (instance.last_error && instance.pending_action === null))
        throw new Error(
          `instance ${id} is ${instance.stage}: ${instance.reason ?? instance.last_error}\n${tail(vm.agent.logs, 40)}`,
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
    const download = await vm.t.request('GET', `/v2/images/${imageId}/file`, { token: vm.t.tokens.alice });
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
    vm = await startVmHarness({
      hostId: HOST_ID,
      scratchPrefix: 'hangar-snap-e2e-',
      agent: { boot_marker: 'HANGAR-GUEST-READY', shutdown_timeout_ms: 60_000, observe_interval_ms: 5_000 },
    });
    guestImage = await vm.upload('hangar-test-guest', vm.guest, { min_ram: 128 });
  }, 600_000);

  afterAll(async () => {
    await vm?.stop(instanceIds.map(domainNameFor));
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
    const paused = vm.agent.logs.find((line) => line['message'] === 'guest paused for the snapshot copy');
    expect(paused?.['paused_ms']).toEqual(expect.any(Number));
    const uploaded = vm.agent.logs.find((line) => line['message'] === 'snapshot uploaded');
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
      vm.agent.logs.filter((line) => line['message'] === 'guest paused for the snapshot copy').length ?? 0;

    // Act
    const image = await snapshot(first, 'shutoff snapshot', 'guestsnap:shutoff');

    // Assert
    const uploads = vm.agent.logs.filter((line) => line['message'] === 'snapshot uploaded') ?? [];
    expect(uploads.at(-1)).toMatchObject({ image_id: image.id, source_state: 'shutoff', paused_ms: null });
    expect(
      vm.agent.logs.filter((line) => line['message'] === 'guest paused for the snapshot copy').length,
    ).toBe(pausesBefore);
    const second = await boot('from shutoff snapshot', 'guestsnap:shutoff');
    await waitForConsole(second, new RegExp(`HANGAR-DISK-MARKER: ${marker}`));
    await destroy(second);
    await destroy(first);
  });
});
