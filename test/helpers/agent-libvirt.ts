/**
 * Real-libvirt helpers for the agent's e2e test and benchmark: make sure virtlogd + libvirtd run (no systemd
 * here: started by hand like vm-probe/05-libvirt-start.sh), build/reuse the test guest, run the real agent as
 * a child process, and clean up every hangar-* domain a test created. Missing tools throw: never a skip.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../../agent/src/exec.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const GUEST_IMAGE = join(REPO_ROOT, '.test-artifacts/guest/hangar-test-guest.qcow2');
export const SYSTEM_URI = 'qemu:///system';

export async function virsh(uri: string, ...args: string[]): Promise<string> {
  return (await run('virsh', ['-q', '-c', uri, ...args], { timeoutMs: 120_000 })).stdout;
}

/** Same as virsh() but returns null instead of throwing (for state probes of maybe-missing domains). */
export async function virshMaybe(uri: string, ...args: string[]): Promise<string | null> {
  return virsh(uri, ...args).catch(() => null);
}

async function daemonAlive(pidFile: string): Promise<boolean> {
  try {
    const pid = (await readFile(pidFile, 'utf8')).trim();
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // PID 1 here may not reap orphans: a killed daemon lingers as a zombie (state Z) and must not count.
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Fails loudly when the host lacks the tools: the e2e test must never pass by not running. */
export async function requireTools(): Promise<void> {
  const missing: string[] = [];
  for (const tool of ['virsh', 'libvirtd', 'virtlogd', 'qemu-system-x86_64', 'qemu-img', 'genisoimage']) {
    await run('which', [tool], { timeoutMs: 10_000 }).catch(() => missing.push(tool));
  }
  if (missing.length > 0) {
    throw new Error(
      `agent e2e needs ${missing.join(', ')} (apt: libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils genisoimage)`,
    );
  }
}

/**
 * What Debian's udev rule does (no udev here): /dev/kvm root:kvm 0660. Left root:root 0600, libvirt finds KVM
 * "not available now" after its probe saw it, and re-probes qemu on every call (a define took 30-55 s).
 */
async function fixKvmDevice(): Promise<void> {
  const st = await stat('/dev/kvm').catch(() => undefined);
  if (!st || (st.mode & 0o060) === 0o060) return;
  await run('chgrp', ['kvm', '/dev/kvm'], { timeoutMs: 10_000 });
  await chmod('/dev/kvm', 0o660);
}

export async function ensureLibvirt(): Promise<void> {
  await requireTools();
  await fixKvmDevice();
  if (!(await daemonAlive('/run/virtlogd.pid'))) await run('virtlogd', ['-d'], { timeoutMs: 30_000 });
  if (!(await daemonAlive('/run/libvirtd.pid'))) await run('libvirtd', ['-d'], { timeoutMs: 30_000 });
  for (let i = 0; i < 100; i += 1) {
    if (
      await access('/run/libvirt/libvirt-sock').then(
        () => true,
        () => false,
      )
    )
      break;
    await sleep(100);
  }
  // The first qemu:///system call probes qemu's capabilities (~8 s); later ones are instant.
  await virsh(SYSTEM_URI, 'version');
}

/** Builds (or reuses, keyed on the script's hash) the disk-bootable test guest. */
export async function ensureTestGuest(): Promise<string> {
  await run('bash', [join(REPO_ROOT, 'agent/guest/build-test-guest.sh'), GUEST_IMAGE], {
    timeoutMs: 600_000,
  });
  return GUEST_IMAGE;
}

export async function sha512Of(path: string): Promise<string> {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Destroys and undefines (with managed save) every domain whose name starts with `prefix`. */
export async function removeDomains(uri: string, prefix: string): Promise<string[]> {
  const names = (await virsh(uri, 'list', '--all', '--name'))
    .split('\n')
    .map((line) => line.trim())
    .filter((name) => name.startsWith(prefix));
  for (const name of names) {
    await virshMaybe(uri, 'destroy', name);
    await virshMaybe(uri, 'undefine', name, '--managed-save', '--nvram');
  }
  return names;
}

export interface AgentProcess {
  child: ChildProcess;
  /** Parsed JSON log lines so far. */
  logs: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  waitForLog(
    predicate: (line: Record<string, unknown>) => boolean,
    timeoutMs: number,
  ): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The real agent (`tsx agent/src/main.ts --config FILE`) as a child process, its stderr logs collected. */
export async function startAgent(config: Record<string, unknown>, configPath: string): Promise<AgentProcess> {
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const child = spawn(
    join(REPO_ROOT, 'node_modules/.bin/tsx'),
    [join(REPO_ROOT, 'agent/src/main.ts'), '--config', configPath],
    {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'inherit', 'pipe'],
      env: { ...process.env },
      // Its own process group: tsx runs the agent in a child node process, and a SIGKILL meant to simulate a
      // crash must reach that one too (tsx relays SIGTERM/SIGINT itself, but nothing can relay SIGKILL).
      detached: true,
    },
  );
  const logs: Array<Record<string, unknown>> = [];
  let buffered = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (process.env['HANGAR_AGENT_E2E_LOGS']) process.stderr.write(`[agent] ${line}\n`);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ level: 'raw', message: line });
      }
    }
  });
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  return {
    child,
    logs,
    exited,
    async waitForLog(predicate, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = logs.find(predicate);
        if (found) return found;
        if (child.exitCode !== null)
          throw new Error(`agent exited (${child.exitCode}) while waiting; logs:\n${tail(logs)}`);
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for an agent log line; logs:\n${tail(logs)}`);
        await sleep(50);
      }
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        if (signal === 'SIGKILL') process.kill(-child.pid, 'SIGKILL');
        else child.kill(signal);
      }
      return exited;
    },
  };
}

export function tail(logs: Array<Record<string, unknown>>, n = 30): string {
  return logs
    .slice(-n)
    .map((line) => JSON.stringify(line))
    .join('\n');
}
