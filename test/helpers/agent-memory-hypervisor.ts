/**
 * An in-memory Hypervisor for the agent's tests (reconcile, job handlers, and the integration tests
 * that run the real agent's jobs against the backend): records every call. With `guest`, every
 * fresh start "boots" the disk: it appends to the console log what the guest would print
 * (bootFromDisk prints the first line of the image under the overlay, so a test's image decides
 * whether the boot check sees its marker).
 */
import { appendFile, open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { DomainSpec } from '../../agent/src/hypervisor/domain-xml.ts';
import type { DomainInfo, DomainOwner, Hypervisor } from '../../agent/src/hypervisor/hypervisor.ts';

interface MemoryDomain extends DomainInfo {
  owner: DomainOwner | null;
  spec?: DomainSpec;
}

/** The backing file a qcow2 overlay names in its header (null: none, or not a qcow2). */
export async function qcow2BackingFile(path: string): Promise<string | null> {
  const handle = await open(path, 'r');
  try {
    const header = Buffer.alloc(20);
    await handle.read(header, 0, 20, 0);
    if (header.readUInt32BE(0) !== 0x514649fb) return null;
    const offset = Number(header.readBigUInt64BE(8));
    const size = header.readUInt32BE(16);
    if (offset === 0 || size === 0) return null;
    const name = Buffer.alloc(size);
    await handle.read(name, 0, size, offset);
    return name.toString('utf8');
  } finally {
    await handle.close();
  }
}

/** A guest that prints the first line of the (raw) image its overlay sits on. */
export async function bootFromDisk(spec: DomainSpec): Promise<string> {
  const base = await qcow2BackingFile(spec.disk.path);
  const bytes = base === null ? Buffer.alloc(0) : await readFile(base);
  const firstLine = bytes.subarray(0, 256).toString('latin1').split('\n')[0] ?? '';
  return `booting ${spec.name}\n${firstLine}\n`;
}

/** How long after its start a recipe guest powers itself off (after the build job has seen it boot). */
const RECIPE_RUN_MS = 300;

/**
 * Whether the guest runs a recipe that powers it off, as the test guest does with a `#!/bin/sh`
 * user-data ending in `poweroff` (agent/guest/build-test-guest.sh): read from the seed's
 * user-data beside it (agent/src/instance-files.ts writes meta/user-data next to seed.img).
 */
export async function recipePowersOff(spec: DomainSpec): Promise<boolean> {
  if (!spec.seed) return false;
  const userData = await readFile(join(dirname(spec.seed.path), 'meta', 'user-data'), 'utf8').catch(() => '');
  return userData.startsWith('#!/bin/sh') && /\bpoweroff\b/.test(userData);
}

export class MemoryHypervisor implements Hypervisor {
  readonly uri = 'memory:///';
  readonly domains = new Map<string, MemoryDomain>();
  readonly calls: string[] = [];

  constructor(
    private readonly options: {
      guest?: (spec: DomainSpec) => Promise<string>;
      /** Whether a fresh start ends with the guest powering itself off (see recipePowersOff). */
      powersOff?: (spec: DomainSpec) => Promise<boolean>;
    } = {},
  ) {}

  add(name: string, state: DomainInfo['state'], hostId: string | null): void {
    const owner = hostId === null ? null : { instanceId: name.replace(/^hangar-/, ''), hostId };
    this.domains.set(name, { name, state, managedSave: state === 'saved', owner });
  }

  count(verb: string): number {
    return this.calls.filter((call) => call.startsWith(`${verb} `)).length;
  }

  async capabilities() {
    return { vcpus: 1, ramMb: 1, architecture: 'x86_64', libvirtVersion: 9_000_000 };
  }
  async info(name: string) {
    this.calls.push(`info ${name}`);
    const d = this.domains.get(name);
    return d ? { name: d.name, uuid: d.spec?.uuid, state: d.state, managedSave: d.managedSave } : null;
  }
  async list(prefix: string) {
    return [...this.domains.values()]
      .filter((d) => d.name.startsWith(prefix))
      .map((d) => ({ name: d.name, state: d.state, managedSave: d.managedSave }));
  }
  async define(spec: DomainSpec) {
    this.calls.push(`define ${spec.name}`);
    const existing = this.domains.get(spec.name);
    if (existing?.spec && existing.spec.uuid !== spec.uuid) throw new Error('already exists with uuid');
    this.domains.set(spec.name, {
      name: spec.name,
      state: existing?.state ?? 'shutoff',
      managedSave: existing?.managedSave ?? false,
      owner: { instanceId: spec.metadata.instanceId, hostId: spec.metadata.hostId },
      spec,
    });
    return spec.uuid;
  }
  async start(name: string, _signal?: AbortSignal, _known?: DomainInfo) {
    this.calls.push(`start ${name}`);
    const d = this.domains.get(name);
    if (!d) throw new Error(`no domain ${name}`);
    if (d.state === 'running') return 'already_running' as const;
    const restored = d.managedSave;
    d.state = 'running';
    d.managedSave = false;
    if (!restored && this.options.guest && d.spec?.consoleLogPath)
      await appendFile(d.spec.consoleLogPath, await this.options.guest(d.spec));
    const spec = d.spec;
    if (!restored && spec && (await this.options.powersOff?.(spec))) {
      const run = setTimeout(() => {
        if (d.state !== 'running') return;
        d.state = 'shutoff';
        void appendFile(spec.consoleLogPath, 'HANGAR-RECIPE-START\nHANGAR-RECIPE-EXIT 0\n').catch(
          () => undefined,
        );
      }, RECIPE_RUN_MS);
      run.unref();
    }
    return restored ? ('restored' as const) : ('started' as const);
  }
  async shutdown(name: string) {
    this.calls.push(`shutdown ${name}`);
    const d = this.domains.get(name);
    if (!d) throw new Error(`no domain ${name}`);
    if (d.state !== 'running') return 'already_off' as const;
    d.state = 'shutoff';
    return 'shut_down' as const;
  }
  async managedSave(name: string) {
    this.calls.push(`managedsave ${name}`);
    const d = this.domains.get(name);
    if (!d) throw new Error(`no domain ${name}`);
    if (d.state === 'saved') return 'already_saved' as const;
    d.state = 'saved';
    d.managedSave = true;
    return 'saved' as const;
  }
  async managedSaveRemove(name: string) {
    this.calls.push(`managedsave-remove ${name}`);
    const d = this.domains.get(name);
    if (d) {
      d.state = 'shutoff';
      d.managedSave = false;
    }
  }
  async suspend(name: string) {
    this.calls.push(`suspend ${name}`);
    const d = this.domains.get(name);
    if (d?.state === 'running') d.state = 'paused';
  }
  async resume(name: string) {
    this.calls.push(`resume ${name}`);
    const d = this.domains.get(name);
    if (d?.state === 'paused') d.state = 'running';
  }
  async reboot(name: string) {
    this.calls.push(`reboot ${name}`);
  }
  async destroy(name: string) {
    this.calls.push(`destroy ${name}`);
    const d = this.domains.get(name);
    if (!d) return 'not_found' as const;
    if (d.state !== 'running') return 'already_off' as const;
    d.state = 'shutoff';
    return 'destroyed' as const;
  }
  async undefine(name: string) {
    this.calls.push(`undefine ${name}`);
    return this.domains.delete(name) ? ('undefined' as const) : ('not_found' as const);
  }
  async owner(name: string) {
    return this.domains.get(name)?.owner ?? null;
  }
}
