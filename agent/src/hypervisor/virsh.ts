/**
 * VirshHypervisor: the Hypervisor port over `virsh -q -c URI ...` (args array, no shell, timeouts, through
 * exec.ts). virsh covers managed save and undefine flags that the Node bindings lack (vm-probe README).
 * Known libvirt failures become LibvirtError codes, and the operations that are idempotent in spirit
 * (start a running domain, destroy a stopped one, undefine a missing one) return typed outcomes instead.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExecError, LibvirtError, type LibvirtErrorCode } from '../errors.ts';
import { run } from '../exec.ts';
import { type Logger, silentLogger } from '../log.ts';
import { buildDomainXml, type DomainSpec, HANGAR_XML_NAMESPACE } from './domain-xml.ts';
import type {
  DestroyOutcome,
  DomainInfo,
  DomainOwner,
  DomainState,
  HostCapabilities,
  Hypervisor,
  SaveOutcome,
  ShutdownOptions,
  ShutdownOutcome,
  StartOutcome,
  UndefineOutcome,
} from './hypervisor.ts';

export interface VirshOptions {
  uri: string;
  /** The virsh binary (tests point this at a fake). */
  virsh?: string;
  /** Per-call timeout. managedsave writes the guest's RAM to disk, so it gets its own, longer one. */
  timeoutMs?: number;
  saveTimeoutMs?: number;
  /** While a managedsave runs: how often to look at the domain, and how long "saved" must hold. */
  savePollMs?: number;
  saveGraceMs?: number;
  log?: Logger;
}

const PATTERNS: Array<[LibvirtErrorCode, RegExp]> = [
  ['not_found', /failed to get domain|domain not found|no domain with matching/i],
  ['already_running', /already active|already running/i],
  ['not_running', /domain is not running|not running/i],
  ['no_managed_save', /no managed save|does not have managed save/i],
  ['busy', /cannot acquire state change lock|timed out during operation|host is busy/i],
  ['uuid_conflict', /already exists with uuid/i],
];

export function classifyVirshError(stderr: string): LibvirtErrorCode {
  for (const [code, pattern] of PATTERNS) if (pattern.test(stderr)) return code;
  return 'other';
}

/** "9.0.0" -> 9000000, libvirt's own encoding of versions. */
export function parseLibvirtVersion(text: string): number {
  const match =
    /Running against daemon:\s*(\d+)\.(\d+)\.(\d+)/.exec(text) ??
    /Using library: libvirt (\d+)\.(\d+)\.(\d+)/.exec(text);
  if (!match)
    throw new LibvirtError(`cannot parse libvirt version from: ${text.slice(0, 200)}`, 'other', undefined);
  return Number(match[1]) * 1_000_000 + Number(match[2]) * 1_000 + Number(match[3]);
}

function parseKeyValues(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split('\n')) {
    const index = line.indexOf(':');
    if (index > 0) map.set(line.slice(0, index).trim().toLowerCase(), line.slice(index + 1).trim());
  }
  return map;
}

