/**
 * Builds end to end: the real backend and build state machine (local ASL interpreter), the real
 * host agent (child process) and REAL libvirt (qemu:///system, TCG here) with the project's test
 * guest. `guest:built` is built from `guest:stable` with a recipe that writes a marker to the
 * guest's own disk and powers the guest off; the publish gate boots the built image and passes
 * only once its console prints `HANGAR-DISK-MARKER: <marker>` (the guest prints the first line of
 * /mnt/disk/hangar-marker.txt at boot); `guest:built`'s history names the build. A recipe that
 * fails (and so never powers off) times out and leaves `guest:built` untouched, with no build
 * instance, domain or image behind. Missing libvirt/qemu makes beforeAll throw: never a skip.
 * The stage timings of the successful build are printed (README: "Builds").
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { domainNameFor } from '../../agent/src/hypervisor/domain-xml.ts';
import { SYSTEM_URI, virsh } from '../helpers/agent-libvirt.ts';
import { startVmHarness, type VmHarness } from '../helpers/vm-e2e.ts';

const HOST_ID = `e2e-build-${randomUUID().slice(0, 8)}`;
const BUILD_TIMEOUT_MS = 900_000;

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
type Json = any;

/** The recipe: the marker on the guest's disk, the disk unmounted clean, the guest powered off. */
const recipe = (marker: string) =>
  `#!/bin/sh\necho "${marker}" > /mnt/disk/hangar-marker.txt\nsync; umount /mnt/disk; poweroff -f\n`;

describe('builds with a real host agent and libvirt', { timeout: 1_200_000 }, () => {
  let vm: VmHarness;
  let stable: string;
  let built: Json;
  const builds: string[] = [];

  beforeAll(async () => {
    vm = await startVmHarness({
      hostId: HOST_ID,
      scratchPrefix: 'hangar-build-e2e-',
      env: { HANGAR_BUILD_POLL_SECONDS: '2' },
    });
    stable = await vm.upload('guest-stable', vm.guest);
    const ref = await vm.call('POST', '/v1/references', { reference: 'guest:stable', image_id: stable });
    expect(ref.status, JSON.stringify(ref.body)).toBe(201);
  }, 600_000);

  afterAll(async () => {
    await vm?.stop(builds.map(domainNameFor));
  }, 120_000);

  const finished = (id: string): Promise<Json> =>
    vm.waitFor(
      `build ${id} to finish`,
      async () => {
        const build = (await vm.call('GET', `/v1/builds/${id}`)).body;
        return ['succeeded', 'failed'].includes(build.stage) ? build : undefined;
      },
      BUILD_TIMEOUT_MS,
    );
  const instanceGone = (id: string) =>
    vm.waitFor(`instance ${id} destroyed`, async () => {
      const shown = await vm.call('GET', `/v1/instances/${id}`);
      return shown.status === 404 || shown.body.stage === 'Inexistent' ? true : undefined;
    });
  const domains = async () =>
    (await virsh(SYSTEM_URI, 'list', '--all', '--name')).split('\n').map((l) => l.trim());

  it('builds guest:built from guest:stable: the gate boots it and sees the marker, the history names the build', async () => {
    // Arrange
    const marker = `built-${randomUUID().slice(0, 8)}`;

    // Act
    const asked = await vm.call('POST', '/v1/builds', {
      base: 'guest:stable',
      recipe: { user_data: recipe(marker) },
      target: 'guest:built',
      boot: { marker: `HANGAR-DISK-MARKER: ${marker}`, timeout_seconds: 300, ram_mb: 256 },
      timeout_seconds: 600,
      ram_mb: 256,
    });
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    builds.push(asked.body.id);
    built = await finished(asked.body.id);

    // Assert: every stage, the recipe ran to its end on the console, the gate passed
    expect(built.stage, built.reason).toBe('succeeded');
    expect(built.stages.map((s: Json) => s.stage)).toEqual([
      'provisioning',
      'running recipe',
      'snapshotting',
      'testing',
      'publishing',
    ]);
    // The recipe's last act: the guest powered itself off
    expect(built.console_tail).toMatch(/HANGAR-RECIPE-START[\s\S]*Power down/);
    const publication = (await vm.call('GET', `/v1/publications/${built.publication_id}`)).body;
    expect(publication).toMatchObject({ status: 'success', result: { boot_checked: true } });
    // guest:built points to the image, which says where it came from; its history names the build
    expect((await vm.call('GET', '/v1/references/guest:built')).body.image_id).toBe(built.image_id);
    const image = (await vm.call('GET', `/v2/images/${built.image_id}`)).body;
    const base = (await vm.call('GET', `/v2/images/${stable}`)).body;
    expect(image).toMatchObject({
      status: 'active',
      disk_format: 'qcow2',
      architecture: 'x86_64',
      hangar_build_id: built.id,
      hangar_base_image: stable,
      hangar_base_sha512: base.os_hash_value,
      hangar_recipe_sha256: built.recipe_sha256,
    });
    const history = (await vm.call('GET', '/v1/references/guest:built/history')).body.history;
    expect(history[0]).toMatchObject({ action: 'build', build_id: built.id, to: built.image_id });
    // No build or gate instance left, in the service or in libvirt
    await instanceGone(built.id);
    await instanceGone(built.publication_id);
    expect(await domains()).not.toContain(domainNameFor(built.id));
    expect(await domains()).not.toContain(domainNameFor(built.publication_id));

    const total = (Date.parse(built.updated_at) - Date.parse(built.created_at)) / 1000;
    console.log(
      `build of the test guest: ${total} s (${built.stages.map((s: Json) => `${s.stage} ${s.seconds} s`).join(', ')})`,
    );
  });

  it('a recipe that fails never powers off: the build times out, guest:built untouched, nothing left behind', async () => {
    // Arrange
    expect(built?.stage).toBe('succeeded');
    const imagesBefore = (await vm.call('GET', '/v2/images?limit=1000')).body.images.length;

    // Act: the recipe exits 3 before its poweroff; the guest keeps running
    const asked = await vm.call('POST', '/v1/builds', {
      base: 'guest:stable',
      recipe: { user_data: '#!/bin/sh\necho "about to fail"\nexit 3\npoweroff -f\n' },
      target: 'guest:built',
      timeout_seconds: 60,
      ram_mb: 256,
    });
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    builds.push(asked.body.id);
    const failed = await finished(asked.body.id);

    // Assert
    expect(failed.stage).toBe('failed');
    expect(failed.reason).toMatch(/did not power the guest off within the build's 60 s/);
    expect(failed.image_id).toBeNull();
    expect((await vm.call('GET', '/v1/references/guest:built')).body.image_id).toBe(built.image_id);
    await instanceGone(failed.id);
    expect(await domains()).not.toContain(domainNameFor(failed.id));
    expect((await vm.call('GET', '/v2/images?limit=1000')).body.images.length).toBe(imagesBefore);
  });
});
