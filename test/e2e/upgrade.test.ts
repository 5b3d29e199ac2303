/**
 * Upgrade and rollback end to end: the real backend, the real host agent as a child process and
 * REAL libvirt (qemu:///system, TCG here). Two variants of the test guest differ only in the
 * hangar-marker.txt on their FAT32 partition, which the guest prints at boot as
 * `HANGAR-DISK-MARKER: <line>` (test/helpers/guest-variants.ts); a blank disk boots nothing.
 * An instance follows guest:app: an upgrade to where guest:app points now shows the new content;
 * an upgrade to the blank disk fails its boot check and the agent rolls back by itself; a manual
 * rollback brings the old content back. Missing libvirt/qemu makes beforeAll throw: never a skip.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { domainNameFor } from '../../agent/src/hypervisor/domain-xml.ts';
import { SYSTEM_URI, tail, virsh } from '../helpers/agent-libvirt.ts';
import { blankDisk, guestWithMarker } from '../helpers/guest-variants.ts';
import { startVmHarness, type VmHarness } from '../helpers/vm-e2e.ts';

const HOST_ID = 'e2e-upgrade-host';
const JOB_TIMEOUT_MS = 240_000;
const BOOT_CHECK = { marker: 'HANGAR-GUEST-READY', timeout_seconds: 60 };

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
type Json = any;

describe('upgrade and rollback with a real host agent and libvirt', () => {
  let vm: VmHarness;
  let v1: string;
  let v2: string;
  let blank: string;
  let instanceId: string | undefined;

  const call = (method: string, path: string, body?: unknown) => vm.call(method, path, body);
  const show = async (id: string): Promise<Json> => (await call('GET', `/v1/instances/${id}`)).body;

  /** The instance once its pending job is over (whatever the outcome). */
  async function settled(id: string): Promise<Json> {
    const deadline = Date.now() + JOB_TIMEOUT_MS;
    for (;;) {
      const instance = await show(id);
      if (instance.pending_action === null) return instance;
      if (Date.now() > deadline)
        throw new Error(
          `instance ${id} still has ${instance.pending_action} pending\nagent logs:\n${tail(vm.agent.logs, 40)}`,
        );
      await sleep(250);
    }
  }

  const consoleLog = (id: string) => vm.consoleLog(id);

  /** The disk marker the guest printed on the console after byte `from` (waits for one to appear). */
  async function markerAfter(id: string, from: number, timeoutMs = 120_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const fresh = (await consoleLog(id)).slice(from);
      const found = [...fresh.matchAll(/HANGAR-DISK-MARKER: ([^\r\n]*)/g)].at(-1);
      if (found) return found[1] ?? '';
      if (Date.now() > deadline)
        throw new Error(`no disk marker after byte ${from}; tail:\n${fresh.slice(-800)}`);
      await sleep(200);
    }
  }
  const consoleSize = async (id: string) => Buffer.byteLength(await consoleLog(id));

  async function act(id: string, action: string, body?: unknown): Promise<void> {
    const reply = await call('POST', `/v1/instances/${id}/actions/${action}`, body);
    expect(reply.status, JSON.stringify(reply.body)).toBe(202);
    expect(reply.body.pending_action).toBe(action);
  }

  beforeAll(async () => {
    vm = await startVmHarness({ hostId: HOST_ID, scratchPrefix: 'hangar-upgrade-e2e-' });
    v1 = await vm.upload('guest-v1', await guestWithMarker(vm.guest, 'content-v1', vm.dir));
    v2 = await vm.upload('guest-v2', await guestWithMarker(vm.guest, 'content-v2', vm.dir));
    blank = await vm.upload('blank', await blankDisk(vm.dir));
    const ref = await call('POST', '/v1/references', { reference: 'guest:app', image_id: v1 });
    expect(ref.status, JSON.stringify(ref.body)).toBe(201);
  }, 600_000);

  afterAll(async () => {
    await vm?.stop(instanceId ? [domainNameFor(instanceId)] : []);
  }, 120_000);

  it('upgrades an instance to where its reference points now: the new disk shows the new content', async () => {
    // Prepare: an instance following guest:app (-> v1)
    const created = await call('POST', '/v1/instances', {
      name: 'upgrade e2e',
      image: 'guest:app',
      vcpus: 1,
      ram_mb: 256,
      disk_gb: 1,
      boot_check: BOOT_CHECK,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const id: string = created.body.id;
    instanceId = id;
    const built = await settled(id);
    expect(built, built.last_error ?? built.reason).toMatchObject({ stage: 'Running', image_id: v1 });
    expect(await markerAfter(id, 0)).toBe('content-v1');
    const moved = await call('POST', '/v1/references/guest:app/move', { image_id: v2, expect: v1 });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    const from = await consoleSize(id);

    // Act
    await act(id, 'upgrade');
    const upgraded = await settled(id);

    // Assess: same domain and identity, the new image's content, the old disk kept
    expect(upgraded, upgraded.last_error).toMatchObject({
      stage: 'Running',
      image_id: v2,
      previous_image: { id: v1 },
      last_error: null,
      domain_uuid: built.domain_uuid,
    });
    expect(await markerAfter(id, from)).toBe('content-v2');
    expect((await consoleLog(id)).slice(from)).toContain(`instance-id: ${id}`);
    expect((await virsh(SYSTEM_URI, 'domstate', domainNameFor(id))).trim()).toBe('running');
    await expect(stat(join(vm.dataDir, 'instances', id, 'previous.qcow2'))).resolves.toBeDefined();
  });

  it('rolls back by itself when the upgraded boot fails its boot check', async () => {
    // Prepare
    const id = instanceId as string;
    expect(id).toBeDefined();
    const from = await consoleSize(id);

    // Act: the blank disk boots nothing, so no boot marker within the check's 60 s
    await act(id, 'upgrade', { image: blank });
    const after = await settled(id);

    // Assess: back on v2 (its previous disk, v1, still kept), running again, and why in last_error
    expect(after).toMatchObject({ stage: 'Running', image_id: v2, previous_image: { id: v1 } });
    expect(after.last_error).toMatch(/^upgrade failed: .*boot check.*rolled back to the previous disk/);
    expect(await markerAfter(id, from)).toBe('content-v2');
    expect((await virsh(SYSTEM_URI, 'domstate', domainNameFor(id))).trim()).toBe('running');
    await expect(stat(join(vm.dataDir, 'instances', id, 'rollback.qcow2'))).rejects.toThrow();
  });

  it('returns to the previous disk by hand: the old content is back', async () => {
    // Prepare
    const id = instanceId as string;
    expect(id).toBeDefined();
    const from = await consoleSize(id);

    // Act
    await act(id, 'rollback');
    const rolledBack = await settled(id);

    // Assess
    expect(rolledBack, rolledBack.last_error).toMatchObject({
      stage: 'Running',
      image_id: v1,
      previous_image: { id: v2 },
      last_error: null,
    });
    expect(await markerAfter(id, from)).toBe('content-v1');

    // And destroying it frees both disks' room on the host.
    await act(id, 'destroy');
    expect((await settled(id)).stage).toBe('Inexistent');
    const host = await vm.t.request('GET', `/v1/hosts/${HOST_ID}`, { token: vm.t.tokens.admin });
    expect(((await host.json()) as Json).used.disk_gb).toBe(0);
  });
});
