import { describe, expect, it } from 'vitest';
import {
  buildDomainXml,
  type DomainSpec,
  domainNameFor,
  domainUuidFor,
  escapeXml,
} from '../../../agent/src/hypervisor/domain-xml.ts';

const spec: DomainSpec = {
  name: 'hangar-6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d',
  uuid: '6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d',
  title: 'web-1',
  type: 'qemu',
  vcpus: 2,
  memoryMib: 512,
  disk: { path: '/var/lib/hangar/instances/6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d/overlay.qcow2' },
  seed: { path: '/var/lib/hangar/instances/6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d/seed.img', device: 'disk' },
  consoleLogPath: '/var/lib/hangar/instances/6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d/console.log',
  network: 'user',
  metadata: { instanceId: '6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d', hostId: 'host-a' },
};

describe('buildDomainXml', () => {
  it('renders the TCG domain with overlay, seed disk, file console and user network', async () => {
    // Act
    const xml = buildDomainXml(spec);

    // Assess
    await expect(xml).toMatchFileSnapshot('__snapshots__/domain-qemu.xml');
  });

  it('renders a KVM domain with host CPU passthrough and the seed as an IDE CD-ROM, without a NIC', async () => {
    // Act
    const xml = buildDomainXml({
      ...spec,
      type: 'kvm',
      seed: { path: spec.seed?.path ?? '', device: 'cdrom' },
      network: 'none',
    });

    // Assess
    await expect(xml).toMatchFileSnapshot('__snapshots__/domain-kvm-cdrom.xml');
    expect(xml).toContain("<domain type='kvm'>");
    expect(xml).toContain("<cpu mode='host-passthrough'/>");
    expect(xml).toContain("<target dev='hdc' bus='ide'/>");
    expect(xml).not.toContain('<interface');
  });

  it('escapes every value that reaches the XML, in text and in attributes', () => {
    // Prepare
    const nasty = `a'b"c<d>&e]]>`;

    // Act
    const xml = buildDomainXml({
      ...spec,
      title: nasty,
      disk: { path: `/tmp/${nasty}/overlay.qcow2` },
      metadata: { instanceId: nasty, hostId: 'h' },
    });

    // Assess
    expect(xml).toContain('<title>a&apos;b&quot;c&lt;d&gt;&amp;e]]&gt;</title>');
    expect(xml).toContain("file='/tmp/a&apos;b&quot;c&lt;d&gt;&amp;e]]&gt;/overlay.qcow2'");
    expect(xml).not.toContain(nasty);
  });

  it('keeps the instance UUID, lower-cased, so a redefinition updates the same domain', () => {
    // Act
    const xml = buildDomainXml({ ...spec, uuid: spec.uuid.toUpperCase() });

    // Assess
    expect(xml).toContain(`<uuid>${spec.uuid}</uuid>`);
  });

  it('refuses relative paths, bad sizes and malformed UUIDs', () => {
    expect(() => buildDomainXml({ ...spec, disk: { path: 'overlay.qcow2' } })).toThrow(/absolute/);
    expect(() => buildDomainXml({ ...spec, vcpus: 0 })).toThrow(/vcpus/);
    expect(() => buildDomainXml({ ...spec, memoryMib: 1.5 })).toThrow(/memory/);
    expect(() => buildDomainXml({ ...spec, uuid: 'not-a-uuid' })).toThrow(/uuid/);
  });
});

describe('escapeXml', () => {
  it('drops control characters XML cannot carry and escapes markup', () => {
    expect(escapeXml('a\u0001b\u0007c\td\ne')).toBe('abc\td\ne');
    expect(escapeXml(`<&>"'`)).toBe('&lt;&amp;&gt;&quot;&apos;');
  });
});

describe('domainUuidFor / domainNameFor', () => {
  it('uses an instance id that is a UUID as the domain UUID', () => {
    expect(domainUuidFor('6F1C3A52-8F0E-4A55-9D0C-0B6A3C1F2E4D')).toBe(
      '6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d',
    );
  });

  it('derives a stable, well-formed UUID for any other id', () => {
    // Act
    const first = domainUuidFor('i-0123');
    const again = domainUuidFor('i-0123');
    const other = domainUuidFor('i-0124');

    // Assess
    expect(first).toBe(again);
    expect(first).not.toBe(other);
    expect(first).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('prefixes domain names with hangar-', () => {
    expect(domainNameFor('abc')).toBe('hangar-abc');
  });
});
