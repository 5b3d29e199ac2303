/**
 * Hangar end to end: the real backend (local stand-ins behind the gateway), the real host agent as
 * a child process (`tsx agent/src/main.ts --config`) with its own host token, and REAL libvirt
 * (qemu:///system). The test guest (agent/guest/build-test-guest.sh) is uploaded through the
 * images API, an instance is created through the instances API, and the whole life cycle is
 * driven through the API: build, sleep (managed save), wake (the guest carries on), stop, start,
 * destroy, with the API showing each stage. Then publishing with a boot gate: the guest is
 * published under guest:stable only after it booted, and a blank disk is not published.
 * Missing libvirt/qemu makes beforeAll throw: this test fails loudly rather than skip.
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
  sha512Of,
  startAgent,
  tail,
  virsh,
  virshMaybe,
} from '../helpers/agent-libvirt.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';

const HOST_ID = 'e2e-hangar-host';
const STAGE_TIMEOUT_MS = 180_000;

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
type Json = any;

describe('Hangar with a real host agent and libvirt', () => {
  let t: TestBackend;
  let dir: string;
  let dataDir: string;
  let agent: AgentProcess | undefined;
  let imageId: string;
  const instanceIds: string[] = [];

  async function call(
    token: string,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: Json }> {
    const response = await t.request(method, path, {
      token,
      headers: { accept: 'application/json' },
      ...(body === undefined ? {} : { body: body as object }),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  }
  const alice = (method: string, path: string, body?: unknown) => call(t.tokens.alice, method, path, body);
  const show = async (id: string): Promise<Json> => (await alice('GET', `/v1/instances/${id}`)).body;

  /**
   * Polls the API until the instance reaches `stage` with no job pending; Error fails at once
   * unless `passingThroughError` (a failed instance on its way to Inexistent).
   */
  async function waitForStage(id: string, stage: string, passingThroughError = false): Promise<Json> {
    const deadline = Date.now() + STAGE_TIMEOUT_MS;
    for (;;) {
      const instance = await show(id);
      if (instance.stage === stage && instance.pending_action === null) return instance;
      const failed =
        (instance.stage === 'Error' && !passingThroughError) ||
        (instance.last_error && instance.pending_action === null);
      if (failed || Date.now() > deadline)
        throw new Error(
          `instance ${id} is ${instance.stage} (pending ${instance.pending_action}, reason ${instance.reason}, ` +
            `last_error ${instance.last_error}), waited for ${stage}\nagent logs:\n${tail(agent?.logs ?? [], 40)}`,
        );
      await sleep(250);
    }
  }
  async function act(id: string, action: string): Promise<Json> {
    const reply = await alice('POST', `/v1/instances/${id}/actions/${action}`);
    expect(reply.status, JSON.stringify(reply.body)).toBe(202);
    expect(reply.body.pending_action).toBe(action);
    return reply.body;
  }

  const consoleLog = (id: string) =>
    readFile(join(dataDir, 'instances', id, 'console.log'), 'utf8').catch(() => '');
  const heartbeats = async (id: string) =>
    [...(await consoleLog(id)).matchAll(/HANGAR-HEARTBEAT (\d+)/g)].map((m) => Number(m[1]));
  async function waitForConsole(
    id: string,
    predicate: (text: string) => boolean,
    timeoutMs = 60_000,
  ): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await consoleLog(id);
      if (predicate(text)) return text;
      if (Date.now() > deadline)
        throw new Error(`console of ${id} never matched; tail:\n${text.slice(-800)}`);
      await sleep(200);
    }
  }
  const domstate = async (name: string) => (await virsh(SYSTEM_URI, 'domstate', name)).trim();

  beforeAll(async () => {
    await ensureLibvirt();
    const guest = await ensureTestGuest();
    t = await startTestBackend({ hosts: [HOST_ID] });

    // The guest goes in through the images API like any image.
    const created = await alice('POST', '/v2/images', {
      name: 'hangar-test-guest',
      disk_format: 'qcow2',
      container_format: 'bare',
      architecture: 'x86_64',
      min_ram: 128,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    imageId = created.body.id;
    const upload = await t.request('PUT', `/v2/images/${imageId}/file`, {
      token: t.tokens.alice,
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(await readFile(guest)),
    });
    expect(upload.status).toBe(204);
    const image = (await alice('GET', `/v2/images/${imageId}`)).body;
    expect(image).toMatchObject({ status: 'active', os_hash_algo: 'sha512', size: (await stat(guest)).size });
    expect(image.os_hash_value).toBe(await sha512Of(guest));

    dir = await mkdtemp(join(tmpdir(), 'hangar-vm-e2e-'));
    // qemu runs as libvirt-qemu under qemu:///system: the dirs must be traversable (mkdtemp makes 0700).
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

  it('registers the host with what libvirt reports', async () => {
    // Act
    const host = await call(t.tokens.admin, 'GET', `/v1/hosts/${HOST_ID}`);

    // Assess
    expect(host.status).toBe(200);
    expect(host.body).toMatchObject({
      id: HOST_ID,
      architecture: 'x86_64',
      used: { vcpus: 0, ram_mb: 0, disk_gb: 0 },
    });
    expect(['qemu', 'kvm']).toContain(host.body.hypervisor_type);
    expect(host.body.hypervisor_version).toBeGreaterThanOrEqual(1_000_000);
    expect(host.body.vcpus).toBeGreaterThan(0);
  });

  it('runs the life cycle through the API: build, sleep, wake, stop, start, destroy', async () => {
    // Act: create
    const created = await alice('POST', '/v1/instances', {
      name: 'e2e guest',
      image: imageId,
      vcpus: 1,
      ram_mb: 256,
      disk_gb: 1,
    });

    // Assess: Building on our host, then Running once the agent has built and booted it
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const id: string = created.body.id;
    instanceIds.push(id);
    const name = domainNameFor(id);
    expect(created.body).toMatchObject({ stage: 'Building', host_id: HOST_ID, pending_action: 'build' });
    const running = await waitForStage(id, 'Running');
    expect(running.domain_uuid).toBe(id);
    expect(running.console_log).toContain('HANGAR-GUEST-BOOTED');
    expect(running.console_log).toContain(`instance-id: ${id}`);
    const booted = await consoleLog(id);
    expect(booted).toContain('HANGAR-GUEST-BOOTED');
    expect(booted).toContain(`instance-id: ${id}`);
    expect(booted).toContain('local-hostname: e2e-guest');
    expect(await domstate(name)).toBe('running');
    expect((await virsh(SYSTEM_URI, 'domuuid', name)).trim()).toBe(id);
    expect(
      agent?.logs.some(
        (l) => l['message'] === 'job claimed' && l['kind'] === 'build' && l['instance_id'] === id,
      ),
    ).toBe(true);
    expect((await call(t.tokens.admin, 'GET', `/v1/hosts/${HOST_ID}`)).body.used).toEqual({
      vcpus: 1,
      ram_mb: 256,
      disk_gb: 1,
    });

    // sleep: a managed save, the state in a file
    await waitForConsole(id, (text) => /HANGAR-HEARTBEAT 3\b/.test(text));
    await act(id, 'sleep');
    await waitForStage(id, 'Sleep');
    expect(await domstate(name)).toBe('shut off');
    expect(await virsh(SYSTEM_URI, 'dominfo', name)).toMatch(/Managed save:\s+yes/);
    expect(await virsh(SYSTEM_URI, 'list', '--all', '--managed-save')).toMatch(
      new RegExp(`${name}\\s+saved`),
    );
    await expect(stat(`/var/lib/libvirt/qemu/save/${name}.save`)).resolves.toBeDefined();
    const beforeWake = Math.max(...(await heartbeats(id)));

    // wake: restored, the guest's in-memory counter carries on (no new boot)
    await act(id, 'wake');
    await waitForStage(id, 'Running');
    expect(await domstate(name)).toBe('running');
    await waitForConsole(id, (text) => text.includes(`HANGAR-HEARTBEAT ${beforeWake + 2}`));
    const afterWake = await heartbeats(id);
    expect(afterWake[afterWake.indexOf(beforeWake) + 1]).toBe(beforeWake + 1);
    expect((await consoleLog(id)).match(/HANGAR-GUEST-BOOTED/g)).toHaveLength(1);
    await expect(stat(`/var/lib/libvirt/qemu/save/${name}.save`)).rejects.toThrow();

    // stop: the guest powers off (ACPI)
    await act(id, 'stop');
    await waitForStage(id, 'Shutoff');
    expect(await domstate(name)).toBe('shut off');
    expect(await consoleLog(id)).toContain('HANGAR-ACPI-POWER-BUTTON');

    // start: a cold boot
    await act(id, 'start');
    await waitForStage(id, 'Running');
    expect(await domstate(name)).toBe('running');
    expect((await consoleLog(id)).match(/HANGAR-GUEST-BOOTED/g)).toHaveLength(2);

    // destroy: domain and directory gone, the record says Inexistent, the host has its room back
    await act(id, 'destroy');
    await waitForStage(id, 'Inexistent');
    expect(await virshMaybe(SYSTEM_URI, 'dominfo', name)).toBeNull();
    await expect(stat(join(dataDir, 'instances', id))).rejects.toThrow();
    expect((await call(t.tokens.admin, 'GET', `/v1/hosts/${HOST_ID}`)).body.used).toEqual({
      vcpus: 0,
      ram_mb: 0,
      disk_gb: 0,
    });
    expect(
      (await call(t.hostTokens[HOST_ID] ?? '', 'GET', `/v1/hosts/${HOST_ID}/instances`)).body.instances,
    ).toEqual([]);
  });

  /** Polls a publication until it finishes. */
  async function publication(id: string): Promise<Json> {
    const deadline = Date.now() + STAGE_TIMEOUT_MS;
    for (;;) {
      const task = (await alice('GET', `/v1/publications/${id}`)).body;
      if (task.status === 'success' || task.status === 'failure') return task;
      if (Date.now() > deadline)
        throw new Error(
          `publication ${id} is still ${task.status}\nagent logs:\n${tail(agent?.logs ?? [], 40)}`,
        );
      await sleep(250);
    }
  }

  it('publishes a reference only after its candidate boots: a candidate that does not boot is not published', async () => {
    // Prepare: a candidate that cannot boot (a blank disk: the firmware finds nothing to start)
    const blank = await alice('POST', '/v2/images', {
      name: 'blank-disk',
      disk_format: 'raw',
      container_format: 'bare',
      architecture: 'x86_64',
    });
    expect(blank.status).toBe(201);
    const upload = await t.request('PUT', `/v2/images/${blank.body.id}/file`, {
      token: t.tokens.alice,
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(1024 * 1024),
    });
    expect(upload.status).toBe(204);
    const gate = { marker: 'HANGAR-GUEST-READY', timeout_seconds: 60, ram_mb: 256 };

    // Act 1: the test guest, through the boot gate, becomes guest:stable
    const good = await alice('POST', '/v1/references/guest:stable/publish', {
      image_id: imageId,
      boot: gate,
    });
    expect(good.status, JSON.stringify(good.body)).toBe(202);
    instanceIds.push(good.body.id);
    const published = await publication(good.body.id);

    // Assess 1: it booted for real (the agent built the gate instance), then the gate went away
    expect(published.status, published.message).toBe('success');
    expect(published.result).toMatchObject({ image_id: imageId, boot_checked: true });
    expect((await alice('GET', '/v1/references/guest:stable')).body.image_id).toBe(imageId);
    const passed = await waitForStage(good.body.id, 'Inexistent');
    expect(passed.console_log).toContain('HANGAR-GUEST-READY');
    expect(passed.console_log).toContain(`instance-id: ${good.body.id}`);
    expect(await virshMaybe(SYSTEM_URI, 'dominfo', domainNameFor(good.body.id))).toBeNull();

    // Act 2: the blank disk as the next guest:stable
    const bad = await alice('POST', '/v1/references/guest:stable/publish', {
      image_id: blank.body.id,
      boot: { ...gate, timeout_seconds: 20 },
    });
    expect(bad.status, JSON.stringify(bad.body)).toBe(202);
    instanceIds.push(bad.body.id);
    const refused = await publication(bad.body.id);

    // Assess 2: not published, with the reason; guest:stable still names the guest that boots
    expect(refused.status).toBe('failure');
    expect(refused.message).toMatch(/did not boot: .*HANGAR-GUEST-READY/);
    expect(refused.message).toContain('guest:stable was left where it was');
    expect((await alice('GET', '/v1/references/guest:stable')).body.image_id).toBe(imageId);
    const history = (await alice('GET', '/v1/references/guest:stable/history')).body.history;
    expect(history.map((entry: Json) => entry.to)).toEqual([imageId]);
    // The failed gate instance is destroyed as well: no domain, no directory left on the host.
    const failed = await waitForStage(bad.body.id, 'Inexistent', true);
    expect(failed.console_log ?? '').not.toContain('HANGAR-GUEST-READY');
    expect(await virshMaybe(SYSTEM_URI, 'dominfo', domainNameFor(bad.body.id))).toBeNull();
    await expect(stat(join(dataDir, 'instances', bad.body.id))).rejects.toThrow();
  });
});
