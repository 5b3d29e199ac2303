/**
 * Domain XML from a typed spec, built as an element tree and serialised with escaping (never string
 * templating of values). The spec keeps the instance's UUID: redefining a name without its UUID fails
 * ("already exists with uuid"), and with it a retried build updates the one domain instead of adding one.
 */
import { createHash } from 'node:crypto';

export type DomainType = 'kvm' | 'qemu';

export interface DomainSpec {
  name: string;
  uuid: string;
  title?: string;
  type: DomainType;
  vcpus: number;
  memoryMib: number;
  arch?: 'x86_64';
  /** The instance's qcow2 overlay (backing file = the cached image), as a virtio disk. */
  disk: { path: string };
  /** The NoCloud seed (ISO9660 labelled cidata): a read-only virtio disk, or an IDE CD-ROM. */
  seed?: { path: string; device: 'disk' | 'cdrom' };
  /** Serial console written to this file (append, so it survives restarts and save/restore). */
  consoleLogPath: string;
  network: 'user' | 'none';
  /** Recorded under <metadata> so a domain can be traced back to its instance and agent. */
  metadata: { instanceId: string; hostId: string };
}

export const HANGAR_XML_NAMESPACE = 'https://hangar.dev/xmlns/agent/1';

type Attrs = Record<string, string | number | undefined>;
interface XmlElement {
  name: string;
  attrs: Attrs;
  children: Array<XmlElement | string>;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;

function el(
  name: string,
  attrs: Attrs = {},
  ...children: Array<XmlElement | string | false | undefined>
): XmlElement {
  if (!NAME_RE.test(name)) throw new Error(`invalid XML element name ${name}`);
  return {
    name,
    attrs,
    children: children.filter((c): c is XmlElement | string => c !== false && c !== undefined),
  };
}

// Characters XML 1.0 cannot carry at all, even escaped (control characters other than tab, LF, CR).
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const INVALID_XML_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

export function escapeXml(value: string): string {
  return value
    .replace(INVALID_XML_CHARS, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function serialise(node: XmlElement | string, indent: string): string {
  if (typeof node === 'string') return indent + escapeXml(node);
  const attrs = Object.entries(node.attrs)
    .filter((entry): entry is [string, string | number] => entry[1] !== undefined)
    .map(([key, value]) => {
      if (!NAME_RE.test(key)) throw new Error(`invalid XML attribute name ${key}`);
      return ` ${key}='${escapeXml(String(value))}'`;
    })
    .join('');
  if (node.children.length === 0) return `${indent}<${node.name}${attrs}/>`;
  if (node.children.length === 1 && typeof node.children[0] === 'string') {
    return `${indent}<${node.name}${attrs}>${escapeXml(node.children[0])}</${node.name}>`;
  }
  const inner = node.children.map((child) => serialise(child, `${indent}  `)).join('\n');
  return `${indent}<${node.name}${attrs}>\n${inner}\n${indent}</${node.name}>`;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The domain UUID for an instance: its id when that is a UUID (so libvirt and the service agree), otherwise
 * a name-based (v5-style, SHA-1) UUID, stable across attempts.
 */
export function domainUuidFor(instanceId: string): string {
  if (UUID_RE.test(instanceId)) return instanceId.toLowerCase();
  const bytes = createHash('sha1').update(`hangar-instance:${instanceId}`).digest().subarray(0, 16);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x50;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const DOMAIN_PREFIX = 'hangar-';

export function domainNameFor(instanceId: string): string {
  return `${DOMAIN_PREFIX}${instanceId}`;
}

export function buildDomainXml(spec: DomainSpec): string {
  if (!UUID_RE.test(spec.uuid)) throw new Error(`invalid domain uuid ${spec.uuid}`);
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) throw new Error(`invalid vcpus ${spec.vcpus}`);
  if (!Number.isInteger(spec.memoryMib) || spec.memoryMib < 16)
    throw new Error(`invalid memory ${spec.memoryMib}`);
  for (const path of [spec.disk.path, spec.consoleLogPath, spec.seed?.path]) {
    if (path !== undefined && !path.startsWith('/'))
      throw new Error(`domain paths must be absolute: ${path}`);
  }

  const seed = spec.seed;
  const seedDisk =
    seed &&
    (seed.device === 'cdrom'
      ? el(
          'disk',
          { type: 'file', device: 'cdrom' },
          el('driver', { name: 'qemu', type: 'raw' }),
          el('source', { file: seed.path }),
          // i440fx ('pc') has IDE; q35 would need SATA. NoCloud finds the seed by label either way.
          el('target', { dev: 'hdc', bus: 'ide' }),
          el('readonly'),
        )
      : el(
          'disk',
          { type: 'file', device: 'disk' },
          el('driver', { name: 'qemu', type: 'raw' }),
          el('source', { file: seed.path }),
          el('target', { dev: 'vdb', bus: 'virtio' }),
          el('readonly'),
        ));

  const consoleSource = () => el('source', { path: spec.consoleLogPath, append: 'on' });
  const domain = el(
    'domain',
    { type: spec.type },
    el('name', {}, spec.name),
    el('uuid', {}, spec.uuid.toLowerCase()),
    spec.title !== undefined ? el('title', {}, spec.title.replace(/[\r\n]+/g, ' ')) : undefined,
    el(
      'metadata',
      {},
      el('hangar:instance', {
        'xmlns:hangar': HANGAR_XML_NAMESPACE,
        id: spec.metadata.instanceId,
        host: spec.metadata.hostId,
      }),
    ),
    el('memory', { unit: 'MiB' }, String(spec.memoryMib)),
    el('vcpu', {}, String(spec.vcpus)),
    el(
      'os',
      {},
      el('type', { arch: spec.arch ?? 'x86_64', machine: 'pc' }, 'hvm'),
      el('boot', { dev: 'hd' }),
    ),
    el('features', {}, el('acpi'), el('apic')),
    // TCG cannot pass the host CPU through; under KVM the guest gets the host's features.
    spec.type === 'kvm' ? el('cpu', { mode: 'host-passthrough' }) : undefined,
    el('clock', { offset: 'utc' }),
    el('on_poweroff', {}, 'destroy'),
    el('on_reboot', {}, 'restart'),
    el('on_crash', {}, 'destroy'),
    el(
      'devices',
      {},
      el(
        'disk',
        { type: 'file', device: 'disk' },
        el('driver', { name: 'qemu', type: 'qcow2', discard: 'unmap' }),
        el('source', { file: spec.disk.path }),
        el('target', { dev: 'vda', bus: 'virtio' }),
      ),
      seedDisk,
      spec.network === 'user'
        ? el('interface', { type: 'user' }, el('model', { type: 'virtio' }))
        : undefined,
      // A file-backed serial port: works under qemu:///system (libvirtd opens the file) and session alike.
      el('serial', { type: 'file' }, consoleSource(), el('target', { port: 0 })),
      el('console', { type: 'file' }, consoleSource(), el('target', { type: 'serial', port: 0 })),
      el('rng', { model: 'virtio' }, el('backend', { model: 'random' }, '/dev/urandom')),
      el('memballoon', { model: 'none' }),
    ),
  );
  return `${serialise(domain, '')}\n`;
}
