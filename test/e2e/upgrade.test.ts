/**
 * Upgrade and rollback end to end: the real backend, the real host agent as a child process and
 * REAL libvirt (qemu:///system, TCG here). Two variants of the test guest differ only in the
 * hangar-marker.txt on their FAT32 partition, which the guest prints at boot as
 * `HANGAR-DISK-MARKER: <line>` (test/helpers/guest-variants.ts); a blank disk boots nothing.
 * An instance follows guest:app: an upgrade to where guest:app points now shows the new content;
 * an upgrade to the blank disk fails its boot check and the agent rolls back by itself; a manual
 * rollback brings the old content back. Missing libvirt/qemu makes beforeAll throw: never a skip.
 */
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
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
import { blankDisk, guestWithMarker } from '../helpers/guest-variants.ts';

const HOST_ID = 'e2e-upgrade-host';
const JOB_TIMEOUT_MS = 240_000;
const BOOT_CHECK = { marker: 'HANGAR-GUEST-READY', timeout_seconds: 60 };

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
type Json = any;

describe('upgrade and rollback with a real host agent and libvirt', () => {
  let t: TestBackend;
  let dir: string;
  let dataDir: string;
  let agent: AgentProcess | undefined;
  let v1: string;
  let v2: string;
  let blank: string;
  let instanceId: string | undefined;

  async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
    const response = await t.request(method, path, {
      token: t.tokens.alice,
      headers: { accept: 'application/json' },
      ...(body === undefined ? {} : { body: body as object }),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  }
  const show = async (id: string): Promise<Json> => (await call('GET', `/v1/instances/${id}`)).body;

  async function upload(name: string, path: string): Promise<string> {
    const created = await call('POST', '/v2/images', {
      name,
      disk_format: 'qcow2',
      container_format: 'bare',
      architecture: 'x86_64',
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const put = await t.request('PUT', `/v2/images/${created.body.id}/file`, {
      token: t.tokens.alice,
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(await readFile(path)),
    });
    expect(put.status).toBe(204);
    return created.body.id;
  }

  /** The instance once its pending job is over (whatever the outcome). */
  async function settled(id: string): Promise<Json> {
    const deadline = Date.now() + JOB_TIMEOUT_MS;
    for (;;) {
      const instance = await show(id);
      if (instance.pending_action === null) return instance;
      if (Date.now() > deadline)
        throw new Error(
          `instance ${id} still has ${instance.pending_action} pending\nagent logs:\n${tail(agent?.logs ?? [], 40)}`,
        );
      await sleep(250);
    }
  }

  const consoleLog = (id: string) =>
    readFile(join(dataDir, 'instances', id, 'console.log'), 'utf8').catch(() => '');

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
    await ensureLibvirt();
    const guest = await ensureTestGuest();
    dir = await mkdtemp(join(tmpdir(), 'hangar-upgrade-e2e-'));
    // qemu runs as libvirt-qemu under qemu:///system: the dirs must be traversable (mkdtemp makes 0700).
    await chmod(dir, 0o755);
    dataDir = join(dir, 'data');
    t = await startTestBackend({ hosts: [HOST_ID] });
    v1 = await upload('guest-v1', await guestWithMarker(guest, 'content-v1', dir));
    v2 = await upload('guest-v2', await guestWithMarker(guest, 'content-v2', dir));
    blank = await upload('blank', await blankDisk(dir));
    const ref = await call('POST', '/v1/references', { reference: 'guest:app', image_id: v1 });
    expect(ref.status, JSON.stringify(ref.body)).toBe(201);
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
        boot_timeout_ms: 120_000,
        shutdown_timeout_ms: 30_000,
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
    if (instanceId) await removeDomains(SYSTEM_URI, domainNameFor(instanceId));
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
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
    await expect(stat(join(dataDir, 'instances', id, 'previous.qcow2'))).resolves.toBeDefined();
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
    await expect(stat(join(dataDir, 'instances', id, 'rollback.qcow2'))).rejects.toThrow();
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
    const host = await t.request('GET', `/v1/hosts/${HOST_ID}`, { token: t.tokens.admin });
    expect(((await host.json()) as Json).used.disk_gb).toBe(0);
  });
});
