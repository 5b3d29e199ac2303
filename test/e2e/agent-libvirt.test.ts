/**
 * The host agent end to end, with REAL libvirt (qemu:///system, TCG here) and the real test guest
 * (agent/guest/build-test-guest.sh): a fake service in this process speaks the hosts/jobs contract and
 * serves the guest image, and the real agent runs as a child process (`tsx agent/src/main.ts --config`).
 * Missing libvirt/qemu makes beforeAll throw: this test fails loudly rather than skip.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeHangarService, type FakeInstance } from '../helpers/agent-fake-service.ts';
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

// Unique per run: reconcile removes this host's domains that its service does not know, so two runs on one
// libvirt (two sessions, or a rerun while CI runs) must not share a host id.
const HOST_ID = `e2e-agent-${randomUUID().slice(0, 8)}`;
const TOKEN = 'e2e-host-token';
const JOB_TIMEOUT_MS = 150_000;

describe('host agent with real libvirt', () => {
  let service: FakeHangarService;
  let dir: string;
  let dataDir: string;
  let agent: AgentProcess | undefined;
  let agentRuns = 0;
  const instanceIds: string[] = [];

  const agentConfig = () => ({
    service_url: service.url,
    host_id: HOST_ID,
    token: TOKEN,
    libvirt_uri: SYSTEM_URI,
    data_dir: dataDir,
    domain_type: 'auto',
    poll_interval_ms: 200,
    lease_seconds: 6,
    heartbeat_interval_ms: 1_000,
    boot_marker: 'HANGAR-GUEST-READY',
    boot_timeout_ms: 120_000,
    shutdown_timeout_ms: 60_000,
    shutdown_retry_interval_ms: 3_000,
    network: 'user',
    log_level: 'debug',
  });
  const launch = async () => {
    agentRuns += 1;
    agent = await startAgent(agentConfig(), join(dir, `agent-${agentRuns}.json`));
    await agent.waitForLog((line) => line['message'] === 'agent ready', 120_000);
    return agent;
  };
  const newInstance = (imageId = 'guest'): FakeInstance => {
    const id = randomUUID();
    instanceIds.push(id);
    return service.addInstance({
      id,
      name: `e2e-${id.slice(0, 8)}`,
      hostname: `e2e-${id.slice(0, 8)}`,
      vcpus: 1,
      ram_mb: 256,
      disk_gb: 1,
      user_data: null,
      image_id: imageId,
    });
  };
  const runJob = async (kind: Parameters<FakeHangarService['enqueue']>[0], instanceId: string) => {
    const job = await service
      .waitForJob(service.enqueue(kind, instanceId), JOB_TIMEOUT_MS)
      .catch((error: unknown) => {
        throw new Error(`${String(error)}\nagent logs:\n${tail(agent?.logs ?? [], 40)}`);
      });
    return job;
  };
  const consoleLog = (instanceId: string) =>
    readFile(join(dataDir, 'instances', instanceId, 'console.log'), 'utf8').catch(() => '');
  const heartbeats = async (instanceId: string) =>
    [...(await consoleLog(instanceId)).matchAll(/HANGAR-HEARTBEAT (\d+)/g)].map((m) => Number(m[1]));
  const waitForConsole = async (
    instanceId: string,
    predicate: (text: string) => boolean,
    timeoutMs = 60_000,
  ) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await consoleLog(instanceId);
      if (predicate(text)) return text;
      if (Date.now() > deadline)
        throw new Error(`console of ${instanceId} never matched; tail:\n${text.slice(-800)}`);
      await sleep(200);
    }
  };
  const domstate = async (name: string) => (await virsh(SYSTEM_URI, 'domstate', name)).trim();
  const domainsOf = async (instanceId: string) =>
    (await virsh(SYSTEM_URI, 'list', '--all', '--uuid'))
      .split('\n')
      .filter((uuid) => uuid.trim() === instanceId);

  beforeAll(async () => {
    await ensureLibvirt();
    const guest = await ensureTestGuest();
    service = new FakeHangarService({ hostId: HOST_ID, token: TOKEN });
    await service.start();
    const { size } = await stat(guest);
    const hash = await sha512Of(guest);
    service.addImage({ id: 'guest', path: guest, disk_format: 'qcow2', os_hash_value: hash, size });
    // Same bytes, but the service publishes another hash: it must never boot.
    const wrong = `${hash.slice(0, -1)}${hash.endsWith('0') ? '1' : '0'}`;
    service.addImage({
      id: 'guest-wrong-hash',
      path: guest,
      disk_format: 'qcow2',
      os_hash_value: wrong,
      size,
    });
    dir = await mkdtemp(join(tmpdir(), 'hangar-agent-e2e-'));
    // qemu runs as libvirt-qemu under qemu:///system: the dirs must be traversable (mkdtemp makes 0700).
    await chmod(dir, 0o755);
    dataDir = join(dir, 'data');
    await launch();
  }, 600_000);

  afterAll(async () => {
    await agent?.stop('SIGTERM');
    for (const id of instanceIds) await removeDomains(SYSTEM_URI, `hangar-${id}`);
    await service?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it('registers the host: TCG here (the KVM probe fails on this machine), libvirt version, capacity', async () => {
    // Assess
    const probe = agent?.logs.find((line) => line['message'] === 'kvm probe');
    expect(probe).toBeDefined();
    expect(service.host).toMatchObject({
      hypervisor_type: probe?.['usable'] ? 'kvm' : 'qemu',
      architecture: 'x86_64',
    });
    // This project's machines: /dev/kvm is a software-nested backend that cannot run stock guests.
    expect(service.host?.['hypervisor_type']).toBe('qemu');
    expect(Number(service.host?.['hypervisor_version'])).toBeGreaterThanOrEqual(1_000_000);
    expect(Number(service.host?.['vcpus'])).toBeGreaterThan(0);
    expect(Number(service.host?.['ram_mb'])).toBeGreaterThan(0);
    const deadline = Date.now() + 10_000;
    while (service.hostHeartbeats === 0 && Date.now() < deadline) await sleep(100);
    expect(service.hostHeartbeats).toBeGreaterThan(0);
  });

  it('runs the life cycle: build, sleep, wake (the guest carries on), stop, start, destroy', async () => {
    // Prepare
    const instance = newInstance();
    const name = `hangar-${instance.id}`;

    // Act + Assess: build
    const build = await runJob('build', instance.id);
    expect(build.status, build.reason).toBe('done');
    expect(build.result?.domain_uuid).toBe(instance.id);
    expect(build.result?.console_log).toContain('HANGAR-GUEST-BOOTED');
    expect(build.result?.console_log).toContain(`instance-id: ${instance.id}`);
    expect(await domstate(name)).toBe('running');
    expect((await virsh(SYSTEM_URI, 'domuuid', name)).trim()).toBe(instance.id);
    expect(await consoleLog(instance.id)).toContain(`local-hostname: ${instance.hostname}`);

    // sleep: managed save
    await waitForConsole(instance.id, (text) => /HANGAR-HEARTBEAT 3\b/.test(text));
    const sleepJob = await runJob('sleep', instance.id);
    expect(sleepJob.status, sleepJob.reason).toBe('done');
    expect(await domstate(name)).toBe('shut off');
    expect(await virsh(SYSTEM_URI, 'dominfo', name)).toMatch(/Managed save:\s+yes/);
    expect(await virsh(SYSTEM_URI, 'list', '--all', '--managed-save')).toMatch(
      new RegExp(`${name}\\s+saved`),
    );
    await expect(stat(`/var/lib/libvirt/qemu/save/${name}.save`)).resolves.toBeDefined();
    const beforeWake = Math.max(...(await heartbeats(instance.id)));

    // wake: restored, the in-memory counter continues where it stopped (no new boot)
    const wake = await runJob('wake', instance.id);
    expect(wake.status, wake.reason).toBe('done');
    expect(await domstate(name)).toBe('running');
    await waitForConsole(instance.id, (text) => text.includes(`HANGAR-HEARTBEAT ${beforeWake + 2}`));
    const afterWake = await heartbeats(instance.id);
    expect(afterWake[afterWake.indexOf(beforeWake) + 1]).toBe(beforeWake + 1);
    expect((await consoleLog(instance.id)).match(/HANGAR-GUEST-BOOTED/g)).toHaveLength(1);
    await expect(stat(`/var/lib/libvirt/qemu/save/${name}.save`)).rejects.toThrow();

    // stop: graceful, through the guest's ACPI power button handler
    const stop = await runJob('stop', instance.id);
    expect(stop.status, stop.reason).toBe('done');
    expect(await domstate(name)).toBe('shut off');
    expect(await consoleLog(instance.id)).toContain('HANGAR-ACPI-POWER-BUTTON');

    // start: a cold boot this time, the counter starts again
    const start = await runJob('start', instance.id);
    expect(start.status, start.reason).toBe('done');
    expect(await domstate(name)).toBe('running');
    const afterStart = await consoleLog(instance.id);
    expect(afterStart.match(/HANGAR-GUEST-BOOTED/g)).toHaveLength(2);
    const secondBoot = afterStart.lastIndexOf('HANGAR-GUEST-BOOTED');
    await waitForConsole(instance.id, (text) => /HANGAR-HEARTBEAT 1\r?\n/.test(text.slice(secondBoot)));

    // destroy: domain, managed save and dir gone; the cached image stays
    const destroy = await runJob('destroy', instance.id);
    expect(destroy.status, destroy.reason).toBe('done');
    expect(await virshMaybe(SYSTEM_URI, 'dominfo', name)).toBeNull();
    await expect(stat(join(dataDir, 'instances', instance.id))).rejects.toThrow();
    await expect(stat(join(dataDir, 'cache', 'guest.img'))).resolves.toBeDefined();
  });

  it('an agent killed (SIGKILL) during a build ends, after restart, with exactly one running domain', async () => {
    // Prepare
    const instance = newInstance();
    const name = `hangar-${instance.id}`;
    const job = service.enqueue('build', instance.id);
    const running = agent;
    if (!running) throw new Error('no agent');
    // The domain is defined and started but the agent still waits for the boot marker: the job is open.
    await running.waitForLog(
      (line) => line['message'] === 'domain started' && line['instance_id'] === instance.id,
      60_000,
    );

    // Act
    await running.stop('SIGKILL');
    expect(job.status).toBe('claimed');
    await launch();
    const done = await service.waitForJob(job, JOB_TIMEOUT_MS);

    // Assess
    expect(done.status, done.reason).toBe('done');
    expect(done.attempt).toBeGreaterThanOrEqual(2);
    expect(await domainsOf(instance.id)).toHaveLength(1);
    expect(await domstate(name)).toBe('running');
    expect(service.observed).toContainEqual({ instanceId: instance.id, state: 'running' });
    expect(
      agent?.logs.some(
        (line) => line['message'] === 'domain already running from an earlier attempt; reusing it',
      ),
    ).toBe(true);

    const destroy = await runJob('destroy', instance.id);
    expect(destroy.status, destroy.reason).toBe('done');
  });

  it('SIGTERM during a build stops the agent promptly without failing the job; the next agent finishes it', async () => {
    // Prepare
    const instance = newInstance();
    const job = service.enqueue('build', instance.id);
    const running = agent;
    if (!running) throw new Error('no agent');
    await running.waitForLog(
      (line) => line['message'] === 'domain started' && line['instance_id'] === instance.id,
      60_000,
    );

    // Act
    const stopped = Date.now();
    const code = await running.stop('SIGTERM');
    const stopMs = Date.now() - stopped;
    await launch();
    const done = await service.waitForJob(job, JOB_TIMEOUT_MS);

    // Assess
    expect(code).toBe(0);
    expect(stopMs).toBeLessThan(10_000);
    expect(
      running.logs.some((line) => String(line['message']).startsWith('job abandoned: agent stopping')),
    ).toBe(true);
    expect(done.status, done.reason).toBe('done');
    expect(await domainsOf(instance.id)).toHaveLength(1);

    const destroy = await runJob('destroy', instance.id);
    expect(destroy.status, destroy.reason).toBe('done');
  });

  it('detects a corrupted cached image, fetches it again and boots from the good copy', async () => {
    // Prepare: flip bytes in the middle of the cached base (no instance uses it now)
    const cached = join(dataDir, 'cache', 'guest.img');
    const { size } = await stat(cached);
    const handle = await open(cached, 'r+');
    await handle.write(Buffer.alloc(4096, 0xa5), 0, 4096, Math.floor(size / 2));
    await handle.close();
    const downloadsBefore = service.imageRequests.get('guest') ?? 0;
    const instance = newInstance();

    // Act
    const build = await runJob('build', instance.id);

    // Assess
    expect(build.status, build.reason).toBe('done');
    expect(service.imageRequests.get('guest')).toBe(downloadsBefore + 1);
    expect(
      agent?.logs.some(
        (line) => line['message'] === 'discarding cached image' && line['image_id'] === 'guest',
      ),
    ).toBe(true);
    expect(await sha512Of(cached)).toBe(service.images.get('guest')?.os_hash_value);
    expect(build.result?.console_log).toContain(`instance-id: ${instance.id}`);

    const destroy = await runJob('destroy', instance.id);
    expect(destroy.status, destroy.reason).toBe('done');
  });

  it('never boots an image whose sha512 does not match: the build fails with the reason', async () => {
    // Prepare
    const instance = newInstance('guest-wrong-hash');

    // Act
    const build = await runJob('build', instance.id);

    // Assess
    expect(build.status).toBe('failed');
    expect(build.reason).toMatch(/ImageChecksumError: image guest-wrong-hash: sha512 mismatch/);
    expect(await virshMaybe(SYSTEM_URI, 'dominfo', `hangar-${instance.id}`)).toBeNull();
    const cacheFiles = await readdir(join(dataDir, 'cache'));
    expect(cacheFiles.filter((file) => file.includes('guest-wrong-hash'))).toEqual([]);
  });
});
