/**
 * The shared set-up of the e2e tests that boot the test guest under REAL libvirt: libvirt and the
 * guest ensured (agent-libvirt.ts), a scratch dir qemu can traverse, the test backend, the real
 * agent as a child process, and the calls every such test makes (JSON as alice, an image upload,
 * an instance's console file, waiting with the agent's log tail on a timeout).
 */
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import {
  type AgentProcess,
  ensureLibvirt,
  ensureTestGuest,
  removeDomains,
  SYSTEM_URI,
  startAgent,
  tail,
} from './agent-libvirt.ts';
import { startTestBackend, type TestBackend } from './backend.ts';

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
type Json = any;

export interface VmHarness {
  readonly t: TestBackend;
  readonly dir: string;
  readonly dataDir: string;
  readonly agent: AgentProcess;
  /** The test guest's qcow2 (agent/guest/build-test-guest.sh). */
  readonly guest: string;
  /** As alice, JSON both ways. */
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }>;
  /** POST /v2/images (qcow2, x86_64, and `fields`) and PUT its file, as alice; the image id. */
  upload(name: string, path: string, fields?: Record<string, unknown>): Promise<string>;
  /** The serial console the agent keeps for an instance ('' before there is one). */
  consoleLog(id: string): Promise<string>;
  /** Polls `probe` until it gives a value; a timeout fails with the agent's last log lines. */
  waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs?: number): Promise<T>;
  /** Stops the agent, removes the domains named with `prefix`, stops the backend, removes the dir. */
  stop(domainPrefixes: readonly string[]): Promise<void>;
}

export async function startVmHarness(options: {
  hostId: string;
  scratchPrefix: string;
  env?: Record<string, string>;
  agent?: Record<string, unknown>;
}): Promise<VmHarness> {
  await ensureLibvirt();
  const guest = await ensureTestGuest();
  const dir = await mkdtemp(join(tmpdir(), options.scratchPrefix));
  // qemu runs as libvirt-qemu under qemu:///system: the dirs must be traversable (mkdtemp makes 0700).
  await chmod(dir, 0o755);
  const dataDir = join(dir, 'data');
  const t = await startTestBackend({ hosts: [options.hostId], ...(options.env ? { env: options.env } : {}) });
  const agent = await startAgent(
    {
      service_url: t.url,
      host_id: options.hostId,
      token: t.hostTokens[options.hostId],
      libvirt_uri: SYSTEM_URI,
      data_dir: dataDir,
      domain_type: 'auto',
      poll_interval_ms: 200,
      lease_seconds: 10,
      heartbeat_interval_ms: 1_000,
      observe_interval_ms: 1_000,
      boot_timeout_ms: 120_000,
      shutdown_timeout_ms: 30_000,
      shutdown_retry_interval_ms: 3_000,
      network: 'user',
      log_level: 'debug',
      ...options.agent,
    },
    join(dir, 'agent.json'),
  );
  await agent.waitForLog((line) => line['message'] === 'agent ready', 120_000);

  async function call(method: string, path: string, body?: unknown) {
    const response = await t.request(method, path, {
      token: t.tokens.alice,
      headers: { accept: 'application/json' },
      ...(body === undefined ? {} : { body: body as object }),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : undefined) as Json };
  }
  return {
    t,
    dir,
    dataDir,
    agent,
    guest,
    call,
    async upload(name, path, fields = {}) {
      const created = await call('POST', '/v2/images', {
        name,
        disk_format: 'qcow2',
        container_format: 'bare',
        architecture: 'x86_64',
        ...fields,
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const put = await t.request('PUT', `/v2/images/${created.body.id}/file`, {
        token: t.tokens.alice,
        headers: { 'content-type': 'application/octet-stream' },
        body: new Uint8Array(await readFile(path)),
      });
      expect(put.status).toBe(204);
      return created.body.id;
    },
    consoleLog: (id) => readFile(join(dataDir, 'instances', id, 'console.log'), 'utf8').catch(() => ''),
    async waitFor(what, probe, timeoutMs = 240_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = await probe();
        if (found !== undefined) return found;
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${what}\nagent logs:\n${tail(agent.logs, 40)}`);
        await sleep(500);
      }
    },
    async stop(domainPrefixes) {
      await agent.stop('SIGTERM');
      for (const prefix of domainPrefixes) await removeDomains(SYSTEM_URI, prefix);
      await t.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
