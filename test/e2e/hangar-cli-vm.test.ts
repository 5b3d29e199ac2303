/**
 * One machine, like testcloud: the backend as `npm start` runs it (tsx with PRIMARY_NODE_FLAGS,
 * local/main.ts) with HANGAR_LOCAL_AGENT=1, so it also runs the real host agent against the real
 * libvirt, and the real `hangar` binary doing exactly what the README's quick start says:
 * `hangar push guest.qcow2 guest:1 && hangar run guest:1 --wait` boots a VM with no further
 * setup; then `hangar logs`, `hangar stop --wait` and `hangar rm`. Missing libvirt/qemu makes
 * beforeAll throw: never a skip.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PRIMARY_NODE_FLAGS } from '../../local/node-flags.ts';
import {
  ensureLibvirt,
  ensureTestGuest,
  REPO_ROOT,
  removeDomains,
  SYSTEM_URI,
  virshMaybe,
} from '../helpers/agent-libvirt.ts';
import { freshConfigDir, type HangarResult, hangar } from '../helpers/hangar.ts';

/** What `npm start` printed: where it listens, its admin token and the local agent's host id. */
interface Started {
  url: string;
  token: string;
  hostId: string;
}

function startServer(dataDir: string): {
  child: ChildProcess;
  started: Promise<Started>;
  output: () => string;
} {
  const child = spawn(
    join(REPO_ROOT, 'node_modules/.bin/tsx'),
    [...PRIMARY_NODE_FLAGS, join(REPO_ROOT, 'local/main.ts')],
    {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/root',
        LANG: 'C.UTF-8',
        HANGAR_PORT: '0',
        HANGAR_DATA_DIR: dataDir,
        HANGAR_LOCAL_AGENT: '1',
        HANGAR_LOG_LEVEL: process.env.HANGAR_CLI_VM_LOGS ? 'debug' : 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: the stop below reaches tsx's node child and the agent's.
      detached: true,
    },
  );
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
    if (process.env.HANGAR_CLI_VM_LOGS) process.stderr.write(chunk);
  });
  const started = new Promise<Started>((resolve, reject) => {
    child.stdout?.on('data', (chunk) => {
      stdout += chunk;
      const url = /Hangar is listening on (\S+)/.exec(stdout)?.[1];
      const token = /development admin token: (\S+)/.exec(stdout)?.[1];
      const hostId = /local host agent: (\S+) on /.exec(stdout)?.[1];
      if (url && token && hostId && stdout.includes('Press Ctrl+C')) resolve({ url, token, hostId });
    });
    child.once('exit', (code) =>
      reject(new Error(`npm start exited (${code}):\n${stdout}\n${stderr.slice(-3000)}`)),
    );
  });
  return { child, started, output: () => `${stdout}\n${stderr.slice(-4000)}` };
}

describe('hangar push && hangar run --wait against npm start with its local host agent', () => {
  let dir: string;
  let guest: string;
  let server: ReturnType<typeof startServer>;
  let started: Started;
  const instanceIds: string[] = [];

  beforeAll(async () => {
    await ensureLibvirt();
    guest = await ensureTestGuest();
    dir = await mkdtemp(join(tmpdir(), 'hangar-cli-vm-'));
    // qemu runs as libvirt-qemu: the directories above the data dir must be traversable (mkdtemp
    // makes 0700); the data dir itself and the agent's are made so by npm start.
    await chmod(dir, 0o755);
    server = startServer(join(dir, 'data'));
    started = await server.started;
  });
  afterAll(async () => {
    if (server?.child.pid && server.child.exitCode === null) {
      const exited = new Promise((resolve) => server.child.once('exit', resolve));
      process.kill(-server.child.pid, 'SIGTERM');
      await exited;
    }
    // Only this test's domains: other runs on this libvirt have their own.
    for (const id of instanceIds) await removeDomains(SYSTEM_URI, `hangar-${id}`);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const configDir = () => freshConfigDir();
  const run = async (args: string[], timeoutMs = 60_000): Promise<HangarResult> => {
    const result = await hangar(args, {
      env: { HANGAR_URL: started.url, HANGAR_TOKEN: started.token, HANGAR_CONFIG_DIR: configDir() },
      timeoutMs,
    });
    return result;
  };
  const ok = (result: HangarResult) => {
    expect(result.code, `${result.stderr}\nserver:\n${server.output()}`).toBe(0);
    return result;
  };

  it('boots, shows the console, stops and removes a VM', async () => {
    ok(await run(['push', guest, 'guest:1']));
    const ran = ok(await run(['run', 'guest:1', '--wait', '-o', 'json'], 300_000));
    const instance = JSON.parse(ran.stdout) as { id: string; name: string; stage: string; host_id: string };
    instanceIds.push(instance.id);
    expect(instance).toMatchObject({ stage: 'Running', host_id: started.hostId, name: 'guest-1' });
    expect((await virshMaybe(SYSTEM_URI, 'domstate', `hangar-${instance.id}`))?.trim()).toBe('running');

    const hosts = JSON.parse(ok(await run(['hosts', '-o', 'json'])).stdout) as {
      id: string;
      instances: number;
      images: string[];
    }[];
    expect(hosts).toEqual([
      expect.objectContaining({ id: started.hostId, instances: 1, images: ['guest:1'] }),
    ]);
    ok(await run(['logs', instance.name]));

    const stopped = ok(await run(['stop', instance.name, '--wait', '-o', 'json'], 300_000));
    expect(JSON.parse(stopped.stdout)).toEqual([
      expect.objectContaining({ id: instance.id, stage: 'Shutoff', pending_action: null }),
    ]);
    expect((await virshMaybe(SYSTEM_URI, 'domstate', `hangar-${instance.id}`))?.trim()).toBe('shut off');
    // The stop job sent the console's tail: the guest's own boot line is in it.
    expect(ok(await run(['logs', instance.name])).stdout).toContain('HANGAR-GUEST-BOOTED');

    const removed = ok(await run(['rm', instance.name, '--wait', '-o', 'json'], 300_000));
    expect(JSON.parse(removed.stdout)).toEqual([expect.objectContaining({ stage: 'Inexistent' })]);
    expect(await virshMaybe(SYSTEM_URI, 'domstate', `hangar-${instance.id}`)).toBeNull();
    expect(JSON.parse(ok(await run(['ps', '-o', 'json'])).stdout)).toEqual([]);
  });
});