function unescapeXml(value: string): string {
  return value
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

export function mapState(raw: string, managedSave: boolean): DomainState {
  switch (raw.trim().toLowerCase()) {
    case 'running':
    case 'idle':
    case 'blocked':
      return 'running';
    case 'paused':
      return 'paused';
    case 'in shutdown':
      return 'shutting_down';
    case 'shut off':
      return managedSave ? 'saved' : 'shutoff';
    case 'saved':
      return 'saved';
    case 'crashed':
      return 'crashed';
    case 'pmsuspended':
      return 'pmsuspended';
    default:
      return 'other';
  }
}

export class VirshHypervisor implements Hypervisor {
  readonly uri: string;
  private readonly bin: string;
  private readonly timeoutMs: number;
  private readonly saveTimeoutMs: number;
  private readonly savePollMs: number;
  private readonly saveGraceMs: number;
  private readonly log: Logger;

  constructor(options: VirshOptions) {
    this.uri = options.uri;
    this.bin = options.virsh ?? 'virsh';
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.saveTimeoutMs = options.saveTimeoutMs ?? 10 * 60_000;
    this.savePollMs = options.savePollMs ?? 1_000;
    this.saveGraceMs = options.saveGraceMs ?? 3_000;
    this.log = options.log ?? silentLogger;
  }

  /** One virsh call; a non-zero exit becomes a LibvirtError with the classified code. */
  private async virsh(args: string[], signal?: AbortSignal, timeoutMs = this.timeoutMs): Promise<string> {
    try {
      const { stdout } = await run(this.bin, ['-q', '-c', this.uri, ...args], { signal, timeoutMs });
      return stdout;
    } catch (error) {
      if (error instanceof ExecError && error.details.reason === 'exit') {
        const stderr = error.details.stderr.trim();
        const domain = args[1];
        throw new LibvirtError(
          `virsh ${args[0]}${domain ? ` ${domain}` : ''}: ${stderr || error.message}`,
          classifyVirshError(stderr),
          domain,
          {
            cause: error,
          },
        );
      }
      throw error;
    }
  }

  async capabilities(signal?: AbortSignal): Promise<HostCapabilities> {
    const node = parseKeyValues(await this.virsh(['nodeinfo'], signal));
    const version = parseLibvirtVersion(await this.virsh(['version', '--daemon'], signal));
    const vcpus = Number(node.get('cpu(s)'));
    const memKiB = Number(/^(\d+)/.exec(node.get('memory size') ?? '')?.[1]);
    if (!Number.isFinite(vcpus) || !Number.isFinite(memKiB)) {
      throw new LibvirtError('cannot parse virsh nodeinfo', 'other', undefined);
    }
    return {
      vcpus,
      ramMb: Math.floor(memKiB / 1024),
      // nodeinfo's "CPU model" is the host architecture (x86_64, aarch64, ...).
      architecture: node.get('cpu model') ?? 'x86_64',
      libvirtVersion: version,
    };
  }

  async info(name: string, signal?: AbortSignal): Promise<DomainInfo | null> {
    let text: string;
    try {
      text = await this.virsh(['dominfo', name], signal);
    } catch (error) {
      if (error instanceof LibvirtError && error.code === 'not_found') return null;
      throw error;
    }
    const fields = parseKeyValues(text);
    const managedSave = fields.get('managed save') === 'yes';
    return {
      name,
      uuid: fields.get('uuid'),
      managedSave,
      state: mapState(fields.get('state') ?? '', managedSave),
    };
  }

  async list(prefix: string, signal?: AbortSignal): Promise<DomainInfo[]> {
    // --managed-save shows "saved" in the state column for domains that have a managed save image.
    const text = await this.virsh(['list', '--all', '--managed-save'], signal);
    const domains: DomainInfo[] = [];
    for (const line of text.split('\n')) {
      const match = /^\s*(\S+)\s+(\S+)\s+(.+?)\s*$/.exec(line);
      if (!match) continue;
      const [, , name = '', rawState = ''] = match;
      if (!name.startsWith(prefix)) continue;
      const managedSave = rawState === 'saved';
      domains.push({ name, state: mapState(rawState, managedSave), managedSave });
    }
    return domains;
  }

  async define(spec: DomainSpec, signal?: AbortSignal): Promise<string> {
    const xml = buildDomainXml(spec);
    const dir = await mkdtemp(join(tmpdir(), 'hangar-define-'));
    try {
      const file = join(dir, 'domain.xml');
      await writeFile(file, xml, { mode: 0o600 });
      await this.virsh(['define', file], signal);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return spec.uuid.toLowerCase();
  }

  async start(name: string, signal?: AbortSignal, known?: DomainInfo): Promise<StartOutcome> {
    const before = known ?? (await this.info(name, signal));
    if (before === null) throw new LibvirtError(`domain ${name} not found`, 'not_found', name);
    if (before.state === 'running' || before.state === 'shutting_down') return 'already_running';
    if (before.state === 'paused') {
      await this.virsh(['resume', name], signal);
      return 'started';
    }
    try {
      await this.virsh(['start', name], signal, before.managedSave ? this.saveTimeoutMs : this.timeoutMs);
    } catch (error) {
      if (error instanceof LibvirtError && error.code === 'already_running') return 'already_running';
      throw error;
    }
    return before.managedSave ? 'restored' : 'started';
  }

  async shutdown(name: string, options: ShutdownOptions, signal?: AbortSignal): Promise<ShutdownOutcome> {
    const pollMs = options.pollMs ?? 250;
    const deadline = Date.now() + options.deadlineMs;
    let attempts = 0;
    while (Date.now() < deadline) {
      const current = await this.info(name, signal);
      if (current === null) throw new LibvirtError(`domain ${name} not found`, 'not_found', name);
      if (current.state === 'shutoff' || current.state === 'saved' || current.state === 'crashed') {
        return attempts === 0 ? 'already_off' : 'shut_down';
      }
      try {
        await this.virsh(['shutdown', name], signal);
      } catch (error) {
        // Powered off between our look and the request: that is what we wanted.
        if (!(error instanceof LibvirtError && (error.code === 'not_running' || error.code === 'busy')))
          throw error;
      }
      attempts += 1;
      const resendAt = Math.min(deadline, Date.now() + options.retryIntervalMs);
      while (Date.now() < resendAt) {
        await sleep(pollMs, undefined, { signal });
        const state = (await this.info(name, signal))?.state;
        if (state === undefined || state === 'shutoff' || state === 'crashed') return 'shut_down';
      }
      this.log.debug('guest has not powered off yet', { domain: name, attempts });
    }
    this.log.warn('graceful shutdown deadline passed, forcing off', {
      domain: name,
      attempts,
      deadline_ms: options.deadlineMs,
    });
    const outcome = await this.destroy(name, signal);
    return outcome === 'destroyed' ? 'destroyed' : 'shut_down';
  }

  async managedSave(name: string, signal?: AbortSignal): Promise<SaveOutcome> {
    const current = await this.info(name, signal);
    if (current === null) throw new LibvirtError(`domain ${name} not found`, 'not_found', name);
    if (current.state === 'saved') return 'already_saved';
    // virsh (libvirt 9.0) sometimes hangs in its job-watch loop after the save has finished (seen on a loaded
    // machine, and about 2 runs in 3 against test:///<file>): watch libvirt's own view as well, and once the
    // domain has shown as saved for a grace period, stop waiting for that virsh.
    const call = new AbortController();
    const save = this.virsh(
      ['managedsave', name],
      signal ? AbortSignal.any([signal, call.signal]) : call.signal,
      this.saveTimeoutMs,
    ).then(() => 'done' as const);
    let savedSince: number | undefined;
    for (;;) {
      const next = await Promise.race([save, sleep(this.savePollMs, 'tick' as const)]);
      if (next === 'done') return 'saved';
      const now = await this.info(name, signal).catch(() => null);
      if (now?.state !== 'saved') {
        savedSince = undefined;
        continue;
      }
      savedSince ??= Date.now();
      if (Date.now() - savedSince >= this.saveGraceMs) {
        call.abort();
        await save.catch(() => undefined);
        this.log.warn('virsh managedsave did not return after the save finished; stopped waiting for it', {
          domain: name,
        });
        return 'saved';
      }
    }
  }

  async managedSaveRemove(name: string, signal?: AbortSignal): Promise<void> {
    await this.virsh(['managedsave-remove', name], signal);
  }

  async suspend(name: string, signal?: AbortSignal): Promise<void> {
    await this.virsh(['suspend', name], signal);
  }

  async resume(name: string, signal?: AbortSignal): Promise<void> {
    await this.virsh(['resume', name], signal);
  }

  async reboot(name: string, options: ShutdownOptions, signal?: AbortSignal): Promise<void> {
    await this.shutdown(name, options, signal);
    await this.start(name, signal);
  }

  async destroy(name: string, signal?: AbortSignal): Promise<DestroyOutcome> {
    try {
      await this.virsh(['destroy', name], signal);
      return 'destroyed';
    } catch (error) {
      if (error instanceof LibvirtError && error.code === 'not_running') return 'already_off';
      if (error instanceof LibvirtError && error.code === 'not_found') return 'not_found';
      throw error;
    }
  }

  async undefine(name: string, signal?: AbortSignal): Promise<UndefineOutcome> {
    try {
      await this.virsh(['undefine', name, '--managed-save', '--nvram'], signal);
      return 'undefined';
    } catch (error) {
      if (error instanceof LibvirtError && error.code === 'not_found') return 'not_found';
      // Drivers without NVRAM support (e.g. test:///) reject the flag rather than ignore it.
      if (error instanceof LibvirtError && /unsupported flags/i.test(error.message)) {
        try {
          await this.virsh(['undefine', name, '--managed-save'], signal);
          return 'undefined';
        } catch (retryError) {
          if (retryError instanceof LibvirtError && retryError.code === 'not_found') return 'not_found';
          throw retryError;
        }
      }
      throw error;
    }
  }

  async owner(name: string, signal?: AbortSignal): Promise<DomainOwner | null> {
    let text: string;
    try {
      text = await this.virsh(['metadata', name, HANGAR_XML_NAMESPACE], signal);
    } catch (error) {
      if (
        error instanceof LibvirtError &&
        (error.code === 'not_found' || /metadata not found/i.test(error.message))
      ) {
        return null;
      }
      throw error;
    }
    const attr = (key: string) => new RegExp(`\\b${key}=(?:"([^"]*)"|'([^']*)')`).exec(text);
    const id = attr('id');
    const host = attr('host');
    if (!id || !host) return null;
    return { instanceId: unescapeXml(id[1] ?? id[2] ?? ''), hostId: unescapeXml(host[1] ?? host[2] ?? '') };
  }
}
